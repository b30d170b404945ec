"""Losses as pure functions returning one value per example (eq. 5, 6 of the paper).

Reduce them with `tf.nn.compute_average_loss(per_example, global_batch_size=...)` under a
distribution strategy: a plain mean would scale the update with the number of replicas.
"""

import tensorflow as tf


def _mean_per_example(values):
    values = tf.cast(values, tf.float32)
    return tf.reduce_mean(tf.reshape(values, [tf.shape(values)[0], -1]), axis=1)


def l1_loss(generated, target):
    """Mean absolute pixel difference per example: |x_hat - x_t|_1 / (H W 3)."""
    return _mean_per_example(tf.abs(tf.cast(generated, tf.float32) - tf.cast(target, tf.float32)))


def weighted_l1_loss(generated, target, pixel_weights):
    """Mean weighted absolute pixel difference per example: sum(w |x_hat - x_t|) / (H W 3), w of shape (b, H, W, 1).

    With w = 1 + m for the target's body mask m it is PG2's pose-mask L1 (Ma et al. 2017, eq. 3).
    """
    difference = tf.abs(tf.cast(generated, tf.float32) - tf.cast(target, tf.float32))
    return _mean_per_example(difference * tf.cast(pixel_weights, tf.float32))


def ssim_loss(generated, target, mask=None):
    """1 - SSIM per example, with PATN's window (11 x 11 Gaussian, sigma 1.5), on images in [-1, 1].

    With a (b, H, W, 1) 0/1 mask both images are multiplied by it first: mask-SSIM's recipe, so the
    term asks for the person's structure and leaves the background, which no pose predicts, alone.
    """
    generated = (tf.cast(generated, tf.float32) + 1.0) / 2.0
    target = (tf.cast(target, tf.float32) + 1.0) / 2.0
    if mask is not None:
        generated, target = generated * mask, target * mask
    return 1.0 - tf.image.ssim(generated, target, max_val=1.0, filter_size=11, filter_sigma=1.5)


def perceptual_loss(generated_features, target_features):
    """Mean absolute feature difference per example: |phi(x_hat) - phi(x_t)|_1 / size (PATN, relu1_2)."""
    return l1_loss(generated_features, target_features)


def gan_generator_loss(fake_logits):
    """BCE(D(fake), 1) averaged over the patch logits of each example (non-saturating GAN)."""
    fake_logits = tf.cast(fake_logits, tf.float32)
    return _mean_per_example(tf.nn.sigmoid_cross_entropy_with_logits(tf.ones_like(fake_logits), fake_logits))


def gan_discriminator_loss(real_logits, fake_logits):
    """BCE(D(real), 1) + BCE(D(fake), 0), each averaged over patch logits, per example."""
    real_logits = tf.cast(real_logits, tf.float32)
    fake_logits = tf.cast(fake_logits, tf.float32)
    real = tf.nn.sigmoid_cross_entropy_with_logits(tf.ones_like(real_logits), real_logits)
    fake = tf.nn.sigmoid_cross_entropy_with_logits(tf.zeros_like(fake_logits), fake_logits)
    return _mean_per_example(real) + _mean_per_example(fake)
