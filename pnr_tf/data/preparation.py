"""A folder of photos -> a dataset in the field's formats, keypoints estimated: what ``python -m pnr_tf.prepare`` does.

Input: one folder per person (the folder's name is the identity), or a flat folder whose file names
follow the Market (``0001_c1s1_...``) or DeepFashion (``<item>_<view>``) convention. JPEG, PNG,
WebP or BMP of any size; EXIF orientation is honoured; every photo is sized from its header before
it is decoded (``pnr_tf.images``).

For each photo: the person is found (``pnr_tf.pose.PoseEstimator``), framed and resized as the
dataset's crops are (a photo already of the dataset's shape that the person fills is only resized;
any other is cut around the person with Market's margins), and the 18 keypoints are estimated on
that crop. Written to the output folder:

    images/             the crops (JPEG, quality 95)
    annotations.csv     name:keypoints_y:keypoints_x, -1 = missing
    pairs.csv           same-person pairs, both with a torso, of the training people
    pairs-test.csv      the same for the held-out people (a seeded share of the identities, stable
                        as the folder grows: a person's side depends only on the seed and their name)
    dropped.csv         every photo left out and why: unreadable, no person, several people of
                        similar size, no torso (both shoulders and both hips), too small
    prepared.csv        each photo seen (path, SHA-256 of its bytes) and what became of it
    contact_sheet.png   every kept crop with its skeleton drawn, to look at before training

Running again mirrors the folder: new photos are read, photos whose bytes changed are read again,
and photos that are gone leave images/, annotations.csv and the pairs. The output folder must be new,
empty or written by prepare, and neither inside the photos nor holding them.
"""

import csv
import dataclasses
import hashlib
import io
import os
import re
from pathlib import Path

import numpy as np

from pnr_tf import files
from pnr_tf.conventions import MISSING
from pnr_tf.conventions import visible_joints
from pnr_tf.data.annotations import read_annotations
from pnr_tf.data.annotations import write_annotations
from pnr_tf.data.annotations import write_pairs
from pnr_tf.data.datasets import convention
from pnr_tf.data.pairs import has_torso
from pnr_tf.data.pairs import make_pairs
from pnr_tf.images import ImageFileError
from pnr_tf.pose import PoseEstimationError
from pnr_tf.pose import PoseEstimator
from pnr_tf.pose import frame_photo
from pnr_tf.progress import ProgressBar
from pnr_tf.visualize import draw_pose
from pnr_tf.visualize import labelled_rows
from pnr_tf.visualize import read_rgb
from pnr_tf.visualize import write_rgb

PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
SIMILAR_SIZE = 0.7  # a second person at least this large (relative to the largest) makes the photo ambiguous
SMALLEST_PERSON = 0.5  # a crop box shorter than this fraction of the output height would be enlarged too far
MANIFEST_FIELDS = ("source", "sha256", "name", "dropped")
MANIFEST_NAME = "prepared.csv"
SAVE_EVERY = 20  # photos between saves of the manifest and the annotations: a crash loses at most this many


@dataclasses.dataclass
class PreparationJob:
    photos: str  # the input folder
    out: str  # the dataset folder written
    dataset: str = "market"  # naming convention and, unless image_size is given, the crop size
    image_size: tuple = None  # (height, width)
    test_fraction: float = 0.2  # share of the people held out in pairs-test.csv
    seed: int = 0
    sheet_columns: int = 16

    @property
    def size(self):
        return tuple(self.image_size or convention(self.dataset).image_size)


@dataclasses.dataclass
class PreparationReport:
    kept: int  # photos in the dataset now
    added: int  # photos read for the first time in this run
    changed: int  # photos whose bytes changed since the last run, read again
    removed: int  # photos gone from the folder since the last run, taken out of the dataset
    dropped: dict  # reason -> [source paths] of the photos in the folder that are not in the dataset
    train_pairs: int
    test_pairs: int
    people: int

    @property
    def read(self):
        return self.added + self.changed


