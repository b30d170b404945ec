"""The schedules: the learning rate's linear decay, and the adversarial terms (reconstruction only for a
warm-up, then ramped in).

Every function takes the number of completed steps and describes the step after it.
"""

from pnr_tf.training.gan_step import Phases


def learning_rate(train, step):
    """The optimizers' rate for the step after ``step`` (``train``: a TrainConfig): constant, then a linear fall.

    It reaches 0 only after the last step: step num_steps - 1 still updates by a 1 / (decay steps) share.
    """
    decay_start = round(train.decay_start * train.num_steps)
    if step < decay_start:
        return train.learning_rate
    if step >= train.num_steps:  # a run resumed past its end takes no more steps
        return 0.0
    return train.learning_rate * (train.num_steps - step) / (train.num_steps - decay_start)


def adversarial_scale(loss, step):
    """Factor on the adversarial weights (``loss``: a LossConfig): 0 in warm-up (and throughout with the terms off),
    then a linear ramp to 1."""
    if not loss.adversarial or step < loss.adversarial_warmup_steps:
        return 0.0
    if loss.adversarial_ramp_steps == 0:
        return 1.0
    return min(1.0, (step - loss.adversarial_warmup_steps + 1) / loss.adversarial_ramp_steps)


def phases(loss, step, unsupervised=False):
    """Which discriminators take part (D_A needs a source that is not the target: not unsupervised)."""
    adversarial = adversarial_scale(loss, step) > 0
    return Phases(
        appearance=adversarial and loss.gan_appearance_weight > 0 and not unsupervised,
        pose=adversarial and loss.gan_pose_weight > 0,
    )


def loss_weights(loss, step):
    """{term: weight} of the generator loss."""
    scale = adversarial_scale(loss, step)
    weights = {
        "l1": loss.l1_weight,
        "foreground": loss.foreground_weight,
        "perceptual": loss.perceptual_weight,
        "gan_appearance": scale * loss.gan_appearance_weight,
        "gan_pose": scale * loss.gan_pose_weight,
    }
    if loss.mask_ssim_weight > 0:  # present only when used: the step traces its SSIM only then
        weights["mask_ssim"] = loss.mask_ssim_weight
    if loss.ssim_weight > 0:
        weights["ssim"] = loss.ssim_weight
    return weights
