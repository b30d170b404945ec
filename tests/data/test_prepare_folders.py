"""`prepare` as people treat their photo folders: files added, changed, removed, cut short, badly named, and
output folders in the wrong place. A stand-in estimator (keypoints from the photo's size) keeps these fast
and independent of BlazePose; tests/data/test_prepare.py runs the real one on real photos."""

import csv
import os

import numpy as np
import pytest
from hypothesis import HealthCheck
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from pnr_tf.data.annotations import read_annotations
from pnr_tf.data.annotations import read_pairs
from pnr_tf.data.preparation import PreparationJob
from pnr_tf.data.preparation import run_preparation
from pnr_tf.pose import PersonPose
from pnr_tf.pose import PoseEstimationError
from pnr_tf.prepare import main as prepare_main
from pnr_tf.visualize import read_rgb
from pnr_tf.visualize import write_rgb

# A standing person in a photo of height 1 and width 1 (y, x): head, shoulders, hips, knees, ankles.
UNIT_POSE = np.array([
    [0.12, 0.5], [0.2, 0.5], [0.2, 0.35], [0.35, 0.3], [0.48, 0.3], [0.2, 0.65], [0.35, 0.7], [0.48, 0.7],
    [0.5, 0.4], [0.7, 0.4], [0.88, 0.4], [0.5, 0.6], [0.7, 0.6], [0.88, 0.6], [0.1, 0.45], [0.1, 0.55], [0.11, 0.42], [0.11, 0.58],
])  # fmt: skip


class StandInEstimator:
    """The same standing person in every photo, scaled to its size; a dark photo shows nobody."""

    def estimate(self, photo, name="the photo"):
        if photo.mean() < 20:
            raise PoseEstimationError(f"no person found in {name}")
        height, width = photo.shape[:2]
        return PersonPose(UNIT_POSE * [height - 1, width - 1], 1.0, 1)


