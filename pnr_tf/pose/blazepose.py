"""BlazePose (MediaPipe's detector and full landmark model) run with ai-edge-litert, in NumPy and OpenCV.

The two stages as MediaPipe's pose graphs configure them (pose_detection_cpu.pbtxt,
pose_landmark_by_roi_cpu.pbtxt; the facts, not their code):

1. Detector: the photo letterboxed into 224 x 224, values in [-1, 1]; 2254 SSD anchors (five
   layers with strides 8, 16, 32, 32, 32, two anchors per cell and layer, fixed size); per anchor a
   box and four keypoints (hip centre, a full-body scale/rotation point, shoulder centre, an
   upper-body one) as offsets in input pixels, and a score (sigmoid of a logit clipped to +-100);
   weighted non-maximum suppression at IoU 0.3.
2. Region of interest: centred on the hip centre, side twice the distance to the full-body point,
   rotated so that direction points up, enlarged 1.25 times, square.
3. Landmarks: that region resampled to 256 x 256, values in [0, 1]; 39 landmarks of (x, y, z,
   visibility, presence) in crop pixels, the first 33 BlazePose's, and a pose-presence score.

The 33 landmarks become the field's 18 OpenPose-COCO joints (neck = midpoint of the shoulders),
-1 where the model's visibility is below 0.5 or the joint falls outside the photo.
"""

import dataclasses
import math

import cv2
import numpy as np

from pnr_tf.tensorflow_logging import quiet_startup

DETECTOR_SIZE = 224
LANDMARK_SIZE = 256
DETECTION_THRESHOLD = 0.5
# MediaPipe keeps a pose at presence 0.5 (for video, where the next frame retries). On Market's small
# crops 22 of 443 real people score below 0.5 but only 9 below 0.1, while blank and noise images score
# below 0.08: 0.15 refuses those and keeps most people.
PRESENCE_THRESHOLD = 0.15
# MediaPipe drops a landmark below visibility 0.5. On framed person crops the model is unsure of
# joints it places well: at 0.5, PCK@0.5 on the Market subset was 0.88, at 0.1 0.94 (BENCHMARKS.md).
VISIBILITY_THRESHOLD = 0.1
# A photo framed around one person (a dataset crop) is read whole: the square region around its
# centre, this many times its longer side, the outside black (Market subset PCK@0.5: 0.94 against
# 0.88 with 1.15 and the border repeated, 0.90 through the detector).
FRAMED_SCALE = 1.3
SUPPRESSION_IOU = 0.3
ROI_SCALE = 1.25
# OpenPose-COCO joint -> BlazePose landmark (None: the neck, the shoulders' midpoint).
OPENPOSE_FROM_BLAZEPOSE = (0, None, 12, 14, 16, 11, 13, 15, 24, 26, 28, 23, 25, 27, 5, 2, 8, 7)
SHOULDERS = (11, 12)


@dataclasses.dataclass
class Detection:
    score: float
    box: np.ndarray  # (x0, y0, x1, y1) in photo pixels
    keypoints: np.ndarray  # (4, 2) (x, y) in photo pixels


@dataclasses.dataclass
class Landmarks:
    points: np.ndarray  # (33, 2) (x, y) in photo pixels (continuous: pixel centres at .5)
    visibility: np.ndarray  # (33,) in [0, 1]
    presence: float  # the model's score that a person is in the region
    detection: Detection  # None when the region was the framed photo's
    auxiliary: tuple = None  # (hip centre, scale point) in photo pixels: the next region's alignment points


def sigmoid(values):
    return 1.0 / (1.0 + np.exp(-np.asarray(values, np.float64)))


def ssd_anchors(input_size=DETECTOR_SIZE, strides=(8, 16, 32, 32, 32), anchors_per_layer=2):
    """(2254, 2) anchor centres in [0, 1]: consecutive layers of one stride share a grid."""
    centres, layer = [], 0
    while layer < len(strides):
        last = layer
        while last < len(strides) and strides[last] == strides[layer]:
            last += 1
        cells = math.ceil(input_size / strides[layer])
        repeat = (last - layer) * anchors_per_layer
        grid = (np.stack(np.meshgrid(np.arange(cells), np.arange(cells)), axis=-1).reshape(-1, 2) + 0.5) / cells
        centres.append(np.repeat(grid, repeat, axis=0))
        layer = last
    return np.concatenate(centres).astype(np.float64)


