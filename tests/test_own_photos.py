"""Any photo a person would try, framed as the training crops were: a full-length portrait, a half-length shot, a
dataset crop, a 3000 x 4000 phone photo, a person in a street scene; and what happens when a photo cannot
show what the target pose needs. Real photos (../shared/data) and BlazePose; skipped without either."""

import json

import cv2
import numpy as np
import pytest

from pnr_tf.data.annotations import read_annotations
from pnr_tf.generate import main as generate_main
from pnr_tf.inference import frame_person
from pnr_tf.pose import PoseEstimator
from pnr_tf.pose import models as pose_models
from pnr_tf.visualize import read_rgb
from pnr_tf.visualize import write_rgb

SIZE = (128, 64)
LEGS = (9, 10, 12, 13)  # knees and ankles
PLACED = {"phone photo": (500, 600, 11.0), "street scene": (150, 700, 480 / 256)}  # the portrait's top, left and scale in them


@pytest.fixture(scope="module")
def estimator():
    if pose_models.cached_models() is None:
        pytest.skip("the BlazePose models are not in the cache: run python -m pnr_tf.pose.fetch")
    return PoseEstimator(quiet=True)


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """{kind: path}: real photos of the research samples, and two made from them (a phone photo, a street scene)."""
    from tests.conftest import SHARED_DATA

    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data (Market-1501 and DeepFashion samples) is not present in this checkout")
    folder = tmp_path_factory.mktemp("own_photos")
    fashion = SHARED_DATA / "deepfashion_subset"
    annotations = read_annotations(fashion / "annotations.csv")
    full = sorted(name for name, points in annotations.items() if (points[[10, 13]] >= 0).all() and name.endswith("front.jpg"))
    half = sorted(name for name, points in annotations.items() if (points[list(LEGS)] < 0).all() and name.endswith("front.jpg"))
    portrait = read_rgb(fashion / "images" / full[3])
    chosen = {"full-length portrait": fashion / "images" / full[3], "half-length shot": fashion / "images" / half[0],
              "dataset crop": SHARED_DATA / "market_subset" / "images" / "0002_c2s1_000351_01.jpg"}  # fmt: skip
    # A phone photo: the portrait 11 times its size in a 3000 x 4000 frame of a textured wall.
    rng = np.random.default_rng(0)
    wall = cv2.GaussianBlur(rng.integers(215, 256, (4000, 3000, 3), dtype=np.uint8), (0, 0), 9)  # a light, textured wall
    large = cv2.resize(portrait, (176 * 11, 256 * 11), interpolation=cv2.INTER_CUBIC)
    phone = wall.copy()
    phone[500 : 500 + large.shape[0], 600 : 600 + large.shape[1]] = large
    cv2.imwrite(str(folder / "phone.jpg"), cv2.cvtColor(phone, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])
    chosen["phone photo"] = folder / "phone.jpg"
    # A street scene: Market's streets stretched to 1280 x 720 and blurred (no face left to find), the portrait
    # two thirds of the height (the detector finds people by their face: one much smaller is missed).
    market = sorted((SHARED_DATA / "market_subset" / "images").iterdir())
    scene = np.concatenate([cv2.resize(read_rgb(path), (128, 720)) for path in market[20:30]], axis=1)
    scene = cv2.GaussianBlur(scene, (0, 0), 12)
    person = cv2.resize(portrait, (330, 480), interpolation=cv2.INTER_AREA)
    scene[150:630, 700:1030] = person
    write_rgb(folder / "street.png", scene)
    chosen["street scene"] = folder / "street.png"
    return chosen, portrait


@pytest.mark.parametrize("kind", ["full-length portrait", "half-length shot", "dataset crop", "phone photo", "street scene"])
def test_any_photo_is_framed_as_the_training_crops_are(estimator, photos, kind):
    paths, portrait = photos
    photo = read_rgb(paths[kind])
    crop = frame_person(photo, SIZE, estimator=estimator, name=kind)
    assert crop.image.shape == (*SIZE, 3)
    visible = (crop.keypoints >= 0).all(axis=1)
    assert visible[[1, 2, 5, 8, 11]].all(), crop.keypoints  # neck, shoulders, hips: the person is in the crop
    # Framed as Market's crops: the visible joints span most of the height, centred.
    rows = crop.keypoints[visible, 0]
    assert rows.min() < 0.25 * SIZE[0] and rows.max() > 0.6 * SIZE[0]
    assert abs(crop.keypoints[visible, 1].mean() - SIZE[1] / 2) < 0.2 * SIZE[1]
    if kind in ("phone photo", "street scene"):
        # The same person framed from the portrait alone: the same box, in the portrait's pixels, to the keypoints'
        # accuracy (BlazePose reads the two photos a little differently), and the torso at the same place in the crop.
        alone = frame_person(portrait, SIZE, estimator=estimator, name="portrait")
        top, left, scale = PLACED[kind]
        box = (np.array(crop.box) - [top, left, 0, 0]) / scale
        assert np.abs(box - np.array(alone.box)).max() < 0.1 * alone.box[2], (box, alone.box)
        assert np.abs(alone.keypoints[[1, 8, 11]] - crop.keypoints[[1, 8, 11]]).max() < 4
    if kind == "half-length shot":
        assert not visible[[10, 13]].any()  # no feet to show


def test_a_half_length_source_in_a_full_length_pose_draws_with_a_one_line_warning(estimator, photos, tiny_model_run, tmp_path, capfd):
    paths, _ = photos
    out = tmp_path / "out.png"
    common = ["--model", str(tiny_model_run[0]), "--out", str(out)]
    assert generate_main([*common, "--source", str(paths["half-length shot"]), "--target-pose-of", str(paths["full-length portrait"])]) == 0
    said = capfd.readouterr()
    warnings = [line for line in said.err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "ankles" in warnings[0], warnings
    assert "INFO" not in said.err + said.out  # TensorFlow Lite's start-up line is not for users
    assert read_rgb(out).shape == (*SIZE, 3)
    # A source that shows the legs: no warning.
    assert generate_main([*common, "--source", str(paths["full-length portrait"]), "--target-pose-of", str(paths["dataset crop"])]) == 0
    assert "warning:" not in capfd.readouterr().err


def test_a_phone_photo_is_drawn_and_pasted_back_into_its_own_frame(estimator, photos, tiny_model_run, tmp_path):
    paths, _ = photos
    pose = tmp_path / "pose.json"
    market = read_annotations(paths["dataset crop"].parents[1] / "annotations.csv")["0002_c2s1_000351_01.jpg"]
    pose.write_text(json.dumps(market.tolist()))
    framed = tmp_path / "framed.jpg"
    assert generate_main(["--model", str(tiny_model_run[0]), "--source", str(paths["phone photo"]), "--target-pose-of",
                          str(paths["dataset crop"]), "--out", str(tmp_path / "out.png"), "--framed", str(framed)]) == 0  # fmt: skip
    assert read_rgb(framed).shape == (4000, 3000, 3)
