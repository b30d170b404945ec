"""DeepFashion In-shop conventions: item identity, pair rules, PATN's crop, the synthetic people at 256 x 176."""

import numpy as np
import pytest

from pnr_tf.data.annotations import read_annotations
from pnr_tf.data.annotations import read_pairs
from pnr_tf.data.datasets import DEEPFASHION
from pnr_tf.data.datasets import MARKET
from pnr_tf.data.datasets import crop_deepfashion
from pnr_tf.data.datasets import guess_convention
from pnr_tf.data.pairs import make_pairs
from pnr_tf.data.pipeline import pair_samples
from pnr_tf.data.synthetic import write_synthetic_dataset


def test_the_item_is_the_name_up_to_its_last_underscore():
    assert DEEPFASHION.identity_of("fashionWOMENBlouses_Shirtsid0000107704_2side.jpg") == "fashionWOMENBlouses_Shirtsid0000107704"
    assert MARKET.identity_of("0002_c1s1_000451_03.jpg") == "0002"
    assert MARKET.is_distractor("-1_c1s1_000401_03.jpg") and not DEEPFASHION.is_distractor("-1_c1s1_000401_03.jpg")


def test_the_shared_sample_reads_and_its_pairs_follow_the_rules(shared_data):
    subset = shared_data / "deepfashion_subset"
    annotations = read_annotations(subset / "annotations.csv")
    assert len(annotations) == 248 and guess_convention(annotations) is DEEPFASHION
    expected = {tuple(pair) for pair in read_pairs(subset / "pairs.csv")}
    # Same item, distinct images, both with both shoulders and both hips: every sample image qualifies.
    assert set(make_pairs(annotations, dataset=DEEPFASHION)) == expected and len(expected) == 294
    assert all(DEEPFASHION.identity_of(source) == DEEPFASHION.identity_of(target) for source, target in expected)
    samples = pair_samples(subset / "pairs.csv", subset / "annotations.csv", subset / "images")
    assert samples.image_size == (256, 176) and len(samples) == 294
    # Market's identity rule would pair images of different items (the 4-character prefix 'fash').
    assert len(make_pairs(annotations, dataset=MARKET)) > 10 * len(expected)


def test_patn_crop_of_a_256_square_original():
    original = np.zeros((256, 256, 3), np.uint8)
    original[:, 40:216] = 200
    keypoints = np.full((18, 2), -1)
    keypoints[0] = [100, 40]  # the crop's first column
    keypoints[1] = [100, 215]  # its last
    keypoints[2] = [100, 30]  # left of the crop: missing afterwards
    cropped, moved = crop_deepfashion(original, keypoints)
    assert cropped.shape == (256, 176, 3) and (cropped == 200).all()
    assert moved[0].tolist() == [100, 0] and moved[1].tolist() == [100, 175] and moved[2].tolist() == [-1, -1]
    with pytest.raises(ValueError, match="256 x 256"):
        crop_deepfashion(np.zeros((256, 176, 3), np.uint8))


def test_synthetic_people_at_deepfashion_size_with_item_names(tmp_path):
    annotations = write_synthetic_dataset(tmp_path, num_identities=5, images_per_identity=4, seed=3, dataset="deepfashion")
    assert all(name.startswith("fashionWOMENSyntheticid") for name in annotations)
    samples = pair_samples(tmp_path / "pairs.csv", tmp_path / "annotations.csv", tmp_path / "images")
    assert samples.image_size == (256, 176)
    splits = [read_pairs(tmp_path / f"{name}.csv") for name in ("pairs", "pairs-validation", "pairs-test")]
    items = [{DEEPFASHION.identity_of(name) for pair in rows for name in pair} for rows in splits]
    assert [len(found) for found in items] == [3, 1, 1] and not (items[0] & items[2])
    visible = np.concatenate([points[(points >= 0).all(axis=1)] for points in annotations.values()])
    assert visible[:, 0].max() < 256 and visible[:, 1].max() < 176
    # Centred in the wider frame: the Market figure's neck (x = 32 +- 5.5 of 64) scaled by 2 and shifted by (176 - 128) / 2.
    necks = np.array([points[1] for points in annotations.values()])
    assert (necks[:, 1] >= 88 - 11).all() and (necks[:, 1] <= 88 + 11).all(), necks[:, 1]
    assert (necks[:, 0] > 2 * 18 * 0.85).all() and (necks[:, 0] < 2 * (10 + 18 * 1.08)).all()  # top 4-10, 18 x scale below
