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
    return 1.0 - _ssim(generated, target)


_SSIM_WINDOW, _SSIM_SIGMA = 11, 1.5


def _ssim(x, y, max_value=1.0):
    """tf.image.ssim(x, y, max_value, 11, 1.5) per example, its Gaussian window applied as two 11-tap passes.

    The 11 x 11 window is the outer product of a normalised 11-tap Gaussian, so filtering by rows, then
    columns (VALID, as tf.image.ssim) is the same sum in 22 products a pixel instead of 121: the SSIM
    terms were a tenth of market_cpu's training step (BENCHMARKS.md).
    """
    taps = tf.range(_SSIM_WINDOW, dtype=tf.float32) - (_SSIM_WINDOW - 1) / 2.0
    gaussian = tf.exp(-tf.square(taps) / (2.0 * _SSIM_SIGMA**2))
    gaussian /= tf.reduce_sum(gaussian)
    channels = x.shape[-1]
    rows = tf.tile(tf.reshape(gaussian, [_SSIM_WINDOW, 1, 1, 1]), [1, 1, channels * 5, 1])
    columns = tf.tile(tf.reshape(gaussian, [1, _SSIM_WINDOW, 1, 1]), [1, 1, channels * 5, 1])
    stacked = tf.concat([x, y, x * x, y * y, x * y], axis=-1)  # the five quantities, filtered in one pass
    filtered = tf.nn.depthwise_conv2d(tf.nn.depthwise_conv2d(stacked, rows, [1, 1, 1, 1], "VALID"), columns, [1, 1, 1, 1], "VALID")
    mean_x, mean_y, mean_xx, mean_yy, mean_xy = tf.split(filtered, 5, axis=-1)
    c1, c2 = (0.01 * max_value) ** 2, (0.03 * max_value) ** 2
    luminance = (2.0 * mean_x * mean_y + c1) / (mean_x * mean_x + mean_y * mean_y + c1)
    structure = (2.0 * (mean_xy - mean_x * mean_y) + c2) / (mean_xx + mean_yy - mean_x * mean_x - mean_y * mean_y + c2)
    return tf.reduce_mean(luminance * structure, axis=[1, 2, 3])


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
