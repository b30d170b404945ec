"""Per-replica math of one training step: one generator forward, then the D phase, then the G phase.

Runs inside `strategy.run`; the driver (trainer.py) owns the strategy, loop, schedule and
checkpoints. Every loss is per example, reduced with `tf.nn.compute_average_loss` over the global
batch, so N replicas apply the same update as one device on the same global batch.

The two phases share the generated batch: the discriminators learn from it with the generator's
gradient stopped, then the generator's losses (L1, perceptual, and the adversarial terms through
the just-updated discriminators) are recorded on the same tape that saw the forward pass.
"""

import dataclasses
import typing

import keras
import tensorflow as tf

from pnr_tf import losses
from pnr_tf.training.perceptual import vgg_preprocess


@dataclasses.dataclass
class GANModels:
    generator: keras.Model
    appearance_discriminator: typing.Optional[keras.Model] = None  # D_A: (image, source image), 6 channels
    pose_discriminator: typing.Optional[keras.Model] = None  # D_P: (image, target pose), 3 + 18 channels
    features: typing.Optional[keras.Model] = None  # VGG19 relu1_2, None when perceptual_weight is 0


@dataclasses.dataclass
class GANOptimizers:
    generator: keras.optimizers.Optimizer
    discriminator: typing.Optional[keras.optimizers.Optimizer] = None  # None without the adversarial terms


@dataclasses.dataclass(frozen=True)
class Phases:
    """Which adversarial terms a traced step contains (static: each combination is its own graph)."""

    appearance: bool  # D_A trained and its term in the generator loss
    pose: bool  # D_P likewise

    @property
    def adversarial(self):
        return self.appearance or self.pose


def step_inputs(batch, unsupervised):
    """Generator inputs and the target image of a batch; unsupervised: the source is the target."""
    if unsupervised:
        source_image, source_pose = batch["source_image"][:, 0], batch["source_pose"][:, 0]
        inputs = {"source_image": source_image, "source_pose": source_pose, "target_pose": source_pose}
        return inputs, source_image
    inputs = {name: batch[name] for name in ("source_image", "source_pose", "target_pose")}
    return inputs, batch["target_image"]


def _average(per_example, global_batch_size):
    return tf.nn.compute_average_loss(per_example, global_batch_size=global_batch_size)


def _first_source(inputs):
    image = inputs["source_image"]
    return image if image.shape.rank == 4 else image[:, 0]


def appearance_logits(models, inputs, image):
    """D_A on (image, first source image)."""
    return models.appearance_discriminator(tf.concat([image, _first_source(inputs)], axis=-1), training=True)


def pose_logits(models, inputs, image):
    """D_P on (image, target pose heatmaps)."""
    return models.pose_discriminator(tf.concat([image, inputs["target_pose"]], axis=-1), training=True)


def discriminator_losses(models, inputs, target_image, generated, phases, global_batch_size):
    """(total, metrics, variables): BCE(D(real), 1) + BCE(D(fake), 0) for each discriminator in play."""
    total, metrics, variables = 0.0, {}, []
    if phases.appearance:
        per_example = losses.gan_discriminator_loss(
            appearance_logits(models, inputs, target_image), appearance_logits(models, inputs, generated)
        )
        metrics["discriminator_appearance"] = _average(per_example, global_batch_size)
        total += metrics["discriminator_appearance"]
        variables += models.appearance_discriminator.trainable_variables
    if phases.pose:
        per_example = losses.gan_discriminator_loss(pose_logits(models, inputs, target_image), pose_logits(models, inputs, generated))
        metrics["discriminator_pose"] = _average(per_example, global_batch_size)
        total += metrics["discriminator_pose"]
        variables += models.pose_discriminator.trainable_variables
    return total, metrics, variables


def generator_losses(models, inputs, target_image, generated, weights, phases, global_batch_size, target_mask=None):
    """(total, metrics): the weighted sum of eq. 5's terms; ``weights`` maps term -> scalar (scheduled).

    With a ``target_mask`` (b, H, W, 1) the L1 term weighs pixels 1 + weights["foreground"] inside it.
    """
    metrics = {}
    l1 = losses.l1_loss(generated, target_image)
    metrics["l1"] = _average(l1, global_batch_size)
    reconstruction = l1 if target_mask is None else losses.weighted_l1_loss(generated, target_image, 1.0 + weights["foreground"] * target_mask)
    per_example = weights["l1"] * reconstruction
    if "mask_ssim" in weights:
        structure = losses.ssim_loss(generated, target_image, target_mask)
        metrics["mask_ssim_loss"] = _average(structure, global_batch_size)
        per_example += weights["mask_ssim"] * structure
    if "ssim" in weights:
        structure = losses.ssim_loss(generated, target_image)
        metrics["ssim_loss"] = _average(structure, global_batch_size)
        per_example += weights["ssim"] * structure
    if models.features is not None:
        perceptual = losses.perceptual_loss(models.features(vgg_preprocess(generated)), models.features(vgg_preprocess(target_image)))
        metrics["perceptual"] = _average(perceptual, global_batch_size)
        per_example += weights["perceptual"] * perceptual
    if phases.appearance:
        adversarial = losses.gan_generator_loss(appearance_logits(models, inputs, generated))
        metrics["gan_appearance"] = _average(adversarial, global_batch_size)
        per_example += weights["gan_appearance"] * adversarial
    if phases.pose:
        adversarial = losses.gan_generator_loss(pose_logits(models, inputs, generated))
        metrics["gan_pose"] = _average(adversarial, global_batch_size)
        per_example += weights["gan_pose"] * adversarial
    metrics["generator_total"] = _average(per_example, global_batch_size)
    return metrics["generator_total"], metrics


def _apply(optimizer, tape, scaled_loss, variables):
    """Gradients of a loss scaled by ``optimizer.scale_loss`` (inside the tape), applied (and unscaled) by the optimizer."""
    optimizer.apply(tape.gradient(scaled_loss, variables), variables)


def train_step(models, optimizers, batch, weights, phases, global_batch_size, unsupervised=False):
    """One D update then one G update on this replica's batch; returns the losses (replica share)."""
    inputs, target_image = step_inputs(batch, unsupervised)
    with tf.GradientTape() as generator_tape:
        generated = models.generator(inputs, training=True)
    metrics = {}
    if phases.adversarial:  # discriminator phase: on the same generated batch, generator gradient stopped
        with tf.GradientTape() as discriminator_tape:
            total, discriminator_metrics, variables = discriminator_losses(
                models, inputs, target_image, tf.stop_gradient(generated), phases, global_batch_size
            )
            scaled = optimizers.discriminator.scale_loss(total)  # mixed precision: recorded on the tape
        _apply(optimizers.discriminator, discriminator_tape, scaled, variables)
        metrics.update(discriminator_metrics)
    with generator_tape:  # generator phase: resumes the tape that recorded the forward pass
        total, generator_metrics = generator_losses(
            models, inputs, target_image, generated, weights, phases, global_batch_size, batch.get("target_mask")
        )
        scaled = optimizers.generator.scale_loss(total)
    _apply(optimizers.generator, generator_tape, scaled, models.generator.trainable_variables)
    metrics.update(generator_metrics)
    return metrics
