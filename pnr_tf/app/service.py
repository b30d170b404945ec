"""What the page does, without the web: validate a request, frame the photos, generate, answer in JSON-ready dicts."""

import base64
import binascii
import threading

import cv2
import numpy as np

from pnr_tf.conventions import NUM_JOINTS
from pnr_tf.conventions import resize_keypoints
from pnr_tf.conventions import visible_joints
from pnr_tf.data.annotations import LARGEST_COORDINATE
from pnr_tf.data.annotations import read_annotations
from pnr_tf.data.pairs import has_torso
from pnr_tf.data.synthetic import HEIGHT
from pnr_tf.data.synthetic import WIDTH
from pnr_tf.data.synthetic import random_look
from pnr_tf.data.synthetic import random_pose
from pnr_tf.data.synthetic import to_annotation
from pnr_tf.images import ImageFileError
from pnr_tf.images import ImageTooLargeError
from pnr_tf.images import decode_rgb
from pnr_tf.inference import InvalidPoseError
from pnr_tf.inference import frame_person
from pnr_tf.inference import unseen_body_parts
from pnr_tf.inference import unseen_parts_warning
from pnr_tf.pose import PoseEstimationError
from pnr_tf.visualize import SKELETON
from pnr_tf.visualize import draw_pose

MAX_SOURCES = 5
MAX_IMAGE_BYTES = 8 * 1024 * 1024
MAX_IMAGE_SIDE = 4096
# The formats a browser uploads and OpenCV decodes, by their first bytes.
IMAGE_SIGNATURES = {b"\xff\xd8\xff": "JPEG", b"\x89PNG\r\n\x1a\n": "PNG", b"RIFF": "WebP"}
GALLERY_SIZE = 12


class RequestError(ValueError):
    """A request the page cannot serve: HTTP status and a message for the page to show."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status


def encode_png(image):
    """uint8 RGB -> 'data:image/png;base64,...'."""
    ok, data = cv2.imencode(".png", cv2.cvtColor(np.asarray(image, np.uint8), cv2.COLOR_RGB2BGR))
    return "data:image/png;base64," + base64.b64encode(data.tobytes()).decode()


def decode_upload(text, name):
    """A data URL or base64 string from the page -> uint8 RGB, or RequestError saying what is wrong with it."""
    if not isinstance(text, str) or not text:
        raise RequestError(422, f"{name}: expected an image")
    payload = text.split(",", 1)[1] if text.startswith("data:") else text
    if len(payload) * 3 // 4 > MAX_IMAGE_BYTES:
        raise RequestError(413, f"{name} is larger than {MAX_IMAGE_BYTES // (1024 * 1024)} MB")
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise RequestError(422, f"{name} is not base64-encoded image data") from None
    if not any(data.startswith(signature) for signature in IMAGE_SIGNATURES) or (data.startswith(b"RIFF") and data[8:12] != b"WEBP"):
        raise RequestError(415, f"{name} is not a JPEG, PNG or WebP image")
    try:  # sized from its header before anything is decoded: a small file can hold a huge image
        return decode_rgb(data, name, MAX_IMAGE_SIDE * MAX_IMAGE_SIDE, MAX_IMAGE_SIDE)
    except ImageTooLargeError as error:
        raise RequestError(413, str(error)) from None
    except ImageFileError as error:
        raise RequestError(422, str(error)) from None


def parse_keypoints(values, image_size):
    """18 [y, x] pairs in the model's frame (null for a missing joint) -> (18, 2) float32, -1 = missing."""
    if not isinstance(values, list) or len(values) != NUM_JOINTS:
        raise RequestError(422, f"target_keypoints: expected {NUM_JOINTS} [y, x] pairs")
    keypoints = np.full((NUM_JOINTS, 2), -1.0, np.float32)
    for index, point in enumerate(values):
        if point is None:
            continue
        # JSON true is a Python int, and a 400-digit integer overflows float32: both refused, like NaN.
        if not (isinstance(point, list) and len(point) == 2 and all(_is_coordinate(value) for value in point)):
            raise RequestError(422, f"target_keypoints[{index}]: expected [y, x] pixel numbers (at most {LARGEST_COORDINATE:,} in size) or null")
        keypoints[index] = point
    return keypoints