def find_photos(folder):
    """(source path relative to folder, identity) of every photo: subfolders are people, else names carry them."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"no folder of photos at {folder}")
    found = []
    for path in sorted(folder.rglob("*")):
        if not path.is_file() or path.name.startswith("."):
            continue
        relative = path.relative_to(folder)
        identity = relative.parts[0] if len(relative.parts) > 1 else None
        found.append((str(relative), identity))
    return found


def check_folders(photos, out):
    """ValueError, before anything is written, for an output folder that is the photo folder, lies inside it or
    holds it (the crops would become photos of a person called "images"), or that holds files prepare did not write."""
    photos_path, out_path = Path(os.path.realpath(photos)), Path(os.path.realpath(out))
    if out_path == photos_path:
        raise ValueError(f"--out {out} is the photo folder: the dataset goes to a folder of its own, outside the photos")
    if photos_path in out_path.parents:
        raise ValueError(f"--out {out} is inside the photo folder {photos}: its crops would be read as photos next time; "
                         "choose a folder outside it")  # fmt: skip
    if out_path in photos_path.parents:
        raise ValueError(f"--out {out} holds the photo folder {photos}: the dataset goes to a folder of its own, outside the photos")
    if out_path.is_file():
        raise ValueError(f"--out {out} is a file: give a folder for the dataset")
    if out_path.is_dir() and any(out_path.iterdir()) and not (out_path / MANIFEST_NAME).is_file():
        raise ValueError(f"--out {out} holds files that prepare did not write (no {MANIFEST_NAME}): give a new or empty folder, "
                         "so that nothing of yours is replaced")  # fmt: skip


def check_identities(photos):
    """ValueError when two person folders would become one identity in the dataset (their names differ only
    in the characters file names cannot carry, such as "a_b" and "a-b")."""
    seen = {}
    for _, identity in photos:
        if identity is not None and seen.setdefault(safe(identity), identity) != identity:
            raise ValueError(f"the folders {seen[safe(identity)]!r} and {identity!r} would be one person ({safe(identity)!r}) "
                             "in the dataset: rename one of them")  # fmt: skip


def digest(path):
    """SHA-256 of a file's bytes, hex: a photo is read again when it changes."""
    hasher = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            hasher.update(block)
    return hasher.hexdigest()


def unique_name(name, taken):
    """name, or name with -2, -3, ... before its suffix: two photos never share a crop."""
    stem, suffix = os.path.splitext(name)
    candidate, count = name, 1
    while candidate in taken:
        count += 1
        candidate = f"{stem}-{count}{suffix}"
    return candidate


def safe(text):
    """A name part without the separators the conventions read identities by."""
    return re.sub(r"[^A-Za-z0-9-]+", "-", text).strip("-") or "x"


def output_name(relative, identity):
    """The crop's file name: <identity>_<photo>.jpg for a folder per person (both without '_', which the
    conventions read identities by), the photo's own name as .jpg in a flat folder."""
    stem = Path(relative).stem
    if identity is None:
        return f"{stem}.jpg"
    if stem.startswith(identity + "_"):  # photos already named after their person: not twice
        stem = stem[len(identity) + 1 :]
    return f"{safe(identity)}_{safe(stem)}.jpg"


# Names a flat folder's photos must have: the identity is read from them.
FLAT_NAMES = {"market": re.compile(r"^(\d{4}|-1)_."), "deepfashion": re.compile(r"^.+_[^_]+$")}


def check_flat_names(photos, dataset):
    """ValueError naming a photo of a flat folder whose name does not carry its person's identity."""
    for relative, identity in photos:
        if identity is None and Path(relative).suffix.lower() in PHOTO_SUFFIXES and not FLAT_NAMES[dataset].match(Path(relative).stem):
            example = "0001_c1s1_000001_00.jpg" if dataset == "market" else "fashionWOMENDressesid0000262902_1front.jpg"
            raise ValueError(f"{relative}: in a flat folder the {dataset} convention reads the person from the name (like {example}); "
                             "put each person's photos in a folder of their own instead (its name is the identity)")  # fmt: skip


