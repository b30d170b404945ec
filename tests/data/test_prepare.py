"""`python -m pnr_tf.prepare` on real photos: the DeepFashion subset regrouped as one folder per item.

Needs ../shared/data (research-only data; skipped without it) and the BlazePose models (python -m
pnr_tf.pose.fetch; skipped without them).
"""

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from pnr_tf.data.annotations import read_annotations
from pnr_tf.data.annotations import read_pairs
from pnr_tf.evaluate import main as evaluate_main
from pnr_tf.pose import models as pose_models
from pnr_tf.prepare import main as prepare_main
from pnr_tf.train import main as train_main
from pnr_tf.visualize import read_rgb
from pnr_tf.visualize import write_rgb
from tests.helpers import tiny_training_overrides

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def pck(predicted, reference, threshold=0.5):
    """Correct and counted joints of one image at PCK@threshold of the torso (neck to the hips' midpoint)."""
    present = (reference >= 0).all(axis=1)
    if not (present[1] and present[8] and present[11]):
        return 0, 0
    torso = np.linalg.norm(reference[1] - (reference[8] + reference[11]) / 2)
    found = (predicted >= 0).all(axis=1)
    correct = present & found & (np.linalg.norm(predicted - reference, axis=1) <= threshold * torso)
    return int(correct.sum()), int(present.sum())


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    shared = Path(__file__).resolve().parents[3] / "shared" / "data" / "deepfashion_subset"
    if not shared.is_dir():
        pytest.skip("../shared/data (DeepFashion samples) is not present in this checkout")
    if pose_models.cached_models() is None:
        pytest.skip("the BlazePose models are not in the cache: run python -m pnr_tf.pose.fetch")
    folder = tmp_path_factory.mktemp("photos")
    # The first 40 items (about a third of the subset) keep the test short; BENCHMARKS.md has the whole subset.
    items = sorted({path.stem.rsplit("_", 1)[0] for path in (shared / "images").iterdir()})[:40]
    for path in sorted((shared / "images").iterdir()):
        item = path.stem.rsplit("_", 1)[0]
        if item not in items:
            continue
        (folder / item).mkdir(exist_ok=True)
        shutil.copy(path, folder / item / path.name)
    first = sorted(folder.iterdir())[0]
    (first / "notes.txt").write_text("not a photo")
    (first / "empty.jpg").write_bytes(b"")
    write_rgb(first / "wall.png", np.full((256, 176, 3), 200, np.uint8))  # nobody in it
    return folder, shared


def test_prepare_keeps_the_people_with_good_keypoints_reports_the_rest_and_trains(photos, tmp_path, capsys):
    folder, shared = photos
    data = tmp_path / "data"
    assert prepare_main([str(folder), "--out", str(data), "--dataset", "deepfashion"]) == 0
    printed = capsys.readouterr().out
    annotations = read_annotations(data / "annotations.csv")
    photos_given = sum(1 for path in folder.rglob("*.jpg") if path.stat().st_size)
    assert len(annotations) >= 0.95 * photos_given, printed
    with open(data / "dropped.csv", newline="") as file:
        dropped = {row["source"].rsplit("/", 1)[-1]: row["reason"] for row in csv.DictReader(file)}
    assert {"notes.txt": "unreadable", "empty.jpg": "unreadable", "wall.png": "no person"}.items() <= dropped.items()
    # The keypoints against the published annotations of the same photos (PCK@0.5 goal: 0.94).
    reference = read_annotations(shared / "annotations.csv")
    correct = counted = 0
    for name, points in annotations.items():
        item, view = name.rsplit("_", 1)
        original = f"{item.replace('-', '_')}_{view}"
        assert read_rgb(data / "images" / name).shape == (256, 176, 3)
        hits, total = pck(points.astype(np.float64), reference[original].astype(np.float64))
        correct, counted = correct + hits, counted + total
    assert correct / counted >= 0.94, correct / counted
    # Pairs within a person, people split between training and held-out pairs.
    train, test = read_pairs(data / "pairs.csv"), read_pairs(data / "pairs-test.csv")
    identity = lambda name: name.rsplit("_", 1)[0]  # noqa: E731
    assert train and test and all(identity(a) == identity(b) and a != b for a, b in train + test)
    assert not {identity(b) for _, b in train} & {identity(b) for _, b in test}
    assert read_rgb(data / "contact_sheet.png").shape[1] > 16 * 176
    # Again, after one new photo: only it is read, and the earlier people stay where they were.
    newcomer = folder / "fashionWOMENextra0001"
    newcomer.mkdir()
    shutil.copy(next((folder / sorted(p.name for p in folder.iterdir())[5]).glob("*.jpg")), newcomer / "front.jpg")
    assert prepare_main([str(folder), "--out", str(data), "--dataset", "deepfashion"]) == 0
    assert "(1 added, 0 changed, 0 removed)" in capsys.readouterr().out
    assert set(read_pairs(data / "pairs-test.csv")) >= set(test)
    # The README's next two commands, with the tiny model: train on it, evaluate on its held-out people.
    run = tmp_path / "run"
    overrides = [f"data.root={data}", "data.dataset=deepfashion", "data.image_height=256", "data.image_width=176", "train.initial_weights=",
                 *tiny_training_overrides(train={"batch_size": 2, "sample_every": 100, "checkpoint_every": 100, "validate_every": 2})]  # fmt: skip
    assert train_main(["--config", str(CONFIGS / "custom_cpu.yaml"), "--output-dir", str(run), *[f"--set={item}" for item in overrides]]) == 0
    assert evaluate_main(["--model", str(run), "--no-inception", "--limit", "8"]) == 0
    metrics = json.loads((run / "evaluation" / "metrics.json").read_text())
    assert metrics["num_pairs"] == 8 and 0 < metrics["ssim"] < 1


def test_a_flat_folder_needs_names_that_carry_the_person(tmp_path, capsys):
    (tmp_path / "photos").mkdir()
    write_rgb(tmp_path / "photos" / "IMG_1234.png", np.zeros((64, 32, 3), np.uint8))
    with pytest.raises(SystemExit) as exit_info:
        prepare_main([str(tmp_path / "photos"), "--out", str(tmp_path / "data")])
    error = capsys.readouterr().err
    assert exit_info.value.code == 2 and "IMG_1234.png" in error and "a folder of their own" in error
