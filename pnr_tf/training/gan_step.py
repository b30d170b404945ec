"""Per-replica math of one training step: D_A and D_P update, then the generator update.

Runs inside `strategy.run`; the driver (trainer.py) owns the strategy, loop and checkpoints. Every
loss is per example, reduced with `tf.nn.compute_average_loss` over the global batch, so N replicas
apply the same update as one device on the same global batch.
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
    appearance_discriminator: keras.Model  # D_A: (image, source image), 6 channels
    pose_discriminator: keras.Model  # D_P: (image, target pose), 3 + 18 channels
    features: typing.Optional[keras.Model] = None  # VGG19 relu1_2, None when perceptual_weight is 0


@dataclasses.dataclass
class GANOptimizers:
    generator: keras.optimizers.Optimizer
    discriminator: keras.optimizers.Optimizer


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


def train_step(models, optimizers, batch, loss_config, global_batch_size, unsupervised=False):
    """One D step then one G step on this replica's batch; returns the losses (replica share)."""
    inputs, target_image = step_inputs(batch, unsupervised)
    first_source = inputs["source_image"] if inputs["source_image"].shape.rank == 4 else inputs["source_image"][:, 0]
    use_appearance = loss_config.gan_appearance_weight > 0 and not unsupervised
    use_pose = loss_config.gan_pose_weight > 0

    def appearance_logits(image):
        return models.appearance_discriminator(tf.concat([image, first_source], axis=-1), training=True)

    def pose_logits(image):
        return models.pose_discriminator(tf.concat([image, inputs["target_pose"]], axis=-1), training=True)

    metrics = {}
    with tf.GradientTape() as generator_tape:
        generated = models.generator(inputs, training=True)
        # The discriminators learn from this same generated batch, outside the generator's tape.
        with generator_tape.stop_recording():
            fake = tf.stop_gradient(generated)
            discriminator_variables = []
            with tf.GradientTape() as discriminator_tape:
                discriminator_loss = 0.0
                if use_appearance:
                    per_example = losses.gan_discriminator_loss(appearance_logits(target_image), appearance_logits(fake))
                    metrics["discriminator_appearance"] = _average(per_example, global_batch_size)
                    discriminator_loss += metrics["discriminator_appearance"]
                    discriminator_variables += models.appearance_discriminator.trainable_variables
                if use_pose:
                    per_example = losses.gan_discriminator_loss(pose_logits(target_image), pose_logits(fake))
                    metrics["discriminator_pose"] = _average(per_example, global_batch_size)
                    discriminator_loss += metrics["discriminator_pose"]
                    discriminator_variables += models.pose_discriminator.trainable_variables
                scaled = optimizers.discriminator.scale_loss(discriminator_loss)
            if discriminator_variables:
                gradients = discriminator_tape.gradient(scaled, discriminator_variables)
                optimizers.discriminator.apply(gradients, discriminator_variables)

        per_example = loss_config.l1_weight * losses.l1_loss(generated, target_image)
        metrics["l1"] = _average(losses.l1_loss(generated, target_image), global_batch_size)
        if models.features is not None and loss_config.perceptual_weight > 0:
            perceptual = losses.perceptual_loss(
                models.features(vgg_preprocess(generated)), models.features(vgg_preprocess(target_image))
            )
            metrics["perceptual"] = _average(perceptual, global_batch_size)
            per_example += loss_config.perceptual_weight * perceptual
        if use_appearance:
            adversarial = losses.gan_generator_loss(appearance_logits(generated))
            metrics["gan_appearance"] = _average(adversarial, global_batch_size)
            per_example += loss_config.gan_appearance_weight * adversarial
        if use_pose:
            adversarial = losses.gan_generator_loss(pose_logits(generated))
            metrics["gan_pose"] = _average(adversarial, global_batch_size)
            per_example += loss_config.gan_pose_weight * adversarial
        metrics["generator_total"] = _average(per_example, global_batch_size)
        scaled = optimizers.generator.scale_loss(metrics["generator_total"])
    variables = models.generator.trainable_variables
    optimizers.generator.apply(generator_tape.gradient(scaled, variables), variables)
    return metrics