def letterbox(photo, size):
    """The photo fitted into size x size (aspect kept, zero border); returns it and (scale, pad_x, pad_y)."""
    height, width = photo.shape[:2]
    scale = size / max(height, width)
    resized = cv2.resize(photo, (max(1, round(width * scale)), max(1, round(height * scale))), interpolation=cv2.INTER_AREA)
    pad_y, pad_x = (size - resized.shape[0]) // 2, (size - resized.shape[1]) // 2
    canvas = np.zeros((size, size, 3), np.uint8)
    canvas[pad_y : pad_y + resized.shape[0], pad_x : pad_x + resized.shape[1]] = resized
    return canvas, (scale, pad_x, pad_y)


def box_overlap(box, boxes):
    """IoU of one (x0, y0, x1, y1) box with many."""
    top_left = np.maximum(box[:2], boxes[:, :2])
    bottom_right = np.minimum(box[2:], boxes[:, 2:])
    intersection = np.prod(np.clip(bottom_right - top_left, 0, None), axis=1)
    area = lambda values: np.prod(values[..., 2:] - values[..., :2], axis=-1)  # noqa: E731
    return intersection / np.maximum(area(box) + area(boxes) - intersection, 1e-12)


def weighted_suppression(scores, boxes, keypoints, threshold=SUPPRESSION_IOU):
    """MediaPipe's WEIGHTED non-maximum suppression: each cluster's score-weighted mean, its best score."""
    order = np.argsort(-scores)
    remaining, kept = order, []
    while remaining.size:
        overlaps = box_overlap(boxes[remaining[0]], boxes[remaining])
        cluster, remaining = remaining[overlaps > threshold], remaining[overlaps <= threshold]
        weights = scores[cluster] / scores[cluster].sum()
        kept.append((scores[cluster[0]], (weights[:, None] * boxes[cluster]).sum(0), (weights[:, None, None] * keypoints[cluster]).sum(0)))
    return kept


