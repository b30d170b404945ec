"""pnr_tf.pose: BlazePose's decoding pieces by hand, the person crop's geometry, accuracy on real Market photos."""

import subprocess
import zipfile

import numpy as np
import pytest

from pnr_tf.data.annotations import read_annotations
from pnr_tf.data.annotations import read_pairs
from pnr_tf.pose import PoseEstimationError
from pnr_tf.pose import PoseEstimator
from pnr_tf.pose import blazepose
from pnr_tf.pose import crop_person
from pnr_tf.pose import models as pose_models
from pnr_tf.pose import paste_back
from pnr_tf.visualize import read_rgb


@pytest.fixture(scope="module")
def estimator():
    """BlazePose from the cache. CI fetches it first (.ci/run: python -m pnr_tf.pose.fetch); elsewhere the test skips."""
    if pose_models.cached_models() is None:
        pytest.skip("the BlazePose models are not in the cache: run python -m pnr_tf.pose.fetch")
    return PoseEstimator(fetch=False)


def test_ssd_anchors_by_hand():
    anchors = blazepose.ssd_anchors()
    assert anchors.shape == (28 * 28 * 2 + 14 * 14 * 2 + 7 * 7 * 2 * 3, 2) == (2254, 2)
    np.testing.assert_allclose(anchors[0], [0.5 / 28, 0.5 / 28])
    np.testing.assert_allclose(anchors[2], [1.5 / 28, 0.5 / 28])  # two anchors per cell, then the next column
    np.testing.assert_allclose(anchors[28 * 28 * 2], [0.5 / 14, 0.5 / 14])
    np.testing.assert_allclose(anchors[-1], [6.5 / 7, 6.5 / 7])


def test_weighted_suppression_by_hand():
    scores = np.array([0.9, 0.6, 0.8])
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [50, 50, 60, 60]], float)
    keypoints = np.zeros((3, 4, 2))
    keypoints[1] += 5.0
    kept = blazepose.weighted_suppression(scores, boxes, keypoints)
    assert [round(score, 6) for score, _, _ in kept] == [0.9, 0.8]
    np.testing.assert_allclose(kept[0][1], [0.4, 0, 10.4, 10])  # (0.9 * 0 + 0.6 * 1) / 1.5
    np.testing.assert_allclose(kept[0][2], np.full((4, 2), 2.0))
    np.testing.assert_allclose(kept[1][1], boxes[2])


def test_the_region_points_up_from_the_hips():
    detection = blazepose.Detection(1.0, np.zeros(4), np.array([[50.0, 100.0], [50.0, 60.0], [0, 0], [0, 0]]))
    centre_x, centre_y, side, rotation = blazepose.BlazePose.region(detection)
    assert (centre_x, centre_y) == (50.0, 100.0) and side == pytest.approx(2 * 40 * 1.25) and rotation == pytest.approx(0.0)
    tilted = blazepose.Detection(1.0, np.zeros(4), np.array([[50.0, 100.0], [90.0, 100.0], [0, 0], [0, 0]]))
    assert blazepose.BlazePose.region(tilted)[3] == pytest.approx(np.pi / 2)  # lying to the right: turned a quarter


def test_the_crop_frames_the_person_and_moves_the_keypoints_with_the_image():
    photo = np.full((300, 200, 3), 90, np.uint8)
    keypoints = np.full((18, 2), -1.0)
    keypoints[[0, 1, 10, 13]] = [[40, 100], [60, 100], [240, 80], [240, 120]]
    for row, column in keypoints[keypoints[:, 0] >= 0]:
        photo[int(row) - 2 : int(row) + 3, int(column) - 2 : int(column) + 3] = 255  # a white square on each joint
    crop = crop_person(photo, keypoints, (128, 64))
    top, left, height, width = crop.box
    assert height == pytest.approx(200 * (1 + 0.095 + 0.113)) and width == pytest.approx(height / 2)
    assert top == pytest.approx(40 - 0.095 * 200) and left + width / 2 == pytest.approx(100)
    for row, column in crop.keypoints[crop.keypoints[:, 0] >= 0]:
        assert crop.image[int(round(row)), int(round(column))].min() > 200, (row, column)  # the square is where the joint is
    assert (crop.keypoints[[2, 3]] == -1).all()
    back = paste_back(np.zeros_like(photo), crop, crop.image)
    inside = (slice(45, 230), slice(75, 125))
    assert np.abs(back[inside].astype(int) - photo[inside].astype(int)).mean() < 12  # resampled twice, same picture


