"""pnr_tf.conventions: keypoints move with the pixels, one visibility rule, one pixel conversion; and every
path that frames a photo (the dataset pipeline, generate, the page, prepare) puts a joint at the same place."""

import base64

import cv2
import numpy as np
import pytest
import tensorflow as tf

from pnr_tf.conventions import MIRRORED_JOINTS
from pnr_tf.conventions import crop_keypoints
from pnr_tf.conventions import crop_matrix
from pnr_tf.conventions import from_pixels
from pnr_tf.conventions import has_visible_joint
from pnr_tf.conventions import mirror_keypoints
from pnr_tf.conventions import resize_keypoints
from pnr_tf.conventions import to_pixels
from pnr_tf.conventions import visible_joints
from pnr_tf.data.augment import mirror
from tests.helpers import LEFT_RIGHT_PAIRS


def weighted_centre(image):
    """(y, x) centre of mass of a non-negative float image."""
    rows, columns = np.mgrid[: image.shape[0], : image.shape[1]]
    return np.array([(rows * image).sum(), (columns * image).sum()]) / image.sum()


def one_hot(size, point):
    image = np.zeros(size, np.float32)
    image[point] = 1.0
    return image


@pytest.mark.parametrize("factor", [2, 3])
def test_resizing_moves_a_joint_where_cv2_resize_moves_its_pixel(factor):
    """Upscaled by an integer factor with linear interpolation, a one-hot pixel becomes a tent centred exactly on its new place."""
    size, point = (20, 12), (7, 4)
    resized = cv2.resize(one_hot(size, point), (size[1] * factor, size[0] * factor), interpolation=cv2.INTER_LINEAR)
    moved = resize_keypoints(np.array([point], np.float32), size, (size[0] * factor, size[1] * factor))[0]
    np.testing.assert_allclose(moved, weighted_centre(resized), atol=1e-4)
    np.testing.assert_allclose(moved, (np.array(point) + 0.5) * factor - 0.5)  # by hand
    # Not k * s: that convention is half a pixel off (0.5 px at 2x, 1 px at 3x).
    assert np.abs(np.array(point) * factor - weighted_centre(resized)).max() >= 0.5 * (factor - 1) - 1e-4


def test_downscaling_by_area_moves_a_blob_where_the_keypoint_goes():
    size, point = (96, 60), np.array([41.0, 23.0])
    rows, columns = np.mgrid[: size[0], : size[1]]
    blob = np.exp(-((rows - point[0]) ** 2 + (columns - point[1]) ** 2) / (2 * 4.0**2)).astype(np.float32)
    resized = cv2.resize(blob, (20, 32), interpolation=cv2.INTER_AREA)  # 3x rows, 3x columns
    moved = resize_keypoints(point[None], size, (32, 20))[0]
    np.testing.assert_allclose(moved, weighted_centre(resized), atol=0.02)


def test_a_crop_moves_a_joint_where_warp_affine_moves_its_pixels():
    photo_size, point = (200, 150), np.array([97.0, 53.0])  # well inside the box below
    rows, columns = np.mgrid[: photo_size[0], : photo_size[1]]
    blob = np.exp(-((rows - point[0]) ** 2 + (columns - point[1]) ** 2) / (2 * 6.0**2)).astype(np.float32)
    box, output = (40.5, 22.0, 120.0, 60.0), (64, 32)  # 1.875 x smaller: linear sampling moves the centre of mass a little
    crop = cv2.warpAffine(blob, crop_matrix(box, output), output[::-1], flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)
    moved = crop_keypoints(point[None], box, output)[0]
    np.testing.assert_allclose(moved, weighted_centre(crop), atol=0.03)


def test_joints_that_leave_the_crop_are_missing_and_the_outer_half_pixel_is_the_border():
    keypoints = np.array([[0.0, 0.0], [-1.0, -1.0], [np.nan, 3.0], [10.0, 200.0], [255.0, 127.0]], np.float32)
    moved = resize_keypoints(keypoints, (256, 128), (128, 64))
    np.testing.assert_allclose(moved, [[0.0, 0.0], [-1, -1], [-1, -1], [-1, -1], [127.0, 63.0]])


