"""The field's formats on the real files, pair/tuple rules, and malformed input."""

import numpy as np
import pytest

from pnr_tf.data.annotations import DataFormatError
from pnr_tf.data.annotations import read_annotations
from pnr_tf.data.annotations import read_pairs
from pnr_tf.data.annotations import read_tuples
from pnr_tf.data.annotations import write_annotations
from pnr_tf.data.annotations import write_tuples
from pnr_tf.data.make_pairs import main as make_pairs_main
from pnr_tf.data.pairs import make_pairs
from pnr_tf.data.pairs import make_tuples


def test_full_market_annotation_files_parse_with_known_rows(shared_data):
    test = read_annotations(shared_data / "market_annotations" / "market-annotation-test.csv")
    train = read_annotations(shared_data / "market_annotations" / "market-annotation-train.csv")
    assert (len(test), len(train)) == (19732, 12936)
    # Rows copied by hand from the files.
    np.testing.assert_array_equal(
        test["0161_c3s3_033053_04.jpg"],
        np.stack([[14, 24, 25, 44, 61, 24, 42, 56, 61, 86, 112, 60, 86, 101, 12, 11, 10, -1],
                  [38, 33, 20, 14, 20, 46, 52, 63, 29, 33, 34, 43, 36, 14, 35, 39, 27, -1]], axis=1),
    )  # fmt: skip
    assert (test["-1_c4s2_006742_05.jpg"] == -1).all()
    np.testing.assert_array_equal(train["1123_c2s2_161352_01.jpg"][[0, 1, 16]], [[-1, -1], [25, 35], [11, 39]])


def test_pair_rules_reproduce_the_published_pair_files(shared_data):
    subset = read_annotations(shared_data / "market_subset" / "annotations.csv")
    assert set(make_pairs(subset)) == set(read_pairs(shared_data / "market_subset" / "pairs.csv"))
    full = read_annotations(shared_data / "market_annotations" / "market-annotation-test.csv")
    official = read_pairs(shared_data / "market_annotations" / "market-pairs-test.csv")
    assert len(official) == 12000 and set(official) <= set(make_pairs(full))


def _annotations():
    torso = np.full((18, 2), -1)
    torso[[2, 5, 8, 11]] = [[20, 10], [20, 50], [60, 15], [60, 45]]
    no_hip = torso.copy()
    no_hip[8] = -1
    return {
        "0001_c1_a.jpg": torso, "0001_c2_b.jpg": torso, "0001_c3_c.jpg": no_hip,
        "0002_c1_a.jpg": torso, "0002_c1_b.jpg": torso, "0002_c1_c.jpg": torso, "0002_c1_d.jpg": torso,
        "-1_c1_a.jpg": torso, "-1_c1_b.jpg": torso, "0000_c1_a.jpg": torso, "0000_c1_b.jpg": torso,
    }  # fmt: skip


def test_pairs_are_same_identity_with_torso_and_no_distractors():
    pairs = make_pairs(_annotations())
    assert ("0001_c1_a.jpg", "0001_c2_b.jpg") in pairs and ("0001_c2_b.jpg", "0001_c1_a.jpg") in pairs
    assert len(pairs) == 2 + 4 * 3  # identity 0001 keeps 2 images, 0002 keeps 4
    assert all(a[:4] == b[:4] and a != b for a, b in pairs)
    assert not any(name.startswith(("-1", "0000")) or name == "0001_c3_c.jpg" for pair in pairs for name in pair)


def test_pair_sample_is_seeded():
    annotations = _annotations()
    assert make_pairs(annotations, 5, seed=1) == make_pairs(annotations, 5, seed=1)
    assert len(make_pairs(annotations, 5, seed=1)) == 5
    assert {tuple(make_pairs(annotations, 5, seed=seed)) for seed in range(6)}.__len__() > 1


def test_tuples_use_identities_with_enough_images_and_distinct_names():
    tuples = make_tuples(_annotations(), num_sources=3, num_tuples=20, seed=2)
    assert tuples == make_tuples(_annotations(), num_sources=3, num_tuples=20, seed=2)
    for sources, target in tuples:
        names = (*sources, target)
        assert len(set(names)) == 4 and {name[:4] for name in names} == {"0002"}
    with pytest.raises(ValueError, match="5 or more"):
        make_tuples(_annotations(), num_sources=4, num_tuples=1)


def test_files_round_trip_and_command_line(tmp_path):
    annotations = _annotations()
    write_annotations(tmp_path / "annotations.csv", annotations)
    loaded = read_annotations(tmp_path / "annotations.csv")
    assert loaded.keys() == annotations.keys()
    assert all((loaded[name] == annotations[name]).all() for name in annotations)
    tuples = make_tuples(annotations, 2, 4)
    write_tuples(tmp_path / "tuples.csv", tuples)
    assert read_tuples(tmp_path / "tuples.csv") == tuples
    assert (tmp_path / "tuples.csv").read_text().splitlines()[0] == "from_0,from_1,to"
    make_pairs_main(["--annotations", str(tmp_path / "annotations.csv"), "--out", str(tmp_path / "pairs.csv"), "--num-pairs", "3"])
    assert read_pairs(tmp_path / "pairs.csv") == make_pairs(annotations, 3, seed=0)


@pytest.mark.parametrize(
    "content, message",
    [
        ("name:keypoints_y:keypoints_x\na.jpg: [1, 2]: [3, 4]\n", r"a\.csv:2: expected two lists of 18"),
        ("name:keypoints_y:keypoints_x\na.jpg [1]\n", r"a\.csv:2: expected 'name"),
        ("name:keypoints_y:keypoints_x\na.jpg: [1, 2: [3]\n", r"a\.csv:2: keypoint lists are not JSON"),
    ],
)
def test_malformed_annotation_rows_name_file_and_line(tmp_path, content, message):
    (tmp_path / "a.csv").write_text(content)
    with pytest.raises(DataFormatError, match=message):
        read_annotations(tmp_path / "a.csv")


def test_malformed_pair_rows_name_file_and_line(tmp_path):
    (tmp_path / "p.csv").write_text("from,to\na.jpg,b.jpg\nc.jpg\n")
    with pytest.raises(DataFormatError, match=r"p\.csv:3: expected 2 non-empty names"):
        read_pairs(tmp_path / "p.csv")
    (tmp_path / "q.csv").write_text("source,target\n")
    with pytest.raises(DataFormatError, match=r"q\.csv:1: expected a header"):
        read_pairs(tmp_path / "q.csv")
