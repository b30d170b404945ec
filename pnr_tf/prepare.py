"""`python -m pnr_tf.prepare PHOTOS --out DATA`: your own photos -> a dataset to train on, no OpenPose needed.

    python -m pnr_tf.prepare my_photos --out data/mine                       # Market's 128 x 64 crops
    python -m pnr_tf.prepare my_photos --out data/mine --dataset deepfashion  # 256 x 176
    python -m pnr_tf.prepare my_photos --out data/mine --model pretrained     # the pretrained generator's size
    python -m pnr_tf.train --config configs/custom_cpu.yaml --set data.root=data/mine
    python -m pnr_tf.evaluate --model runs/custom_cpu --no-inception

PHOTOS holds one folder per person (the folder's name is the identity), or photos named by the
dataset's convention. Each photo's person is found, framed like the dataset's crops and annotated
with 18 keypoints (BlazePose, offline once fetched: python -m pnr_tf.pose.fetch). DATA gets images/,
annotations.csv, pairs.csv (training people), pairs-test.csv (held-out people), dropped.csv (every
photo left out and why) and contact_sheet.png (each crop with its skeleton: look before training).
Run it again after adding, changing or removing photos: DATA then mirrors PHOTOS (only new and
changed photos are read; removed ones leave the dataset). DATA must be new, empty or written by
prepare, and outside PHOTOS.
"""

import argparse
import sys

from pnr_tf.data.datasets import DATASETS
from pnr_tf.data.preparation import PreparationJob
from pnr_tf.data.preparation import run_preparation
from pnr_tf.models.loading import load_generator
from pnr_tf.pose.models import PoseModelsUnavailableError


def image_size(text):
    try:
        height, width = (int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HEIGHT,WIDTH such as 128,64, got {text!r}") from None
    if height < 16 or width < 16 or height % 4 or width % 4:
        raise argparse.ArgumentTypeError(f"height and width must be multiples of 4, at least 16, got {text!r}")
    return height, width


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m pnr_tf.prepare", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("photos", help="folder of photos: one subfolder per person, or names following --dataset's convention")
    parser.add_argument("--out", required=True, help="dataset folder to write (or to add the new photos to)")
    parser.add_argument("--dataset", choices=tuple(DATASETS), default="market", help="naming convention and crop size (default market: 128 x 64)")
    parser.add_argument("--size", type=image_size, default=None, metavar="HEIGHT,WIDTH", help="crop size instead of the dataset's")
    parser.add_argument("--model", default=None,
                        help="frame the crops at this model's input size (a .keras file, run directory, or pretrained), so that "
                             "the dataset and the model you fine-tune agree")  # fmt: skip
    parser.add_argument("--test-fraction", type=float, default=0.2, help="share of the people held out in pairs-test.csv (default 0.2)")
    parser.add_argument("--seed", type=int, default=0, help="which people are held out")
    arguments = parser.parse_args(argv)
    if arguments.model and arguments.size:
        parser.error("give --size or --model, not both: the model's input size is the crop size")
    try:
        size = load_generator(arguments.model).contract.image_size if arguments.model else arguments.size
        job = PreparationJob(arguments.photos, arguments.out, arguments.dataset, size, arguments.test_fraction, arguments.seed)
        report = run_preparation(job)
    except (FileNotFoundError, ValueError, OSError, PoseModelsUnavailableError) as error:
        parser.exit(2, f"error: {error}\n")
    dropped = ", ".join(f"{reason} {len(sources)}" for reason, sources in sorted(report.dropped.items())) or "none"
    print(f"{report.kept} photos of {report.people} people in {arguments.out} ({report.added} added, {report.changed} changed, "
          f"{report.removed} removed); dropped: {dropped} "
          f"(listed in dropped.csv); {report.train_pairs} training pairs, {report.test_pairs} held-out pairs; look at contact_sheet.png")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
