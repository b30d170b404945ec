"""tf.data pipelines on the real subset and synthetic data, and every bad-input case."""

import shutil

import cv2
import numpy as np
import pytest
import tensorflow as tf

from pnr_tf.data.annotations import DataFormatError
from pnr_tf.data.annotations import read_annotations
from pnr_tf.data.keypoints import keypoints_to_heatmaps
from pnr_tf.data.pipeline import BadSampleError
from pnr_tf.data.pipeline import InputOptions
from pnr_tf.data.pipeline import make_dataset
from pnr_tf.data.pipeline import pair_samples
from pnr_tf.data.pipeline import single_image_samples
from pnr_tf.data.pipeline import tuple_samples
from pnr_tf.data.synthetic import write_synthetic_dataset
from tests.helpers import png_declaring


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    directory = tmp_path_factory.mktemp("synthetic")
    write_synthetic_dataset(directory, num_identities=6, images_per_identity=7, seed=1, num_tuples=20)
    return directory


def check_batch(batch, batch_size, num_sources):
    assert batch["source_image"].shape == (batch_size, num_sources, 128, 64, 3)
    assert batch["source_pose"].shape == (batch_size, num_sources, 128, 64, 18)
    assert batch["target_image"].shape == (batch_size, 128, 64, 3)
    assert batch["target_pose"].shape == (batch_size, 128, 64, 18)
    for tensor in batch.values():
        assert tensor.dtype == tf.float32
    for name in ("source_image", "target_image"):
        assert -1.0 <= float(tf.reduce_min(batch[name])) and float(tf.reduce_max(batch[name])) <= 1.0
    for name in ("source_pose", "target_pose"):
        assert 0.0 <= float(tf.reduce_min(batch[name])) and float(tf.reduce_max(batch[name])) <= 1.0


def test_supervised_pairs_on_the_real_subset(shared_data):
    subset = shared_data / "market_subset"
    samples = pair_samples(subset / "pairs.csv", subset / "annotations.csv", subset / "images")
    assert len(samples) == 1014 and samples.num_skipped == 0
    batch = next(iter(make_dataset(samples, 4, options=InputOptions(shuffle=False))))
    check_batch(batch, 4, 1)
    # The first pair, decoded and rendered independently.
    first = cv2.imread(samples.source_paths[0][0])[..., ::-1].astype(np.float32) / 127.5 - 1
    np.testing.assert_allclose(batch["source_image"][0, 0].numpy(), first, atol=1e-6)
    np.testing.assert_allclose(
        batch["target_pose"][0].numpy(), keypoints_to_heatmaps(samples.target_keypoints[0], 128, 64).numpy(), atol=1e-6
    )


def test_pipelines_on_synthetic_data(synthetic):
    annotations = synthetic / "annotations.csv"
    images = synthetic / "images"
    check_batch(next(iter(make_dataset(pair_samples(synthetic / "pairs.csv", annotations, images), 3))), 3, 1)
    unsupervised = single_image_samples(annotations, images)
    batch = next(iter(make_dataset(unsupervised, 2)))
    check_batch(batch, 2, 1)
    np.testing.assert_array_equal(batch["source_image"][:, 0].numpy(), batch["target_image"].numpy())
    multi_shot = tuple_samples(synthetic / "tuples-test.csv", annotations, images)
    check_batch(next(iter(make_dataset(multi_shot, 2))), 2, 5)


def test_shuffle_is_seeded_and_repeat_is_endless(synthetic):
    samples = pair_samples(synthetic / "pairs.csv", synthetic / "annotations.csv", synthetic / "images")

    def first_targets(seed):
        dataset = make_dataset(samples, 2, options=InputOptions(seed=seed))
        return [batch["target_image"].numpy().sum() for batch in dataset.take(len(samples))]

    assert first_targets(3) == first_targets(3)
    assert first_targets(3) != first_targets(4)


def test_distributed_dataset_under_mirrored_strategy(synthetic):
    samples = pair_samples(synthetic / "pairs.csv", synthetic / "annotations.csv", synthetic / "images")
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    distributed = strategy.experimental_distribute_dataset(make_dataset(samples, 4))
    batch = next(iter(distributed))
    assert strategy.experimental_local_results(batch["target_image"])[0].shape == (4, 128, 64, 3)


@pytest.fixture
def broken(tmp_path, synthetic):
    """A copy of the synthetic set with one file missing, one undecodable, one of the wrong size."""
    shutil.copytree(synthetic, tmp_path / "data")
    data = tmp_path / "data"
    names = sorted(read_annotations(data / "annotations.csv"))
    (data / "images" / names[0]).unlink()
    (data / "images" / names[1]).write_bytes(b"not a jpeg")
    cv2.imwrite(str(data / "images" / names[2]), np.zeros((100, 64, 3), np.uint8))
    (data / "images" / names[5]).write_bytes(png_declaring(30000, 30000))  # decoded: 2.6 GB
    return data, names


@pytest.mark.parametrize(
    "index, message",
    [(0, "does not exist"), (1, "cannot be decoded"), (2, "is 100x64"), (5, "cannot be decoded: it is 30000 x 30000 pixels")],
)
def test_bad_images_stop_with_the_file_and_row(broken, index, message):
    data, names = broken
    (data / "pairs.csv").write_text(f"from,to\n{names[3]},{names[4]}\n{names[index]},{names[3]}\n")
    with pytest.raises(BadSampleError, match=rf"pairs\.csv:3: .*{names[index]}.*{message}"):
        pair_samples(data / "pairs.csv", data / "annotations.csv", data / "images")


def test_name_absent_from_annotations_stops_with_the_row(synthetic, tmp_path):
    (tmp_path / "pairs.csv").write_text("from,to\n0001_unknown.jpg,0001_c1s1_000000_00.jpg\n")
    with pytest.raises(BadSampleError, match=r"pairs\.csv:2: '0001_unknown\.jpg' is not in the annotation file"):
        pair_samples(tmp_path / "pairs.csv", synthetic / "annotations.csv", synthetic / "images")


def test_malformed_csv_row_stops_with_the_row(synthetic, tmp_path):
    (tmp_path / "pairs.csv").write_text("from,to\n0001_c1s1_000000_00.jpg,0001_c2s1_000001_00.jpg,extra\n")
    with pytest.raises(DataFormatError, match=r"pairs\.csv:2"):
        pair_samples(tmp_path / "pairs.csv", synthetic / "annotations.csv", synthetic / "images")


def test_skip_mode_skips_counts_and_reports_every_bad_row(broken):
    data, names = broken
    rows = [f"{names[i]},{names[3]}" for i in (0, 1, 2)] + [f"{names[3]},{names[4]}", f"ghost.jpg,{names[4]}"]
    (data / "pairs.csv").write_text("from,to\n" + "\n".join(rows) + "\n")
    samples = pair_samples(data / "pairs.csv", data / "annotations.csv", data / "images", on_bad_sample="skip")
    assert len(samples) == 1 and samples.num_skipped == 4
    assert [reason.split(":")[1] for reason in samples.skipped_reasons] == ["2", "3", "4", "6"]
    check_batch(next(iter(make_dataset(samples, 1))), 1, 1)