def _is_coordinate(value):
    # abs(NaN) <= x and abs(inf) <= x are false; a huge int compares without becoming a float.
    return isinstance(value, (int, float)) and not isinstance(value, bool) and abs(value) <= LARGEST_COORDINATE


def built_in_poses(image_size, count=GALLERY_SIZE):
    """Poses of the built-in synthetic people (seeded), scaled to the model's frame."""
    poses = {}
    for index in range(count):
        rng = np.random.default_rng([7, index])
        points, _ = random_pose(rng, random_look(rng))
        poses[f"pose {index + 1}"] = resize_keypoints(to_annotation(points), (HEIGHT, WIDTH), image_size)
    return poses


def annotated_poses(path, image_size, count=GALLERY_SIZE):
    """The first annotated poses with a torso from an annotation file of images of the model's size."""
    poses = {}
    for name, keypoints in read_annotations(path).items():
        if has_torso(keypoints) and (visible_joints(keypoints, image_size) | (keypoints == -1).all(axis=-1)).all():
            poses[name] = keypoints.astype(np.float32)
        if len(poses) == count:
            break
    return poses


def as_list(keypoints):
    return [None if (point < 0).any() else [float(point[0]), float(point[1])] for point in keypoints]


class PageService:
    """The page's two requests: the pose gallery, and a generation from uploaded photos and a target pose.

    Args:
        model: a ``pnr_tf.inference.PoseTransfer``.
        estimator: a ``pnr_tf.pose.PoseEstimator`` (keypoints of uploaded photos).
        poses: {name: (18, 2) keypoints in the model's frame} for the gallery (default: built-in ones).
    """

    def __init__(self, model, estimator, poses=None):
        self.model = model
        self.estimator = estimator
        self.poses = poses or built_in_poses(model.image_size)
        self._estimating = threading.Lock()  # one TFLite interpreter: one photo at a time

    def gallery(self):
        height, width = self.model.image_size
        return {
            "image_size": [height, width],
            "bones": [list(bone) for bone in SKELETON],
            "poses": [{"name": name, "keypoints": as_list(points)} for name, points in self.poses.items()],
        }

    def generate(self, request):
        if not isinstance(request, dict):
            raise RequestError(422, "expected a JSON object with sources and target_keypoints")
        sources = request.get("sources")
        if not isinstance(sources, list) or not sources:
            raise RequestError(422, "add at least one photo of the person")
        if len(sources) > MAX_SOURCES:
            raise RequestError(413, f"at most {MAX_SOURCES} photos at once, got {len(sources)}")
        target = parse_keypoints(request.get("target_keypoints"), self.model.image_size)
        framed = []
        for index, source in enumerate(sources):
            name = f"photo {index + 1}"
            photo = decode_upload(source, name)
            try:
                with self._estimating:
                    framed.append(frame_person(photo, self.model.image_size, estimator=self.estimator, name=name))
            except PoseEstimationError as error:
                raise RequestError(422, str(error)) from None
        try:
            image = self.model.generate(
                np.stack([crop.image for crop in framed])[np.newaxis], np.stack([crop.keypoints for crop in framed])[np.newaxis], target[np.newaxis]
            )[0]
        except InvalidPoseError as error:
            raise RequestError(422, str(error).split(": ", 1)[-1]) from None
        warning = unseen_parts_warning(unseen_body_parts(np.stack([crop.keypoints for crop in framed]), target, self.model.image_size))
        return {
            "image": encode_png(image),
            "warnings": [warning] if warning else [],
            "sources": [{"image": encode_png(draw_pose(crop.image, crop.keypoints)), "keypoints": as_list(crop.keypoints)} for crop in framed],
            "target_keypoints": as_list(target),
        }