def test_one_visibility_rule_for_arrays_and_tensors():
    keypoints = np.array([[0, 0], [127, 63], [128, 10], [10, 64], [-1, -1], [-0.5, 3], [np.nan, 3], [np.inf, 3], [3, -np.inf]], np.float32)
    expected = [True, True, False, False, False, False, False, False, False]
    with np.errstate(invalid="ignore"):
        assert visible_joints(keypoints, (128, 64)).tolist() == expected
    assert visible_joints(tf.constant(keypoints), (128, 64)).numpy().tolist() == expected
    # Without an image size: finite and not negative.
    assert visible_joints(keypoints).tolist() == [True, True, True, True, False, False, False, False, False]
    assert has_visible_joint(keypoints[None, 4:], (128, 64)).tolist() == [False]


def test_pixels_to_the_models_range_and_back_alike_for_arrays_and_tensors():
    pixels = np.arange(256, dtype=np.uint8).reshape(16, 16)
    images = from_pixels(pixels)
    np.testing.assert_allclose(images, pixels.astype(np.float64) / 127.5 - 1.0, atol=1e-7)
    np.testing.assert_array_equal(from_pixels(tf.constant(pixels)).numpy(), images)
    np.testing.assert_array_equal(to_pixels(images), pixels)
    np.testing.assert_array_equal(to_pixels(tf.constant(images)).numpy(), pixels)
    np.testing.assert_array_equal(to_pixels(np.array([-2.0, 2.0, 0.002])), [0, 255, 128])  # clipped, rounded


def test_mirrored_keypoints_swap_left_and_right_as_the_pipeline_mirror_does():
    order = list(range(18))
    for left, right in LEFT_RIGHT_PAIRS:
        order[left], order[right] = right, left
    assert tuple(order) == MIRRORED_JOINTS
    keypoints = np.random.default_rng(0).uniform(0, 60, (2, 18, 2)).astype(np.float32)
    keypoints[0, 3] = -1
    _, expected = mirror(tf.zeros((2, 64, 32, 3)), tf.constant(keypoints))
    np.testing.assert_allclose(mirror_keypoints(keypoints, 32), expected.numpy())


# Every path, one photo ---------------------------------------------------------------------------------

GREY = np.array([128.0, 128.0, 128.0])
# Seven joints of a standing person at 128 x 64 (y, x), each marked by a 3 x 3 square of its own colour.
MARKERS = {
    0: ((15, 32), (255, 0, 0)), 2: ((30, 24), (0, 255, 0)), 5: ((30, 40), (0, 0, 255)), 8: ((64, 27), (255, 255, 0)),
    11: ((64, 37), (255, 0, 255)), 10: ((112, 26), (0, 255, 255)), 13: ((112, 38), (0, 0, 0)),
}  # fmt: skip


def marked_photo(factor=1):
    """A grey 128 x 64 photo with the markers, every pixel repeated factor x factor times (the block of pixel
    (r, c) is centred on (factor r + (factor - 1) / 2, ...), by hand)."""
    photo = np.full((128, 64, 3), 128, np.uint8)
    for (y, x), colour in MARKERS.values():
        photo[y - 1 : y + 2, x - 1 : x + 2] = colour
    return np.repeat(np.repeat(photo, factor, axis=0), factor, axis=1)


def marker_weights(image, colour):
    """Per pixel, how much of the marker's colour it holds (blends of the marker and the grey count in part)."""
    direction = np.asarray(colour, np.float64) - GREY
    offset = image.astype(np.float64) - GREY
    share = offset @ direction / (direction @ direction)
    residual = np.linalg.norm(offset - share[..., None] * direction, axis=-1)
    return np.where((share > 0.02) & (residual < 12), np.clip(share, 0, 1), 0.0)


def found_keypoints(image):
    """The markers' centres in an image (the other joints missing): a pose estimator that is never wrong."""
    keypoints = np.full((18, 2), -1.0, np.float32)
    for joint, (_, colour) in MARKERS.items():
        weights = marker_weights(image, colour)
        if weights.sum() > 0:
            keypoints[joint] = weighted_centre(weights)
    return keypoints


class MarkerEstimator:
    def estimate(self, photo, name="the photo"):
        from pnr_tf.pose import PersonPose

        return PersonPose(found_keypoints(photo), 1.0, 1)


def marked_joints(keypoints):
    return np.array([keypoints[joint] for joint in MARKERS])


