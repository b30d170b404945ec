"""Pictures people would rather look at: skeletons drawn on images, labelled rows of images."""

import cv2
import numpy as np
import tensorflow as tf

from pnr_tf import files
from pnr_tf.conventions import to_pixels
from pnr_tf.conventions import visible_joints
from pnr_tf.images import ImageFileError
from pnr_tf.images import decode_rgb

# OpenPose-18 bones (neck to the limbs, head) and one colour per bone, RGB.
SKELETON = (
    (1, 2), (2, 3), (3, 4), (1, 5), (5, 6), (6, 7), (1, 8), (8, 9), (9, 10),
    (1, 11), (11, 12), (12, 13), (1, 0), (0, 14), (14, 16), (0, 15), (15, 17),
)  # fmt: skip
_COLOURS = [tuple(int(c) for c in cv2.cvtColor(np.uint8([[[hue, 255, 255]]]), cv2.COLOR_HSV2RGB)[0, 0]) for hue in range(0, 180, 180 // len(SKELETON))]


def draw_pose(image, keypoints, thickness=1):
    """A copy of a (H, W, 3) uint8 RGB image with the skeleton of (18, 2) (y, x) keypoints on it."""
    canvas = np.ascontiguousarray(image, dtype=np.uint8).copy()
    keypoints = np.asarray(keypoints, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        visible = visible_joints(keypoints, canvas.shape[:2])
    for (start, end), colour in zip(SKELETON, _COLOURS):
        if visible[start] and visible[end]:
            first = (int(round(keypoints[start, 1])), int(round(keypoints[start, 0])))
            second = (int(round(keypoints[end, 1])), int(round(keypoints[end, 0])))
            cv2.line(canvas, first, second, colour, thickness, cv2.LINE_AA)
    for row, column in keypoints[visible]:
        cv2.circle(canvas, (int(round(column)), int(round(row))), thickness + 1, (255, 255, 255), -1, cv2.LINE_AA)
    return canvas


def labelled_rows(rows, labels=None, gap=2):
    """Rows of equal-height uint8 images -> one picture, with a text label left of each row."""
    height = rows[0][0].shape[0]
    label_width = 0 if labels is None else 8 + 6 * max(len(label) for label in labels)
    pictures = []
    for index, row in enumerate(rows):
        parts = []
        if labels is not None:
            label = np.full((height, label_width, 3), 255, np.uint8)
            cv2.putText(label, labels[index], (4, height // 2 + 4), cv2.FONT_HERSHEY_PLAIN, 0.8, (0, 0, 0), 1, cv2.LINE_AA)
            parts.append(label)
        for image in row:
            parts.extend([image, np.full((height, gap, 3), 255, np.uint8)])
        pictures.append(np.concatenate(parts[:-1], axis=1))
    width = max(picture.shape[1] for picture in pictures)
    padded = [np.pad(picture, ((0, gap), (0, width - picture.shape[1]), (0, 0)), constant_values=255) for picture in pictures]
    return np.concatenate(padded, axis=0)[:-gap] if gap else np.concatenate(padded, axis=0)


def pose_picture(heatmaps):
    """(..., H, W, 18) heatmaps -> (..., H, W, 3) grey pictures in [-1, 1], for grids."""
    heatmaps = np.asarray(heatmaps)
    return np.repeat(np.max(heatmaps, axis=-1, keepdims=True), 3, axis=-1) * 2.0 - 1.0


def panel_grid(columns):
    """Equal-length lists of (H, W, 3) images in [-1, 1] -> one uint8 picture, one row per example, the columns side by side."""
    rows = np.concatenate([np.asarray(column, np.float32) for column in columns], axis=2)
    return to_pixels(np.concatenate(list(rows), axis=0))


def write_rgb(path, image):
    """Writes a uint8 RGB picture (PNG or JPEG by the extension) to a local path or a URI (pnr_tf.files)."""
    suffix = "." + str(path).rsplit(".", 1)[-1].lower() if "." in str(path) else ""
    try:
        ok, data = cv2.imencode(suffix, cv2.cvtColor(np.asarray(image, np.uint8), cv2.COLOR_RGB2BGR))
    except cv2.error:
        ok = False
    if not ok:
        raise OSError(f"could not write {path}: an image file name ends in .png or .jpg")
    files.write_bytes(path, data.tobytes())


def read_rgb(path):
    """A uint8 RGB image from a local path or a URI, sized from its header before it is decoded
    (``pnr_tf.images``: EXIF orientation applied). FileNotFoundError when there is no file,
    ``ImageFileError`` when it is a folder, empty, too large or no image."""
    if files.is_dir(path):
        raise ImageFileError(f"{path} is a folder, not an image file")
    try:
        data = files.read_bytes(path)
    except tf.errors.NotFoundError:
        raise FileNotFoundError(f"cannot read an image from {path}: no such file") from None
    return decode_rgb(data, str(path))
