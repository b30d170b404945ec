"""The keypoint and pixel conventions: one home for what every path (data, pose, models, inference,
evaluation, the page, serving) means by a joint and a pixel.

Keypoints are 18 OpenPose-COCO joints (``JOINT_NAMES``), each (y, x) in pixel-centre coordinates:
pixel (r, c) is the unit square centred on (r, c), so the top-left pixel's centre is (0, 0), as in the
field's annotation files and in OpenCV. ``MISSING`` (-1) marks a joint that is not there; float
keypoints may use NaN instead.

One visibility rule: a joint is visible when both coordinates are finite and inside the image,
0 <= y < height and 0 <= x < width (``visible_joints``; without an image size, finite and >= 0).

Moving an image moves its joints by the same map of pixel centres: cutting a box (top, left, height,
width) of a photo and resizing it to (H, W) takes (y, x) to ((y - top + 0.5) H / height - 0.5, ...),
which is what ``cv2.resize`` and ``cv2.warpAffine`` do to the pixels (``crop_keypoints``,
``crop_matrix``; ``resize_keypoints`` is the whole photo as the box).

Pixels are uint8 RGB; models see float images in [-1, 1] (``from_pixels``, ``to_pixels``).
"""

import math

import numpy as np
import tensorflow as tf

NUM_JOINTS = 18
MISSING = -1
JOINT_NAMES = (
    "nose", "neck", "right_shoulder", "right_elbow", "right_wrist", "left_shoulder", "left_elbow", "left_wrist",
    "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee", "left_ankle",
    "right_eye", "left_eye", "right_ear", "left_ear",
)  # fmt: skip
SHOULDERS_AND_HIPS = (2, 5, 8, 11)
# Joint i of a mirrored person is joint MIRRORED_JOINTS[i] of the original (a mirrored right wrist is a left wrist).
MIRRORED_JOINTS = (0, 1, 5, 6, 7, 2, 3, 4, 11, 12, 13, 8, 9, 10, 15, 14, 17, 16)
# Recorded in every generator file (pnr_tf.models.generator.InferenceContract).
KEYPOINT_FORMAT = f"openpose-coco-{NUM_JOINTS}:yx-pixels:missing=-1"

# The most pixels any path decodes: a 9248 x 6936 phone photo fits, and decoded it takes 192 MB
# (pnr_tf.images sizes every image from its header first; pnr_tf/__init__.py gives OpenCV the same limit).
MAX_PIXELS = 64 * 1024 * 1024
PIXEL_SCOPE = "pixel_conversion"  # the name scope of the uint8 <-> [-1, 1] ops (int8 TFLite keeps them float)


def visible_joints(keypoints, image_size=None):
    """(..., 18, 2) keypoints -> (..., 18) bool: finite and inside the image (finite and >= 0 without a size).

    NumPy arrays and TensorFlow tensors alike, with comparisons only (TFLite builtin ops): a NaN
    compares false and an infinity falls outside any bound, so neither is visible.
    """
    height, width = image_size if image_size is not None else (math.inf, math.inf)
    rows, columns = keypoints[..., 0], keypoints[..., 1]
    return (rows >= 0) & (columns >= 0) & (rows < height) & (columns < width)


def has_visible_joint(keypoints, image_size):
    """NumPy (..., 18, 2) -> (...,) bool: at least one visible joint, the rule every source and target pose must pass."""
    return visible_joints(np.asarray(keypoints, np.float32), image_size).any(axis=-1)


def with_missing(keypoints, image_size=None):
    """Float32 keypoints with every joint that is not visible set to MISSING (NaN included)."""
    keypoints = np.asarray(keypoints, np.float32)
    with np.errstate(invalid="ignore"):
        visible = visible_joints(keypoints, image_size)
    return np.where(visible[..., None], keypoints, np.float32(MISSING))


def crop_keypoints(keypoints, box, output_size):
    """Keypoints of a photo -> keypoints of its box (top, left, height, width) resized to output_size (H, W).

    Pixel centres map to pixel centres. A joint that lands in the output's outer half pixel is put on the
    border pixel's centre; one that was missing, or lands outside the output, is MISSING.
    """
    top, left, height, width = box
    scale = np.array([output_size[0] / height, output_size[1] / width], np.float64)
    keypoints = np.asarray(keypoints, np.float64)
    last = np.array(output_size, np.float64) - 1.0
    with np.errstate(invalid="ignore"):
        present = visible_joints(keypoints)
        moved = (keypoints - np.array([top, left]) + 0.5) * scale - 0.5
        inside = present & visible_joints(moved + 0.5, output_size)  # in [-0.5, size - 0.5): on the output's pixels
        kept = np.clip(moved, 0.0, last)
    return np.where(inside[..., None], kept, MISSING).astype(np.float32)


def resize_keypoints(keypoints, input_size, output_size):
    """Keypoints of an image of input_size (H, W) -> those of the image resized to output_size."""
    return crop_keypoints(keypoints, (0.0, 0.0, float(input_size[0]), float(input_size[1])), output_size)


def crop_matrix(box, output_size):
    """The 2 x 3 affine map from an output pixel (x, y) to the photo point it samples (cv2.warpAffine with
    WARP_INVERSE_MAP): the pixel-centre map of ``crop_keypoints``, inverted."""
    top, left, height, width = box
    step_x, step_y = width / output_size[1], height / output_size[0]
    return np.array([[step_x, 0.0, left + 0.5 * step_x - 0.5], [0.0, step_y, top + 0.5 * step_y - 0.5]])


def mirror_keypoints(keypoints, width):
    """NumPy (..., 18, 2) keypoints of an image flipped left-right: x -> width - 1 - x, left and right joints exchanged."""
    keypoints = np.asarray(keypoints, np.float32)
    present = visible_joints(keypoints)[..., None]
    flipped = np.where(present, np.stack([keypoints[..., 0], width - 1.0 - keypoints[..., 1]], axis=-1), keypoints)
    return flipped[..., MIRRORED_JOINTS, :]


def from_pixels(pixels):
    """uint8 pixels -> float32 images in [-1, 1]: a tensor for a tensor, an array for anything else."""
    if tf.is_tensor(pixels):
        with tf.name_scope(PIXEL_SCOPE):
            return tf.cast(pixels, tf.float32) / 127.5 - 1.0
    return np.asarray(pixels, np.float32) / np.float32(127.5) - np.float32(1.0)


def pixel_levels(images):
    """Float images in [-1, 1] -> float levels in [0, 255], unrounded and differentiable (a loss network's input)."""
    return (tf.cast(images, tf.float32) + 1.0) * 127.5


def to_pixels(images):
    """Float images in [-1, 1] -> uint8 pixels, rounded and clipped: a tensor for a tensor, an array for anything else."""
    if tf.is_tensor(images):
        with tf.name_scope(PIXEL_SCOPE):
            return tf.cast(tf.clip_by_value(tf.round((tf.cast(images, tf.float32) + 1.0) * 127.5), 0.0, 255.0), tf.uint8)
    return ((np.asarray(images, np.float64) + 1.0) * 127.5).round().clip(0, 255).astype(np.uint8)