def held_out(identity, seed, fraction):
    """Whether a person is held out: a hash of (seed, identity), so adding people never moves earlier ones."""
    digest = hashlib.sha256(f"{seed}:{identity}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


def frame(photo, keypoints, image_size, estimate=None):
    """(crop of image_size, its keypoints) of the person whose keypoints (photo pixels) are given, framed as every
    path frames a photo (``pnr_tf.pose.frame_photo``), or PreparationDrop when the person is too small."""
    crop = frame_photo(photo, keypoints, image_size, estimate)
    if crop.box[2] < SMALLEST_PERSON * image_size[0]:
        raise PreparationDrop("too small")
    return crop.image, crop.keypoints


def estimated_frame(photo, estimator, image_size, name):
    """``frame`` with keypoints estimated, or PreparationDrop when the photo shows several people of similar size."""
    pose = estimator.estimate(photo, name)
    if len(pose.relative_sizes) > 1 and pose.relative_sizes[1] >= SIMILAR_SIZE:
        raise PreparationDrop("several people")
    return frame(photo, pose.keypoints, image_size, lambda crop: estimator.estimate(crop, name).keypoints)


class PreparationDrop(Exception):
    """A photo left out of the dataset; the message is the reason."""


def annotation_keypoints(keypoints, image_size):
    """Rounded to pixels (the file holds integers), inside the image, -1 where missing."""
    with np.errstate(invalid="ignore"):
        rounded = np.round(np.asarray(keypoints, np.float64))
        inside = visible_joints(rounded, image_size)
    return np.where(inside[:, None], rounded, MISSING).astype(np.int32)


def _read_manifest(path):
    if not os.path.isfile(path):
        return {}
    with open(path, newline="", encoding="utf-8") as file:
        return {row["source"]: {field: row.get(field) or "" for field in MANIFEST_FIELDS} for row in csv.DictReader(file)}


def _write_manifest(path, rows):
    text = io.StringIO()
    writer = csv.DictWriter(text, MANIFEST_FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(sorted(rows.values(), key=lambda row: row["source"]))
    files.write_text(path, text.getvalue())


def contact_sheet(images, keypoints, columns):
    """Every kept crop with its skeleton, ``columns`` to a row, rows labelled by the crops' numbers in
    annotations.csv's (sorted) order."""
    drawn = [draw_pose(image, points) for image, points in zip(images, keypoints)]
    rows = [drawn[start : start + columns] for start in range(0, len(drawn), columns)]
    labels = [f"{start + 1}-{min(start + columns, len(drawn))}" for start in range(0, len(drawn), columns)]
    return labelled_rows(rows, labels)


def _save(out, manifest, annotations):
    """annotations.csv, then the manifest: a crash between the two only means a photo is read again."""
    kept = {row["name"] for row in manifest.values() if row["name"]}
    write_annotations(out / "annotations.csv", {name: points for name, points in sorted(annotations.items()) if name in kept})
    _write_manifest(out / MANIFEST_NAME, manifest)


def _remove_crop(images_dir, name):
    if name:
        (images_dir / name).unlink(missing_ok=True)


def run_preparation(job, estimator=None):
    """Runs a job: the dataset made to mirror the photo folder; returns a PreparationReport."""
    if not 0 <= job.test_fraction < 1:
        raise ValueError(f"the held-out share must be in [0, 1), got {job.test_fraction}")
    photos = find_photos(job.photos)
    check_folders(job.photos, job.out)
    check_flat_names(photos, job.dataset)
    check_identities(photos)
    out = Path(job.out)
    images_dir = out / "images"
    images_dir.mkdir(parents=True, exist_ok=True)
    manifest = _read_manifest(out / MANIFEST_NAME)
    annotation_path = out / "annotations.csv"
    annotations = dict(read_annotations(annotation_path)) if annotation_path.is_file() else {}
    # Photos gone from the folder leave the dataset: their rows, keypoints and crops.
    present = {relative for relative, _ in photos}
    removed = sorted(set(manifest) - present)
    for relative in removed:
        row = manifest.pop(relative)
        annotations.pop(row["name"], None)
        _remove_crop(images_dir, row["name"])
    to_read = []
    for relative, identity in photos:
        try:
            content = digest(Path(job.photos) / relative)
        except OSError as error:  # not readable (permissions): dropped as unreadable below
            content = f"unreadable: {error.strerror}"
        seen = manifest.get(relative)
        if seen is None or seen["sha256"] != content:
            to_read.append((relative, identity, content, seen is not None))
    added = sum(not was_seen for *_, was_seen in to_read)
    estimator = estimator or (PoseEstimator(quiet=True) if to_read else None)
    progress = ProgressBar(len(to_read), unit="photo")
    for count, (relative, identity, content, _) in enumerate(to_read, start=1):
        previous = manifest.get(relative, {}).get("name", "")
        annotations.pop(previous, None)  # a changed photo: its old crop goes, its name stays its own
        _remove_crop(images_dir, previous)
        taken = {row["name"] for source, row in manifest.items() if row["name"] and source != relative}
        name = previous or unique_name(output_name(relative, identity), taken)
        row = {"source": relative, "sha256": content, "name": "", "dropped": ""}
        try:
            if Path(relative).suffix.lower() not in PHOTO_SUFFIXES:
                raise PreparationDrop("unreadable")
            image, keypoints = estimated_frame(read_rgb(Path(job.photos) / relative), estimator, job.size, relative)
            points = annotation_keypoints(keypoints, job.size)
            if not has_torso(points):
                raise PreparationDrop("no torso")
            write_rgb(images_dir / name, image)
            annotations[name] = points
            row["name"] = name
        except (ImageFileError, OSError):
            row["dropped"] = "unreadable"
        except PoseEstimationError:
            row["dropped"] = "no person"
        except PreparationDrop as drop:
            row["dropped"] = str(drop)
        manifest[relative] = row
        if count % SAVE_EVERY == 0 or count == len(to_read):
            _save(out, manifest, annotations)
            progress.update(count)
    progress.close()
    kept = {row["name"] for row in manifest.values() if row["name"]}
    annotations = {name: points for name, points in sorted(annotations.items()) if name in kept}
    for path in images_dir.iterdir():  # crops of an interrupted run that no row names
        if path.is_file() and path.name not in kept:
            path.unlink()
    _save(out, manifest, annotations)
    dataset = convention(job.dataset)
    pairs = make_pairs(annotations, dataset=dataset)
    train, test = [], []
    for pair in pairs:
        (test if held_out(dataset.identity_of(pair[1]), job.seed, job.test_fraction) else train).append(pair)
    write_pairs(out / "pairs.csv", train)
    write_pairs(out / "pairs-test.csv", test)
    dropped = {}
    for row in manifest.values():
        if row["dropped"]:
            dropped.setdefault(row["dropped"], []).append(row["source"])
    with open(out / "dropped.csv", "w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file, lineterminator="\n")
        writer.writerow(["source", "reason"])
        writer.writerows(sorted((source, reason) for reason, sources in dropped.items() for source in sources))
    names = sorted(annotations)
    sheet = out / "contact_sheet.png"
    if names:
        crops = [read_rgb(images_dir / name) for name in names]
        write_rgb(sheet, contact_sheet(crops, [annotations[name] for name in names], job.sheet_columns))
    else:
        sheet.unlink(missing_ok=True)
    people = {dataset.identity_of(name) for name in names}
    return PreparationReport(len(names), added, len(to_read) - added, len(removed), dropped, len(train), len(test), len(people))
