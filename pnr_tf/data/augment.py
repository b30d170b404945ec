"""Training-time augmentation of an example: mirror, zoom and colour, the same for its sources and its target.

The paper trains without augmentation on 263k Market pairs; a few hundred photos overfit within
an hour on a CPU, so ``configs/market_cpu.yaml`` turns these on (BENCHMARKS.md measures each):

- mirror: the images flipped left-right, the keypoints mirrored and their left and right joints
  swapped (a mirrored right wrist is a left wrist);
- zoom: scaled by up to ``1 +- scale`` about the centre and shifted by up to ``scale / 2`` of the
  size, the border repeated; keypoints moved alike, those that leave the image become missing;
- colour: one brightness, contrast, saturation and hue change for all images of the example, so the
  target keeps the sources' appearance (a red shirt stays the same red in both).

Random draws are stateless, from (seed, the example's position in the stream): a resumed run
augments its examples as the uninterrupted run would.
"""

import dataclasses
import math

import tensorflow as tf

from pnr_tf.conventions import MIRRORED_JOINTS
from pnr_tf.conventions import MISSING
from pnr_tf.conventions import visible_joints


@dataclasses.dataclass(frozen=True)
class Augmentation:
    mirror: bool = False
    scale: float = 0.0  # largest relative zoom (0.1: 0.91-1.1x) and half the largest shift as a fraction of the size
    colour: float = 0.0  # brightness shift and contrast / saturation change up to this much; hue up to a tenth of it

    @property
    def active(self):
        return self.mirror or self.scale > 0 or self.colour > 0


def mirror(images, keypoints):
    """Left-right mirror of (N, H, W, C) images and their (N, 18, 2) (y, x) keypoints, joints relabelled."""
    width = tf.cast(tf.shape(images)[2], tf.float32)
    present = tf.expand_dims(visible_joints(keypoints), -1)
    mirrored = tf.stack([keypoints[..., 0], width - 1.0 - keypoints[..., 1]], axis=-1)
    keypoints = tf.where(present, mirrored, keypoints)
    return tf.reverse(images, axis=[2]), tf.gather(keypoints, MIRRORED_JOINTS, axis=1)


def zoom(images, keypoints, scale, shift):
    """Scale (N, H, W, C) images by ``scale`` about the centre and shift them by ``shift`` (dy, dx) pixels.

    A keypoint p moves to scale * (p - centre) + centre + shift; one that leaves the image is missing.
    """
    height, width = tf.cast(tf.shape(images)[1], tf.float32), tf.cast(tf.shape(images)[2], tf.float32)
    centre = tf.stack([(height - 1.0) / 2.0, (width - 1.0) / 2.0])
    # The transform maps each output pixel (x, y) to the input point it samples: the inverse of the above.
    offset = centre - (centre + shift) / scale
    transform = tf.stack([1.0 / scale, 0.0, offset[1], 0.0, 1.0 / scale, offset[0], 0.0, 0.0])
    transformed = tf.raw_ops.ImageProjectiveTransformV3(
        images=images, transforms=tf.tile(transform[None], [tf.shape(images)[0], 1]), output_shape=tf.shape(images)[1:3],
        fill_value=0.0, interpolation="BILINEAR", fill_mode="NEAREST",
    )  # fmt: skip
    moved = scale * (keypoints - centre) + centre + shift
    kept = visible_joints(keypoints) & visible_joints(moved, (height, width))
    return transformed, tf.where(tf.expand_dims(kept, -1), moved, tf.cast(MISSING, tf.float32))


def recolour(images, brightness, contrast, saturation, hue):
    """One colour change for (N, H, W, 3) images in [-1, 1]: the same numbers for every image."""
    pixels = (images + 1.0) / 2.0
    pixels = tf.image.adjust_hue(pixels, hue)
    pixels = tf.image.adjust_saturation(pixels, saturation)
    mean = tf.reduce_mean(pixels, axis=[1, 2, 3], keepdims=True)
    pixels = (pixels - mean) * contrast + mean + brightness
    return tf.clip_by_value(pixels, 0.0, 1.0) * 2.0 - 1.0


def augment(images, keypoints, augmentation, seed):
    """(N, H, W, 3) images in [-1, 1] and (N, 18, 2) keypoints of one example, augmented alike.

    ``seed``: a (2,) int tensor, e.g. (train.seed, the example's position in the stream).
    """
    keypoints = tf.cast(keypoints, tf.float32)
    draws = tf.random.stateless_uniform([8], seed=seed)  # every draw of the example from one stateless call
    if augmentation.mirror:
        images, keypoints = tf.cond(draws[0] < 0.5, lambda: mirror(images, keypoints), lambda: (images, keypoints))
    if augmentation.scale > 0:
        limit = math.log1p(augmentation.scale)
        scale = tf.exp((2.0 * draws[1] - 1.0) * limit)
        size = tf.cast(tf.shape(images)[1:3], tf.float32)
        shift = (2.0 * draws[2:4] - 1.0) * augmentation.scale / 2.0 * size
        images, keypoints = zoom(images, keypoints, scale, shift)
    if augmentation.colour > 0:
        strength = augmentation.colour
        images = recolour(images, brightness=(2.0 * draws[4] - 1.0) * strength, contrast=1.0 + (2.0 * draws[5] - 1.0) * strength,
                          saturation=1.0 + (2.0 * draws[6] - 1.0) * strength, hue=(2.0 * draws[7] - 1.0) * strength / 10.0)  # fmt: skip
    return images, keypoints
