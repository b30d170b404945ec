"""Keypoints -> 18-channel Gaussian heatmaps (TensorFlow ops) and pose masks for mask-SSIM (NumPy, OpenCV; and in the graph)."""

import cv2
import numpy as np
import tensorflow as tf

from pnr_tf.conventions import MIRRORED_JOINTS
from pnr_tf.conventions import visible_joints

HEATMAP_SIGMA = 6.0

# Def-GAN's produce_ma_mask limbs (0-based joint indices), which PATN's mask-SSIM uses.
MASK_LIMBS = (
    (1, 2), (1, 5), (2, 3), (3, 4), (5, 6), (6, 7), (1, 8), (8, 9), (9, 10), (1, 11), (11, 12), (12, 13),
    (1, 0), (0, 14), (14, 16), (0, 15), (15, 17), (1, 16), (1, 17), (8, 11), (11, 5), (8, 2), (16, 17),
)  # fmt: skip
MASK_POINT_RADIUS = 4

HEATMAP_SCOPE = "pose_heatmaps"  # the name scope of the heatmap ops


def keypoints_to_heatmaps(keypoints, height, width, sigma=HEATMAP_SIGMA):
    """(..., 18, 2) keypoints (y, x) in pixels -> (..., height, width, 18) heatmaps.

    Channel j is exp(-((r - y_j)^2 + (c - x_j)^2) / (2 sigma^2)). A missing joint (either coordinate
    negative, -1 in the files, or not finite: pose detectors emit NaN for joints they do not see) or a
    joint outside the image gives an all-zero channel. Vectorised over joints and pixels (separable
    Gaussian), so it runs inside tf.data and exported graphs, TFLite's builtin ops included.
    """
    # A name scope of their own: int8 TFLite export keeps the heatmaps in float (squared distances
    # in eight bits would flatten the Gaussians).
    with tf.name_scope(HEATMAP_SCOPE):
        keypoints = tf.cast(keypoints, tf.float32)
        visible = visible_joints(keypoints, (height, width))
        # Missing joints are moved to (0, 0) before the Gaussian: NaN * 0 would be NaN, not an empty channel.
        keypoints = tf.where(tf.expand_dims(visible, -1), keypoints, tf.zeros_like(keypoints))
        rows = keypoints[..., 0]
        columns = keypoints[..., 1]
        rows_grid = tf.reshape(tf.range(height, dtype=tf.float32), [height, 1])
        columns_grid = tf.reshape(tf.range(width, dtype=tf.float32), [width, 1])
        scale = -0.5 / (sigma * sigma)
        # (..., height, 18) and (..., width, 18), multiplied into (..., height, width, 18).
        row_profile = tf.exp(scale * tf.square(rows_grid - tf.expand_dims(rows, -2)))
        column_profile = tf.exp(scale * tf.square(columns_grid - tf.expand_dims(columns, -2)))
        column_profile = column_profile * tf.expand_dims(tf.cast(visible, tf.float32), -2)
        return tf.expand_dims(row_profile, -2) * tf.expand_dims(column_profile, -3)


def _polygon_mask(vertex_rows, vertex_columns, shape):
    """Pixels (r, c) inside a polygon by the crossing-number rule at integer pixel centres.

    The rule of skimage.draw.polygon, which PATN's mask uses: a pixel counts when a ray in +c
    crosses an odd number of edges, each edge half-open in r.
    """
    height, width = shape
    mask = np.zeros(shape, dtype=bool)
    row_start = int(max(0, np.floor(vertex_rows.min())))
    row_stop = int(min(height - 1, np.ceil(vertex_rows.max())))
    column_start = int(max(0, np.floor(vertex_columns.min())))
    column_stop = int(min(width - 1, np.ceil(vertex_columns.max())))
    if row_start > row_stop or column_start > column_stop:
        return mask
    rows, columns = np.meshgrid(
        np.arange(row_start, row_stop + 1, dtype=np.float64),
        np.arange(column_start, column_stop + 1, dtype=np.float64),
        indexing="ij",
    )
    inside = np.zeros(rows.shape, dtype=bool)
    previous = len(vertex_rows) - 1
    for current in range(len(vertex_rows)):
        r0, c0 = vertex_rows[current], vertex_columns[current]
        r1, c1 = vertex_rows[previous], vertex_columns[previous]
        spans = ((r0 <= rows) & (rows < r1)) | ((r1 <= rows) & (rows < r0))
        if r1 != r0:
            crossing = (c1 - c0) * (rows - r0) / (r1 - r0) + c0
            inside ^= spans & (columns < crossing)
        previous = current
    mask[row_start : row_stop + 1, column_start : column_stop + 1] = inside
    return mask


