"""The pretrained real-people generator that ships in pnr_tf/pretrained/: it loads as its card says, draws people
it never saw better than copying the source photo, and every command finds it. Scored on the research samples
in ../shared/data (skipped without them)."""

import json

import numpy as np
import pytest

from pnr_tf import pretrained
from pnr_tf.data.annotations import read_annotations
from pnr_tf.data.annotations import read_pairs
from pnr_tf.data.keypoints import pose_mask
from pnr_tf.evaluate import main as evaluate_main
from pnr_tf.generate import main as generate_main
from pnr_tf.inference import PoseTransfer
from pnr_tf.visualize import read_rgb
from tests.helpers import patn_ssim


@pytest.fixture(scope="module")
def model():
    return PoseTransfer.load(pretrained.NAME)


def test_the_shipped_generator_is_what_its_card_says(model):
    assert pretrained.CARD.is_file() and "research use only" in pretrained.CARD.read_text().lower()
    assert model.image_size == (128, 64) and model.test_time_mirror is True
    assert model.generator.appearance_encoder.compute_dtype == "float32"  # runs anywhere, bfloat16 or not
    assert pretrained.GENERATOR.stat().st_size < 5e6
    held_out = read_pairs(pretrained.FOLDER / "split" / "pairs-test.csv")
    assert len(held_out) > 150  # Market's held-out people


def test_it_draws_people_it_never_saw_better_than_copying_the_photo(model, shared_data):
    """On 40 held-out Market pairs, scored with scikit-image's SSIM (PATN's arguments) on the original photos."""
    subset = shared_data / "market_subset"
    annotations = read_annotations(subset / "annotations.csv")
    pairs = read_pairs(pretrained.FOLDER / "split" / "pairs-test.csv")[::5][:40]
    sources = np.stack([read_rgb(subset / "images" / source) for source, _ in pairs])
    targets = np.stack([read_rgb(subset / "images" / target) for _, target in pairs])
    drawn = model.generate(sources, np.stack([annotations[source] for source, _ in pairs]), np.stack([annotations[target] for _, target in pairs]))
    masks = [pose_mask(annotations[target], 128, 64)[..., None].astype(np.uint8) for _, target in pairs]
    ours = np.mean([patn_ssim(target * mask, image * mask) for target, image, mask in zip(targets, drawn, masks)])
    copied = np.mean([patn_ssim(target * mask, source * mask) for target, source, mask in zip(targets, sources, masks)])
    whole, whole_copied = np.mean([patn_ssim(t, d) for t, d in zip(targets, drawn)]), np.mean([patn_ssim(t, s) for t, s in zip(targets, sources)])
    assert ours > copied + 0.03 and whole > whole_copied + 0.05, (ours, copied, whole, whole_copied)
    # The person's colours are kept: inside the target's body, our mean colour is nearer the real one than the
    # mean image's (the colour a generator that ignored the person would draw).
    mean_image = targets.mean(axis=0)
    distance = lambda image, target, mask: np.linalg.norm(image[mask[..., 0] > 0].mean(axis=0) - target[mask[..., 0] > 0].mean(axis=0))  # noqa: E731
    ours_colour = np.mean([distance(image, target, mask) for target, image, mask in zip(targets, drawn, masks)])
    mean_colour = np.mean([distance(mean_image, target, mask) for target, mask in zip(targets, masks)])
    assert ours_colour < 0.95 * mean_colour, (ours_colour, mean_colour)  # shipped model: 35.6 against 39.5 RGB levels


def test_every_command_finds_it_and_evaluate_writes_beside_you_not_into_the_package(shared_data, tmp_path, monkeypatch, capfd):
    monkeypatch.chdir(tmp_path)
    subset = shared_data / "market_subset"
    assert evaluate_main(["--model", "pretrained", "--data-root", str(subset), "--no-inception", "--limit", "6"]) == 0
    metrics = json.loads((tmp_path / "evaluation" / "metrics.json").read_text())
    assert metrics["num_pairs"] == 6 and metrics["test_time_mirror"] is True
    assert not (pretrained.FOLDER / "evaluation").exists()
    photo = shared_data / "deepfashion_subset" / "images" / sorted(path.name for path in (shared_data / "deepfashion_subset" / "images").iterdir())[0]
    assert generate_main(["--source", str(photo), "--target-pose-of", str(subset / "images" / "0002_c2s1_000351_01.jpg"), "--out", "out.png"]) == 0
    said = capfd.readouterr()
    assert "using the pretrained real-people generator" in said.err and "INFO" not in said.err + said.out
    assert read_rgb(tmp_path / "out.png").shape == (128, 64, 3)