def test_every_path_puts_a_joint_of_a_photo_at_the_same_place(tmp_path, tiny_model_run):
    from pnr_tf.app.service import PageService
    from pnr_tf.data.annotations import read_annotations
    from pnr_tf.data.annotations import write_annotations
    from pnr_tf.data.annotations import write_pairs
    from pnr_tf.data.pipeline import InputOptions
    from pnr_tf.data.pipeline import make_dataset
    from pnr_tf.data.pipeline import pair_samples
    from pnr_tf.data.preparation import PreparationJob
    from pnr_tf.data.preparation import run_preparation
    from pnr_tf.inference import PoseTransfer
    from pnr_tf.inference import frame_person
    from pnr_tf.visualize import read_rgb
    from pnr_tf.visualize import write_rgb

    size = (128, 64)
    annotated = np.full((18, 2), -1, np.int32)
    for joint, (point, _) in MARKERS.items():
        annotated[joint] = point
    expected = marked_joints(annotated).astype(np.float64)
    photo, large = marked_photo(), marked_photo(3)  # the same photo at 128 x 64 and at 384 x 192
    np.testing.assert_allclose(marked_joints(found_keypoints(photo)), expected, atol=1e-6)

    # 1. The dataset pipeline: the annotated joint is the peak of its heatmap.
    data = tmp_path / "data"
    (data / "images").mkdir(parents=True)
    write_rgb(data / "images" / "0001_c1_a.png", photo)
    write_rgb(data / "images" / "0001_c1_b.png", photo)
    write_annotations(data / "annotations.csv", {"0001_c1_a.png": annotated, "0001_c1_b.png": annotated})
    write_pairs(data / "pairs.csv", [("0001_c1_a.png", "0001_c1_b.png")])
    samples = pair_samples(data / "pairs.csv", data / "annotations.csv", data / "images", size)
    batch = next(iter(make_dataset(samples, 1, size, InputOptions(shuffle=False, repeat=False))))
    heatmaps = batch["target_pose"].numpy()[0]
    peaks = np.array([np.unravel_index(np.argmax(heatmaps[..., joint]), size) for joint in MARKERS], np.float64)
    np.testing.assert_array_equal(peaks, expected)

    # 2. generate with the photo's keypoints (in its own pixels, here the markers' block centres): resized alike.
    given = frame_person(large, size, keypoints=found_keypoints(large))
    np.testing.assert_allclose(marked_joints(found_keypoints(large)), expected * 3 + 1, atol=1e-6)
    np.testing.assert_allclose(marked_joints(given.keypoints), expected, atol=1e-4)
    np.testing.assert_allclose(marked_joints(found_keypoints(given.image)), expected, atol=1e-4)

    # 3. generate with keypoints estimated: the person cut out; the joint is where its marker went.
    estimated = frame_person(large, size, estimator=MarkerEstimator())
    np.testing.assert_allclose(marked_joints(estimated.keypoints), marked_joints(found_keypoints(estimated.image)), atol=0.25)

    # 4. The page: the same photo uploaded gives the same keypoints.
    service = PageService(PoseTransfer.load(tiny_model_run[0]), MarkerEstimator())
    upload = "data:image/png;base64," + base64.b64encode(cv2.imencode(".png", large[..., ::-1])[1].tobytes()).decode()
    answer = service.generate({"sources": [upload], "target_keypoints": annotated.tolist()})
    page_keypoints = np.array([point if point is not None else [-1.0, -1.0] for point in answer["sources"][0]["keypoints"]])
    np.testing.assert_allclose(marked_joints(page_keypoints), marked_joints(estimated.keypoints), atol=1e-5)

    # 5. prepare: the photo fills its frame, so it is resized, keypoints alike, and rounded to the file's integers.
    photos = tmp_path / "photos" / "person"
    photos.mkdir(parents=True)
    write_rgb(photos / "large.png", large)
    run_preparation(PreparationJob(str(tmp_path / "photos"), str(tmp_path / "prepared")), estimator=MarkerEstimator())
    (name, prepared), = read_annotations(tmp_path / "prepared" / "annotations.csv").items()
    np.testing.assert_array_equal(marked_joints(prepared), expected)
    # Its crop is the 128 x 64 photo pixel for pixel (as the same JPEG encoder leaves it), so the markers are where the keypoints are.
    written = read_rgb(tmp_path / "prepared" / "images" / name)
    np.testing.assert_array_equal(written, cv2.imdecode(cv2.imencode(".jpg", photo[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])[1], cv2.IMREAD_COLOR)[..., ::-1])
