"""Keypoints from a photo, offline: BlazePose's 33 landmarks as the field's 18 OpenPose-COCO joints.

    from pnr_tf.pose import PoseEstimator, crop_person
    estimator = PoseEstimator()                      # the models from ~/.cache/pnr_tf/pose (fetched once)
    pose = estimator.estimate(photo)                 # photo: RGB uint8, any size, one person (the largest is used)
    crop = crop_person(photo, pose.keypoints, (128, 64))   # framed like a Market crop, keypoints moved with it
    ...                                                    # generate from crop.image, crop.keypoints
    framed = paste_back(photo, crop, generated)      # the result in the original photo's frame

``python -m pnr_tf.pose.fetch`` fetches the models explicitly (pnr_tf.pose.models says how and why).
"""

import dataclasses
import sys

import cv2
import numpy as np

from pnr_tf.conventions import crop_keypoints
from pnr_tf.conventions import crop_matrix
from pnr_tf.conventions import resize_keypoints
from pnr_tf.conventions import visible_joints
from pnr_tf.pose.blazepose import PRESENCE_THRESHOLD
from pnr_tf.pose.blazepose import BlazePose
from pnr_tf.pose.blazepose import to_openpose
from pnr_tf.pose.models import PoseModelsUnavailableError  # noqa: F401  (part of this package's API)
from pnr_tf.pose.models import cached_models
from pnr_tf.pose.models import fetch_models

SMALLEST_SIDE = 48  # pixels; the detector cannot find a person in less
# The largest person's region (about 1.25 x the body's length) at least this fraction of the photo's
# longer side: the photo is framed around them and read whole (pnr_tf.pose.blazepose.FRAMED_SCALE).
FRAMED_FILL = 0.5
# Market-1501 crops leave about this much of the joints' vertical span above the highest joint and
# below the lowest (medians of the 367 annotated subset images with head and ankles visible).
TOP_MARGIN, BOTTOM_MARGIN = 0.095, 0.113
# A photo of the model's aspect ratio (within this much) whose visible joints span at least FILLS of its height
# is framed like a dataset crop already: it is only resized.
SAME_SHAPE, FILLS = 0.02, 0.6


class PoseEstimationError(ValueError):
    """No usable person in the photo; the message says why."""


@dataclasses.dataclass
class PersonPose:
    keypoints: np.ndarray  # (18, 2) (y, x) photo pixels, -1 where not visible
    score: float  # the detector's
    num_people: int  # persons found; the largest is the one described
    relative_sizes: tuple = (1.0,)  # each person's size over the largest's, largest first


@dataclasses.dataclass
class PersonCrop:
    image: np.ndarray  # (H, W, 3) uint8 of the model's size
    keypoints: np.ndarray  # (18, 2) in the crop's pixels, -1 where missing
    box: tuple  # (top, left, height, width) of the crop in the photo (may reach outside it)


class PoseEstimator:
    """BlazePose on photos. ``fetch=True`` fetches the models on first use (with a notice) when absent.

    Args:
        models_dir: where the two .tflite files are (default ~/.cache/pnr_tf/pose).
        fetch: allowed to fetch them from PyPI when absent.
        num_threads: TFLite threads (default: TFLite's).
        quiet: do not print a line when a photo shows several people (a batch job reports them itself).
    """

    def __init__(self, models_dir=None, fetch=True, num_threads=None, quiet=False):
        paths = cached_models(models_dir)
        if paths is None:
            if not fetch:
                raise PoseModelsUnavailableError("the pose models are not in the cache: run python -m pnr_tf.pose.fetch")
            paths = fetch_models(models_dir)
        self.model = BlazePose(paths["pose_detection.tflite"], paths["pose_landmark_full.tflite"], num_threads)
        self.quiet = quiet

    def estimate(self, photo, name="the photo"):
        """The 18 keypoints of the largest person in an RGB uint8 photo; PoseEstimationError when there is none.

        Only uint8 pixels are taken: a float image in [0, 1] or a 16-bit one cast to uint8 would be
        black or wrapped, and its keypoints silently wrong. Convert first (e.g. ``(image * 255).round().astype(np.uint8)``).
        """
        photo = np.asarray(photo)
        if photo.dtype != np.uint8:
            raise PoseEstimationError(f"{name}: expected uint8 RGB pixels (0-255), got {photo.dtype} values; convert them to uint8 first")
        photo = np.ascontiguousarray(photo)
        if photo.ndim != 3 or photo.shape[2] != 3:
            raise PoseEstimationError(f"{name}: expected an RGB image, got an array of shape {photo.shape}")
        if min(photo.shape[:2]) < SMALLEST_SIDE:
            raise PoseEstimationError(
                f"{name} is {photo.shape[0]} x {photo.shape[1]} pixels: too small to find a person in (at least "
                f"{SMALLEST_SIDE} pixels a side); give its keypoints instead"
            )
        detections = self.model.detect(photo)
        # People by size: the side of the region the landmark model would read (the detector's scale
        # point's distance from the hips, enlarged). The detector finds people by their face; in a small
        # crop around one person (Market's 128 x 64) it often finds none.
        sizes = sorted(((self.model.region(detection)[2], index) for index, detection in enumerate(detections)), reverse=True)
        largest = detections[sizes[0][1]] if sizes else None
        if len(detections) > 1 and not self.quiet:
            print(f"{name}: {len(detections)} people found; using the largest", file=sys.stderr)
        # A photo the person fills (a dataset crop, a full-length portrait) is read whole, without the
        # detector's region: more accurate on crops (BENCHMARKS.md); a person in a wider scene by the detector's.
        if largest is None or sizes[0][0] >= FRAMED_FILL * max(photo.shape[:2]):
            landmarks = self.model.framed_landmarks(photo)
        else:
            landmarks = self.model.landmarks(photo, largest)
        if landmarks.presence < PRESENCE_THRESHOLD:
            raise PoseEstimationError(f"no person found in {name} (the landmark model's presence score is {landmarks.presence:.2f})")
        keypoints = to_openpose(landmarks, photo.shape)
        if not visible_joints(keypoints, photo.shape[:2]).any():
            raise PoseEstimationError(f"no joint of the person in {name} is visible enough to use")
        relative_sizes = tuple(size / sizes[0][0] for size, _ in sizes)
        return PersonPose(keypoints, largest.score if largest else landmarks.presence, max(len(detections), 1), relative_sizes or (1.0,))