def photo(colour, size=(256, 128)):
    image = np.zeros((*size, 3), np.uint8)
    image[:] = colour
    image[size[0] // 4 : 3 * size[0] // 4, size[1] // 4 : 3 * size[1] // 4] = 255 - np.asarray(colour)  # something to look at
    return image


def write_people(folder, people):
    """people: {person: [colour, ...]} -> one JPEG per colour in a folder per person."""
    for person, colours in people.items():
        (folder / person).mkdir(parents=True, exist_ok=True)
        for index, colour in enumerate(colours):
            write_rgb(folder / person / f"photo{index}.jpg", photo(colour))


def run(photos, out, **options):
    return run_preparation(PreparationJob(str(photos), str(out), **options), estimator=StandInEstimator())


def dataset_names(out):
    """(annotation names, image file names, names in any pair): what training would read."""
    annotations = set(read_annotations(out / "annotations.csv"))
    images = {path.name for path in (out / "images").iterdir()}
    paired = {name for file in ("pairs.csv", "pairs-test.csv") for pair in read_pairs(out / file) for name in pair}
    return annotations, images, paired


def sources_of(out):
    """{crop name: source path} from prepare's manifest."""
    with open(out / "prepared.csv", newline="") as file:
        return {row["name"]: row["source"] for row in csv.DictReader(file) if row["name"]}


@pytest.fixture
def folder(tmp_path):
    photos = tmp_path / "photos"
    write_people(photos, {"ann": [(200, 30, 30), (190, 40, 40), (180, 50, 50)], "bob": [(30, 200, 30), (40, 190, 40)]})
    return photos


def test_a_jpeg_cut_short_is_dropped_as_unreadable_not_trained_on(folder, tmp_path):
    whole = (folder / "ann" / "photo0.jpg").read_bytes()
    (folder / "bob" / "cut.jpg").write_bytes(whole[: len(whole) // 2])  # another person's photo, cut short, in bob's folder
    out = tmp_path / "data"
    report = run(folder, out)
    annotations, images, paired = dataset_names(out)
    assert report.dropped == {"unreadable": ["bob/cut.jpg"]}
    assert not any("cut" in name for name in annotations | images | paired)
    assert report.kept == 5 and annotations == images


def test_a_removed_photo_leaves_the_dataset_and_a_changed_one_is_read_again(folder, tmp_path):
    out = tmp_path / "data"
    first = run(folder, out)
    assert (first.added, first.changed, first.removed, first.kept) == (5, 0, 0, 5)
    removed_crop = next(name for name, source in sources_of(out).items() if source == "ann/photo2.jpg")
    assert any(removed_crop in pair for pair in read_pairs(out / "pairs.csv") + read_pairs(out / "pairs-test.csv"))
    # One photo removed; another replaced by a different one of the same size and modification time.
    (folder / "ann" / "photo2.jpg").unlink()
    changed = folder / "bob" / "photo0.jpg"
    stat = changed.stat()
    write_rgb(changed, photo((30, 30, 200)))
    os.utime(changed, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    second = run(folder, out)
    assert (second.added, second.changed, second.removed, second.kept) == (0, 1, 1, 4)
    annotations, images, paired = dataset_names(out)
    assert removed_crop not in annotations | images | paired
    assert annotations == images and paired <= annotations
    changed_crop = next(name for name, source in sources_of(out).items() if source == "bob/photo0.jpg")
    corner = read_rgb(out / "images" / changed_crop)[:8, :8].reshape(-1, 3).mean(axis=0)
    assert corner[2] > 150 and corner[1] < 80, corner  # the new, blue photo: not the old green one
    # Nothing changed: nothing read.
    third = run(folder, out)
    assert (third.added, third.changed, third.removed, third.kept) == (0, 0, 0, 4)


@pytest.mark.parametrize("where", ["the photo folder", "inside it", "holding it"])
def test_an_output_folder_among_the_photos_is_refused_before_anything_is_written(folder, tmp_path, capsys, where):
    out = {"the photo folder": folder, "inside it": folder / "ann" / "data", "holding it": tmp_path}[where]
    before = sorted(str(path) for path in tmp_path.rglob("*"))
    with pytest.raises(SystemExit) as exit_info:
        prepare_main([str(folder), "--out", str(out)])
    error = capsys.readouterr().err
    assert exit_info.value.code == 2 and error.startswith("error: --out") and error.count("\n") == 1, error
    assert sorted(str(path) for path in tmp_path.rglob("*")) == before


def test_an_output_folder_holding_other_files_is_refused(folder, tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "annotations.csv").write_text("name:keypoints_y:keypoints_x\n")  # someone's dataset
    with pytest.raises(SystemExit) as exit_info:
        prepare_main([str(folder), "--out", str(out)])
    assert exit_info.value.code == 2 and "did not write" in capsys.readouterr().err
    assert (out / "annotations.csv").read_text() == "name:keypoints_y:keypoints_x\n"


def test_photos_whose_names_meet_keep_a_crop_each_and_folders_that_meet_are_refused(tmp_path):
    photos = tmp_path / "photos"
    (photos / "ann").mkdir(parents=True)
    write_rgb(photos / "ann" / "a.jpg", photo((200, 30, 30)))
    write_rgb(photos / "ann" / "a.png", photo((30, 200, 30)))
    (photos / "ann" / "deeper").mkdir()
    write_rgb(photos / "ann" / "deeper" / "a.jpg", photo((30, 30, 200)))
    report = run(photos, tmp_path / "data")
    assert report.kept == 3 and len(set(sources_of(tmp_path / "data"))) == 3
    for person in ("ann_b", "ann-b"):
        (photos / person).mkdir()
        write_rgb(photos / person / "front.jpg", photo((90, 90, 90)))
    with pytest.raises(ValueError, match="'ann-b' and 'ann_b' would be one person"):
        run(photos, tmp_path / "other")


# Random folders: names, sizes and contents, changed between runs ------------------------------------

CONTENTS = ("photo", "photo", "photo", "dark", "cut", "empty", "text", "small")
names = st.text("abAB_-. 0", min_size=1, max_size=6).filter(lambda name: name.strip(". ") and not name.startswith("."))
files = st.dictionaries(
    st.tuples(st.sampled_from(["p1", "p_1", "q"]), names, st.sampled_from([".jpg", ".png", ".JPG", ".txt"])),
    st.tuples(st.sampled_from(CONTENTS), st.integers(0, 255), st.sampled_from([(256, 128), (200, 300), (128, 64)])),
    max_size=7,
)


def write_file(path, content, level, size):
    path.parent.mkdir(parents=True, exist_ok=True)
    if content == "text" or path.suffix == ".txt":
        path.write_text("not a photo")
    elif content == "empty":
        path.write_bytes(b"")
    else:
        image = np.zeros((*size, 3), np.uint8) if content == "dark" else photo((level, 255 - level, 100), size)
        write_rgb(path, image[:20, :20] if content == "small" else image)
        if content == "cut":
            data = path.read_bytes()
            path.write_bytes(data[: len(data) // 2])


def check_mirrors(photos, out):
    """What training reads is exactly what the folder holds now: every crop named once, from a photo that is there."""
    annotations, images, paired = dataset_names(out)
    assert images == annotations and paired <= annotations
    sources = sources_of(out)
    assert set(sources) == annotations
    present = {str(path.relative_to(photos)) for path in photos.rglob("*") if path.is_file()}
    assert set(sources.values()) <= present
    with open(out / "dropped.csv", newline="") as file:
        dropped = {row["source"] for row in csv.DictReader(file)}
    assert dropped <= present and not dropped & set(sources.values())
    assert dropped | set(sources.values()) == present  # every file kept or reported


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(first=files, second=files, removed=st.sets(st.integers(0, 6), max_size=3))
def test_the_dataset_mirrors_any_folder_across_runs(tmp_path_factory, first, second, removed):
    root = tmp_path_factory.mktemp("tree")
    photos, out = root / "photos", root / "data"
    photos.mkdir()
    for (person, name, suffix), (content, level, size) in first.items():
        write_file(photos / person / f"{name}{suffix}", content, level, size)
    run(photos, out)
    check_mirrors(photos, out)
    existing = sorted(path for path in photos.rglob("*") if path.is_file())
    for index in removed:
        if index < len(existing):
            existing[index].unlink()
    for (person, name, suffix), (content, level, size) in second.items():  # new files, and new contents under old names
        write_file(photos / person / f"{name}{suffix}", content, level, size)
    run(photos, out)
    check_mirrors(photos, out)