def test_keypoints_of_real_market_photos(estimator, shared_data):
    subset = shared_data / "market_subset"
    annotations = read_annotations(subset / "annotations.csv")
    names = sorted(name for name, points in annotations.items() if (points[[1, 8, 11]] >= 0).all())[::40][:10]
    correct = counted = 0
    for name in names:
        reference = annotations[name].astype(np.float64)
        predicted = estimator.estimate(read_rgb(subset / "images" / name), name).keypoints
        torso = np.linalg.norm(reference[1] - (reference[8] + reference[11]) / 2)
        present = (reference >= 0).all(axis=1)
        found = (predicted >= 0).all(axis=1)
        correct += int((present & found & (np.linalg.norm(predicted - reference, axis=1) <= 0.5 * torso)).sum())
        counted += int(present.sum())
    # 0.84 over all 443 photos (BENCHMARKS.md); a floor with room for a few hard ones among ten.
    assert correct / counted >= 0.7, correct / counted


def test_no_person_too_small_and_several_people_are_told(estimator, shared_data, monkeypatch, capsys):
    with pytest.raises(PoseEstimationError, match="no person found in blank.png"):
        estimator.estimate(np.full((128, 64, 3), 128, np.uint8), "blank.png")
    with pytest.raises(PoseEstimationError, match="tiny.png is 30 x 20 pixels: too small"):
        estimator.estimate(np.full((30, 20, 3), 128, np.uint8), "tiny.png")
    # Floats in [0, 1] or 16-bit pixels are not cast silently (they would be black or wrapped).
    for dtype in (np.float32, np.float64, np.uint16, np.int64):
        with pytest.raises(PoseEstimationError, match=f"photo.png: expected uint8 RGB pixels \\(0-255\\), got {np.dtype(dtype).name}"):
            estimator.estimate(np.full((128, 64, 3), 0.5, dtype), "photo.png")
    crop = read_rgb(next((shared_data / "market_subset" / "images").iterdir()))
    photo = np.zeros((512, 512, 3), np.uint8)  # a wider scene: the person a quarter of its height
    photo[100:228, 200:264] = crop
    # Two detections, the second larger: the one used is the larger, and the user is told.
    small = blazepose.Detection(0.9, np.zeros(4), np.array([[232.0, 170.0], [232.0, 158.0], [0, 0], [0, 0]]))
    large = blazepose.Detection(0.8, np.zeros(4), np.array([[232.0, 170.0], [232.0, 110.0], [0, 0], [0, 0]]))
    monkeypatch.setattr(estimator.model, "detect", lambda photo: [small, large])
    chosen = []
    original = estimator.model.landmarks
    monkeypatch.setattr(estimator.model, "landmarks", lambda photo, detection: chosen.append(detection) or original(photo, detection))
    pose = estimator.estimate(photo, "group.png")
    assert chosen == [large] and "group.png: 2 people found; using the largest" in capsys.readouterr().err
    assert pose.num_people == 2 and pose.relative_sizes == pytest.approx((1.0, 0.2))
    # A photo the person fills is read whole, without the detector's region.
    monkeypatch.setattr(estimator.model, "detect", lambda photo: [large])
    estimator.estimate(crop, "crop.png")
    assert chosen == [large]


def test_fetch_checks_the_hash_of_what_it_extracts(tmp_path, monkeypatch):
    def fake_pip(command, **kwargs):
        destination = command[command.index("--dest") + 1]
        with zipfile.ZipFile(f"{destination}/mediapipe-0.10.21-cp311-cp311-manylinux_2_28_x86_64.whl", "w") as wheel:
            for member, _ in pose_models.MODELS.values():
                wheel.writestr(member, b"not the model")
        return subprocess.CompletedProcess(command, 0, "", "")

    monkeypatch.setattr(pose_models.subprocess, "run", fake_pip)
    with pytest.raises(pose_models.PoseModelsUnavailableError, match="does not have the expected SHA-256"):
        pose_models.fetch_models(tmp_path)
    assert pose_models.cached_models(tmp_path) is None
    (tmp_path / "pose_detection.tflite").write_bytes(b"damaged")
    assert pose_models.cached_models(tmp_path) is None


def test_generate_on_a_market_photo_without_its_keypoints(estimator, tiny_model_run, shared_data, tmp_path):
    from pnr_tf.generate import main as generate_main

    run_dir, _ = tiny_model_run
    subset = shared_data / "market_subset"
    source, target = read_pairs(subset / "pairs.csv")[3]
    arguments = ["--model", str(run_dir), "--source", str(subset / "images" / source), "--target-pose-of",
                 str(subset / "images" / target), "--out", str(tmp_path / "out.png"), "--framed", str(tmp_path / "framed.png")]  # fmt: skip
    assert generate_main(arguments) == 0
    output, framed = read_rgb(tmp_path / "out.png"), read_rgb(tmp_path / "framed.png")
    assert output.shape == (128, 64, 3) and output.std() > 10 and framed.shape == read_rgb(subset / "images" / source).shape
