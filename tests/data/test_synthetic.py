"""The built-in synthetic person dataset: formats, determinism, consistent looks and varied poses."""

import hashlib

import cv2
import numpy as np

from pnr_tf.data.annotations import read_annotations
from pnr_tf.data.annotations import read_pairs
from pnr_tf.data.annotations import read_tuples
from pnr_tf.data.pairs import has_torso
from pnr_tf.data.synthetic import main
from pnr_tf.data.synthetic import write_synthetic_dataset


def digest(directory):
    hasher = hashlib.sha256()
    for path in sorted(directory.rglob("*")):
        if path.is_file():
            hasher.update(path.name.encode() + path.read_bytes())
    return hasher.hexdigest()


def test_command_writes_market_formats_deterministically(tmp_path):
    for run in ("a", "b"):
        main(["--out", str(tmp_path / run), "--num-identities", "5", "--images-per-identity", "6", "--seed", "3"])
    assert digest(tmp_path / "a") == digest(tmp_path / "b")
    write_synthetic_dataset(tmp_path / "c", 5, 6, seed=4)
    assert digest(tmp_path / "a") != digest(tmp_path / "c")

    annotations = read_annotations(tmp_path / "a" / "annotations.csv")
    assert len(annotations) == 30
    for name, keypoints in annotations.items():
        image = cv2.imread(str(tmp_path / "a" / "images" / name))
        assert image.shape == (128, 64, 3)
        assert has_torso(keypoints)
        visible = keypoints[(keypoints >= 0).all(axis=1)]
        assert (visible[:, 0] < 128).all() and (visible[:, 1] < 64).all()
    splits = [read_pairs(tmp_path / "a" / f"{name}.csv") for name in ("pairs", "pairs-validation", "pairs-test")]
    # Five identities: three train, the fourth validation, the fifth test; 6 images give 6 * 5 ordered pairs each.
    assert [len(rows) for rows in splits] == [3 * 6 * 5, 1 * 6 * 5, 1 * 6 * 5]
    identities = [{name[:4] for pair in rows for name in pair} for rows in splits]
    assert identities == [{"0001", "0002", "0003"}, {"0004"}, {"0005"}]
    assert all(len(sources) == 5 for sources, _ in read_tuples(tmp_path / "a" / "tuples-test.csv"))


def torso_colour(image, keypoints):
    """Mean colour inside the shoulder-hip quadrilateral, shrunk towards its centre."""
    corners = keypoints[[2, 5, 11, 8]].astype(np.float64)
    centre = corners.mean(axis=0)
    corners = centre + 0.6 * (corners - centre)
    mask = np.zeros(image.shape[:2], np.uint8)
    cv2.fillConvexPoly(mask, np.round(corners[:, ::-1]).astype(np.int32), 1)
    return image[mask.astype(bool)].mean(axis=0)


def test_look_is_consistent_within_an_identity_and_pose_varies(tmp_path):
    write_synthetic_dataset(tmp_path, num_identities=8, images_per_identity=6, seed=0)
    annotations = read_annotations(tmp_path / "annotations.csv")
    colours, poses = {}, {}
    for name, keypoints in annotations.items():
        image = cv2.imread(str(tmp_path / "images" / name)).astype(np.float64)
        colours.setdefault(name[:4], []).append(torso_colour(image, keypoints))
        poses.setdefault(name[:4], []).append(keypoints.astype(np.float64))
    within = np.mean([np.linalg.norm(np.std(values, axis=0)) for values in colours.values()])
    between = np.linalg.norm(np.std([np.mean(values, axis=0) for values in colours.values()], axis=0))
    assert between > 3 * within, (between, within)
    # Wrists move by several pixels between images of one identity.
    wrist_spread = np.mean([np.std(np.stack(values)[:, [4, 7]], axis=0).mean() for values in poses.values()])
    assert wrist_spread > 3.0