def mirror_pose_heatmaps(heatmaps):
    """Left-right mirror of (..., H, W, 18) heatmaps, joints relabelled: the heatmaps of the mirrored keypoints.

    Exact, because the Gaussians sit on the pixel grid: a joint at column x moves to W - 1 - x.
    """
    return tf.gather(tf.reverse(heatmaps, axis=[-2]), MIRRORED_JOINTS, axis=-1)


def pose_mask(keypoints, height, width, point_radius=MASK_POINT_RADIUS):
    """The mask-SSIM / mask-IS body mask of one pose (PATN's protocol), a (height, width) bool array.

    Filled limb rectangles of half-width point_radius over MASK_LIMBS, a disk of radius point_radius
    at each visible joint, then a 5x5 dilation followed by a 5x5 erosion. A limb whose two ends
    coincide is skipped (its direction is undefined; the joint disks cover it).
    """
    keypoints = np.asarray(keypoints, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        visible = visible_joints(keypoints, (height, width))
    mask = np.zeros((height, width), dtype=bool)
    for start, end in MASK_LIMBS:
        if not (visible[start] and visible[end]):
            continue
        direction = keypoints[start] - keypoints[end]
        length = np.linalg.norm(direction)
        if length == 0:
            continue
        normal = point_radius * np.array([-direction[1], direction[0]]) / length
        corners = np.array([keypoints[start] + normal, keypoints[start] - normal, keypoints[end] - normal, keypoints[end] + normal])
        mask |= _polygon_mask(corners[:, 0], corners[:, 1], (height, width))
    rows, columns = np.mgrid[0:height, 0:width]
    for row, column in keypoints[visible]:
        mask |= (rows - row) ** 2 + (columns - column) ** 2 < point_radius**2
    # Border pixels see the window clipped to the image, as skimage's reflect mode gives for a square.
    square = np.ones((5, 5), np.uint8)
    mask = cv2.dilate(mask.astype(np.uint8), square)
    return cv2.erode(mask, square).astype(bool)


def pose_mask_tensor(keypoints, height, width, point_radius=MASK_POINT_RADIUS):
    """pose_mask in the graph: (18, 2) keypoints -> (height, width) float32, 1 inside the body mask.

    The same rules in the same float64 arithmetic (each limb's crossing-number fill over the whole
    grid, which a bounding box only narrows), so it equals pose_mask pixel for pixel; training's
    input pipeline draws its target masks with it instead of calling back into Python.
    """
    keypoints = tf.cast(keypoints, tf.float64)
    visible = visible_joints(keypoints, (height, width))
    starts, ends = zip(*MASK_LIMBS)
    start_points, end_points = tf.gather(keypoints, starts), tf.gather(keypoints, ends)  # (limbs, 2)
    direction = start_points - end_points
    length = tf.sqrt(direction[:, 0] * direction[:, 0] + direction[:, 1] * direction[:, 1])
    drawn = tf.gather(visible, starts) & tf.gather(visible, ends) & (length > 0)
    normal = point_radius * tf.stack([-direction[:, 1], direction[:, 0]], axis=-1) / tf.where(length > 0, length, 1.0)[:, None]
    corners = tf.stack([start_points + normal, start_points - normal, end_points - normal, end_points + normal], axis=1)
    corners = tf.where(drawn[:, None, None], corners, 0.0)  # (limbs, 4, 2); an undrawn limb is a point: no pixel
    previous = tf.roll(corners, shift=1, axis=1)  # edge i runs from corner i - 1 to corner i, as _polygon_mask
    r0, c0 = corners[..., 0, None, None], corners[..., 1, None, None]  # (limbs, 4, 1, 1)
    r1, c1 = previous[..., 0, None, None], previous[..., 1, None, None]
    rows = tf.range(height, dtype=tf.float64)[:, None]
    columns = tf.range(width, dtype=tf.float64)[None, :]
    spans = ((r0 <= rows) & (rows < r1)) | ((r1 <= rows) & (rows < r0))  # never true when r0 == r1
    crossing = (c1 - c0) * (rows - r0) / tf.where(r1 != r0, r1 - r0, 1.0) + c0
    crossings = tf.reduce_sum(tf.cast(spans & (columns < crossing), tf.int32), axis=1)  # (limbs, height, width)
    mask = tf.reduce_any((crossings % 2 == 1) & drawn[:, None, None], axis=0)
    distance = (rows[None] - keypoints[:, 0, None, None]) ** 2 + (columns[None] - keypoints[:, 1, None, None]) ** 2
    mask |= tf.reduce_any((distance < point_radius**2) & visible[:, None, None], axis=0)
    # Max pooling with SAME padding sees the window clipped to the image, as cv2's default border does.
    mask = tf.cast(mask, tf.float32)[None, ..., None]
    dilated = tf.nn.max_pool2d(mask, 5, 1, "SAME")
    return -tf.nn.max_pool2d(-dilated, 5, 1, "SAME")[0, ..., 0]
