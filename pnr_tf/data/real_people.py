"""The pretrained generator's data: the Market-1501 and DeepFashion samples of ../shared/data, each photo
framed as ``prepare`` frames a user's photo, at the model's size, with its published keypoints.

    assemble_real_people("../shared/data", "data/real_people")      # or data.real_people_from in a config

Written to the output folder (the field's formats, ``data.dataset: market``: an image's identity is
its name up to the first ``_``, a Market person or a DeepFashion item):

    images/, annotations.csv   every framed photo with a torso, keypoints moved with the pixels
    pairs.csv                  training pairs: Market's training people and DeepFashion's training items
    pairs-test.csv             Market's held-out people: the 20 % that configs/market_cpu.yaml holds out
                               (the same seeded split of the same pair file), what ``evaluate`` scores
    market-pairs-test.csv      the same people's pairs as the Market subset has them, every row (score them
                               there, on the original photos, to compare with market_cpu)
    pairs-test-deepfashion.csv DeepFashion's held-out items, framed here with their published keypoints
    deepfashion-held-out.csv   those items' original photos: run them through ``prepare`` to score the
                               model on photos framed and annotated as a user's are (BENCHMARKS.md)
    contact_sheet.png          every framed photo with its skeleton

Research-only data (Market-1501 and DeepFashion terms): never copied into the repository; the weights
trained on it carry the same terms (pnr_tf/pretrained/MODEL_CARD.md).
"""

import sys
from pathlib import Path

import numpy as np

from pnr_tf.data.annotations import read_annotations
from pnr_tf.data.annotations import read_pairs
from pnr_tf.data.annotations import write_annotations
from pnr_tf.data.annotations import write_pairs
from pnr_tf.data.datasets import DEEPFASHION
from pnr_tf.data.datasets import MARKET
from pnr_tf.data.pairs import has_torso
from pnr_tf.data.pairs import split_rows_by_identity
from pnr_tf.data.preparation import PreparationDrop
from pnr_tf.data.preparation import annotation_keypoints
from pnr_tf.data.preparation import contact_sheet
from pnr_tf.data.preparation import frame
from pnr_tf.visualize import read_rgb
from pnr_tf.visualize import write_rgb

SOURCES = {"market": ("market_subset", MARKET), "deepfashion": ("deepfashion_subset", DEEPFASHION)}
MARKET_TEST_SHARE = 0.2  # configs/market_cpu.yaml's data.test_identities, same seed: the same held-out people
DEEPFASHION_HELD_OUT_SHARE = 0.4  # items never trained on: enough to fine-tune on some and score the rest


def frame_dataset(folder, image_size):
    """{name: (image or None when the photo is already as framed, keypoints)} of a dataset folder's photos framed
    at image_size; photos without a torso left out."""
    annotations = read_annotations(Path(folder) / "annotations.csv")
    framed = {}
    for name, keypoints in annotations.items():
        photo = read_rgb(Path(folder) / "images" / name)
        try:
            image, moved = frame(photo, keypoints.astype(np.float64), image_size)
        except PreparationDrop:
            continue
        points = annotation_keypoints(moved, image_size)
        if has_torso(points):
            framed[name] = (None if np.array_equal(image, photo) else image, points)
    return framed


def assemble_real_people(shared_root, out, image_size=MARKET.image_size, seed=0):
    """Writes the pretrained generator's dataset (see the module's docstring) to ``out``; returns {file: rows}."""
    shared_root, out = Path(shared_root), Path(out)
    missing = [SOURCES[name][0] for name in SOURCES if not (shared_root / SOURCES[name][0] / "annotations.csv").is_file()]
    if missing:
        raise FileNotFoundError(f"{shared_root} holds no {' or '.join(missing)} (annotations.csv and images/): the research-only "
                                "samples the pretrained generator is trained on")  # fmt: skip
    (out / "images").mkdir(parents=True, exist_ok=True)
    annotations, splits = {}, {}
    for dataset, (folder, convention) in SOURCES.items():
        framed = frame_dataset(shared_root / folder, image_size)
        for name, (image, points) in framed.items():
            if image is None:  # already framed (most Market crops): the file as it is, not encoded again
                (out / "images" / name).write_bytes((shared_root / folder / "images" / name).read_bytes())
            else:
                write_rgb(out / "images" / name, image)
            annotations[name] = points
        share = MARKET_TEST_SHARE if dataset == "market" else DEEPFASHION_HELD_OUT_SHARE
        rows = read_pairs(shared_root / folder / "pairs.csv")
        split = split_rows_by_identity(rows, 0.0, share, seed, convention)
        splits[dataset] = {part: [row for row in split[part] if all(name in framed for name in row)] for part in ("train", "test")}
        if dataset == "market":
            write_pairs(out / "market-pairs-test.csv", split["test"])
        if dataset == "deepfashion":
            held_out = sorted({name for row in split["test"] for name in row})
            (out / "deepfashion-held-out.csv").write_text("name\n" + "".join(f"{name}\n" for name in held_out))
        print(f"{dataset}: {len(framed)} of {sum(1 for _ in (shared_root / folder / 'images').iterdir())} photos framed; "
              f"{len(splits[dataset]['train'])} training pairs, {len(splits[dataset]['test'])} held out", file=sys.stderr)  # fmt: skip
    written = {
        "pairs.csv": splits["market"]["train"] + splits["deepfashion"]["train"],
        "pairs-test.csv": splits["market"]["test"],
        "pairs-test-deepfashion.csv": splits["deepfashion"]["test"],
    }
    for file, rows in written.items():
        write_pairs(out / file, rows)
    names = sorted(annotations)
    write_annotations(out / "annotations.csv", {name: annotations[name] for name in names})
    crops = [read_rgb(out / "images" / name) for name in names]
    write_rgb(out / "contact_sheet.png", contact_sheet(crops, [annotations[name] for name in names], 24))
    return {file: len(rows) for file, rows in written.items()}