def crop_box(keypoints, image_size):
    """(top, left, height, width) framing the visible joints as a Market crop, with the model's aspect ratio."""
    with np.errstate(invalid="ignore"):
        visible = keypoints[visible_joints(keypoints)]
    if not len(visible):
        raise PoseEstimationError("no visible joint to frame the person by")
    top, bottom = visible[:, 0].min(), visible[:, 0].max()
    span = max(bottom - top, 1.0)
    height = span * (1 + TOP_MARGIN + BOTTOM_MARGIN)
    width = height * image_size[1] / image_size[0]
    centre_x = (visible[:, 1].min() + visible[:, 1].max()) / 2
    return top - TOP_MARGIN * span, centre_x - width / 2, height, width


def crop_person(photo, keypoints, image_size):
    """The person cut out and resized to image_size (the photo's border repeated where the box leaves it)."""
    box = crop_box(np.asarray(keypoints, np.float64), image_size)
    out_height, out_width = image_size
    interpolation = cv2.INTER_AREA if out_width < box[3] else cv2.INTER_LINEAR
    image = cv2.warpAffine(photo, crop_matrix(box, image_size), (out_width, out_height), flags=interpolation | cv2.WARP_INVERSE_MAP,
                           borderMode=cv2.BORDER_REPLICATE)  # fmt: skip
    return PersonCrop(image, crop_keypoints(keypoints, box, image_size), box)


def frame_photo(photo, keypoints, image_size, estimate=None):
    """The person of a photo framed as the datasets' crops and the model's inputs are: a PersonCrop of image_size.

    One rule for every path (prepare, the pretrained generator's data, generate, the page): a photo of
    the model's shape that the person fills is only resized; any other is cut around the person with
    Market's margins (``crop_person``). ``estimate(image)``, when given, reads the keypoints of a cut-out
    person again (BlazePose places joints best on a framed crop; where it finds none there, the moved
    keypoints stay); otherwise keypoints move with the pixels.
    """
    keypoints = np.asarray(keypoints, np.float64)
    height, width = photo.shape[:2]
    with np.errstate(invalid="ignore"):
        visible = keypoints[visible_joints(keypoints, (height, width))]
    same_shape = abs(height / width - image_size[0] / image_size[1]) < SAME_SHAPE
    # Without a visible joint there is no person to cut out: the photo is resized whole, and the model's keypoint rule speaks.
    if not len(visible) or (same_shape and np.ptp(visible[:, 0]) >= FILLS * height):
        interpolation = cv2.INTER_AREA if height > image_size[0] else cv2.INTER_LINEAR
        image = cv2.resize(photo, image_size[::-1], interpolation=interpolation) if (height, width) != tuple(image_size) else photo
        return PersonCrop(image, resize_keypoints(keypoints, (height, width), image_size), (0.0, 0.0, float(height), float(width)))
    crop = crop_person(photo, keypoints, image_size)
    if estimate is not None:
        try:
            crop = dataclasses.replace(crop, keypoints=np.asarray(estimate(crop.image), np.float32))
        except PoseEstimationError:
            pass
    return crop


def paste_back(photo, crop, generated):
    """The photo with ``generated`` (the crop's size) resized into the crop's box; the part of the box inside the photo."""
    out_height, out_width = generated.shape[:2]
    matrix = crop_matrix(crop.box, (out_height, out_width))  # generated pixel -> photo point; warped forward here
    size = (photo.shape[1], photo.shape[0])
    warped = cv2.warpAffine(np.asarray(generated, np.uint8), matrix, size, flags=cv2.INTER_LINEAR)
    covered = cv2.warpAffine(np.full((out_height, out_width), 255, np.uint8), matrix, size, flags=cv2.INTER_NEAREST) > 0
    result = photo.copy()
    result[covered] = warped[covered]
    return result