class BlazePose:
    """The two BlazePose models on one photo at a time (RGB uint8, any size)."""

    def __init__(self, detector_path, landmark_path, num_threads=None):
        from ai_edge_litert.interpreter import Interpreter

        with quiet_startup():  # their start-up INFO line is not for users
            self.detector = Interpreter(model_path=str(detector_path), num_threads=num_threads)
            self.landmark_model = Interpreter(model_path=str(landmark_path), num_threads=num_threads)
            self.detector.allocate_tensors()
            self.landmark_model.allocate_tensors()
        self.anchors = ssd_anchors()

    @staticmethod
    def _run(interpreter, image):
        interpreter.set_tensor(interpreter.get_input_details()[0]["index"], image[np.newaxis].astype(np.float32))
        interpreter.invoke()
        return {detail["name"]: interpreter.get_tensor(detail["index"])[0] for detail in interpreter.get_output_details()}

    def detect(self, photo):
        """Every person the detector finds, best first, in photo pixels."""
        canvas, (scale, pad_x, pad_y) = letterbox(photo, DETECTOR_SIZE)
        outputs = self._run(self.detector, canvas.astype(np.float32) / 127.5 - 1.0)
        raw = next(value for value in outputs.values() if value.shape[-1] == 12)
        scores = sigmoid(np.clip(next(value for value in outputs.values() if value.shape[-1] == 1)[:, 0], -100, 100))
        chosen = scores >= DETECTION_THRESHOLD
        if not chosen.any():
            return []
        raw, anchors, scores = raw[chosen].astype(np.float64), self.anchors[chosen], scores[chosen]
        centres = raw[:, :2] / DETECTOR_SIZE + anchors  # x, y first: the graph's reverse_output_order
        sizes = raw[:, 2:4] / DETECTOR_SIZE
        boxes = np.concatenate([centres - sizes / 2, centres + sizes / 2], axis=1)
        keypoints = raw[:, 4:12].reshape(-1, 4, 2) / DETECTOR_SIZE + anchors[:, np.newaxis]
        to_photo = lambda values: (values * DETECTOR_SIZE - [pad_x, pad_y]) / scale  # noqa: E731  (letterbox removed)
        return [
            Detection(float(score), to_photo(box.reshape(2, 2)).reshape(4), to_photo(points))
            for score, box, points in weighted_suppression(scores, boxes, keypoints)
        ]

    @staticmethod
    def region(detection):
        """(centre x, centre y, side, rotation) of the landmark model's square region, photo pixels."""
        centre, scale_point = detection.keypoints[0], detection.keypoints[1]
        side = 2.0 * float(np.linalg.norm(scale_point - centre)) * ROI_SCALE
        rotation = math.pi / 2 - math.atan2(-(scale_point[1] - centre[1]), scale_point[0] - centre[0])
        rotation = (rotation + math.pi) % (2 * math.pi) - math.pi
        return float(centre[0]), float(centre[1]), side, rotation

    @staticmethod
    def framed_region(photo):
        """The region for a photo framed around one person (a Market crop): its centre, FRAMED_SCALE x its longer side."""
        height, width = photo.shape[:2]
        return width / 2, height / 2, FRAMED_SCALE * max(height, width), 0.0

    def framed_landmarks(self, photo):
        """The 33 landmarks of the person a photo is framed around: the whole photo, black around it, no detector."""
        return self._landmarks_in(photo, self.framed_region(photo), None, border=cv2.BORDER_CONSTANT)

    def landmarks(self, photo, detection, refine=True):
        """The 33 landmarks of one person: from the detection's region (or, with detection None, the
        framed region), then once more from the region the first pass's auxiliary points give."""
        if detection is None:
            return self.framed_landmarks(photo)
        landmarks = self._landmarks_in(photo, self.region(detection), detection)
        if refine:
            centre, scale_point = landmarks.auxiliary
            refined = Detection(landmarks.presence, None, np.stack([centre, scale_point]))
            second = self._landmarks_in(photo, self.region(refined), detection)
            if second.presence >= landmarks.presence * 0.9:
                landmarks = second
        return landmarks

    def _landmarks_in(self, photo, region, detection, border=cv2.BORDER_REPLICATE):
        centre_x, centre_y, side, rotation = region
        cosine, sine = math.cos(rotation), math.sin(rotation)
        step = side / LANDMARK_SIZE
        # Crop pixel (u, v) samples the photo at centre + R (side * ((u, v) + 0.5) / 256 - side / 2), in OpenCV's
        # pixel-centre coordinates (continuous - 0.5).
        offset = (0.5 / LANDMARK_SIZE - 0.5) * side
        matrix = np.array([
            [cosine * step, -sine * step, centre_x - 0.5 + cosine * offset - sine * offset],
            [sine * step, cosine * step, centre_y - 0.5 + sine * offset + cosine * offset],
        ])  # fmt: skip
        crop = cv2.warpAffine(photo, matrix, (LANDMARK_SIZE, LANDMARK_SIZE), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                              borderMode=border)  # fmt: skip
        outputs = self._run(self.landmark_model, crop.astype(np.float32) / 255.0)
        raw = next(value for value in outputs.values() if value.shape == (195,)).reshape(39, 5).astype(np.float64)
        # The pose flag is a probability already (MediaPipe thresholds it at 0.5 as it comes); visibility is a logit.
        presence = float(next(value for value in outputs.values() if value.shape == (1,))[0])
        relative = raw[:, :2] / LANDMARK_SIZE - 0.5  # in the region, centred
        points = np.stack([
            centre_x + side * (cosine * relative[:, 0] - sine * relative[:, 1]),
            centre_y + side * (sine * relative[:, 0] + cosine * relative[:, 1]),
        ], axis=1)  # fmt: skip
        # Landmarks 33 and 34 are auxiliary: the hip centre and the scale point, for the next region.
        return Landmarks(points[:33], sigmoid(raw[:33, 3]), presence, detection, (points[33], points[34]))


def to_openpose(landmarks, image_shape, threshold=VISIBILITY_THRESHOLD):
    """(18, 2) (y, x) pixel keypoints of the field's convention, -1 where not visible or outside the photo."""
    height, width = image_shape[:2]
    pixels = landmarks.points - 0.5  # continuous -> pixel index coordinates, as the field's files use
    keypoints = np.full((len(OPENPOSE_FROM_BLAZEPOSE), 2), -1.0, np.float32)
    for joint, index in enumerate(OPENPOSE_FROM_BLAZEPOSE):
        if index is None:
            visible = min(landmarks.visibility[list(SHOULDERS)]) >= threshold
            point = pixels[list(SHOULDERS)].mean(axis=0)
        else:
            visible, point = landmarks.visibility[index] >= threshold, pixels[index]
        if visible and 0 <= point[0] < width and 0 <= point[1] < height:
            keypoints[joint] = (point[1], point[0])
    return keypoints
