"""`python -m pnr_tf.evaluate`: the paper's metrics for a trained generator or another method's images.

    python -m pnr_tf.evaluate --model runs/quickstart                              # the run's data, pairs-test.csv
    python -m pnr_tf.evaluate --model runs/lad --data-root /data/market --annotations market-annotation-test.csv \\
        --pairs market-pairs-test.csv --image-dir bounding_box_test --dataset market
    python -m pnr_tf.evaluate --model runs/lad --tuples tuples-test.csv --num-sources 1,3,5   # Table 2 layout
    python -m pnr_tf.evaluate --images results/patn/images --data-root /data/market ...   # PATN strips / plain files
    python -m pnr_tf.evaluate --baseline copy-source --data-root data/synthetic            # a baseline as the method

Writes metrics.json, per_pair.csv and best_worst.png (8 best and 8 worst pairs by SSIM) to --out.
Every report also scores two trivial baselines on the same pairs (copy the source photo; the mean
target image for every pair), printed and stored beside the model's numbers; --baseline scores one
of them as the method. SSIM, mask-SSIM and L1 (mean absolute error on [-1, 1]) need no weights; IS, mask-IS and FID need Keras' InceptionV3 ImageNet file
(--inception-weights, or the Keras cache); --no-inception scores the SSIM family alone.
"""

import argparse
import sys

from pnr_tf import files
from pnr_tf.data.annotations import DataFormatError
from pnr_tf.data.pipeline import BadSampleError
from pnr_tf.evaluation.baselines import BASELINES
from pnr_tf.evaluation.job import EvaluationJob
from pnr_tf.evaluation.job import run_evaluation


def parse_num_sources(text):
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers like 1,3,5, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"numbers of sources must be >= 1, got {text!r}")
    return values


def build_parser():
    parser = argparse.ArgumentParser(
        prog="python -m pnr_tf.evaluate", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--model", help="generator .keras file, training run directory (even one stopped midway), checkpoint, or pretrained "
                                        "(the generator that ships with pnr_tf)")
    what.add_argument("--images", help="folder of another method's outputs: {from}___{to}_vis.png strips or {from}___{to}.png")
    what.add_argument("--baseline", choices=BASELINES, help="score a trivial baseline as the method (every report shows both)")
    parser.add_argument("--data-root", default=None, help="dataset folder (default: the run's data.root, else data/synthetic)")
    parser.add_argument("--annotations", default="annotations.csv", help="keypoint file, relative to --data-root")
    parser.add_argument("--image-dir", default="images", help="image folder, relative to --data-root")
    parser.add_argument("--pairs", default=None, help="pair file (default: the run's split/pairs-test.csv, else pairs-test.csv under --data-root)")
    parser.add_argument("--tuples", default=None, help="multi-shot tuple file (from_0,...,from_{M-1},to)")
    parser.add_argument("--num-sources", type=parse_num_sources, default=None, help="with --tuples: e.g. 1,3,5")
    parser.add_argument("--out", default=None, help="report folder (default <run>/evaluation or evaluation/)")
    parser.add_argument("--limit", type=int, default=None, help="score only the first N pairs (a quick look)")
    parser.add_argument("--allow-missing", action="store_true",
                        help="with --images: score the pairs that have an output and report how many do not (default: an error)")  # fmt: skip
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--test-time-mirror", choices=("model", "on", "off"), default="model",
                        help="average each drawing with that of the mirrored inputs: as the model was trained to (model.test_time_mirror), "
                             "or on / off (off: the paper's single drawing)")  # fmt: skip
    inception = parser.add_mutually_exclusive_group()
    inception.add_argument("--inception-weights", default=None, help="Keras InceptionV3 .h5 (default: the Keras cache)")
    inception.add_argument("--no-inception", action="store_true", help="SSIM and mask-SSIM only")
    inception.add_argument("--random-inception", action="store_true", help=argparse.SUPPRESS)  # tests: same shapes, no weights
    parser.add_argument("--fid-cache", default=str(files.cache_root() / "fid"), help="real-image FID statistics")
    parser.add_argument("--dataset", choices=("auto", "market", "deepfashion"), default="auto",
                        help="the protocol and the published numbers printed beside ours (auto: the run's data.dataset, "
                             "else the image names)")  # fmt: skip
    return parser


def main(argv=None):
    parser = build_parser()
    arguments = parser.parse_args(argv)
    if arguments.num_sources and not arguments.tuples:
        parser.error("--num-sources needs --tuples")
    if arguments.tuples and arguments.images:
        parser.error("--tuples scores a model; a folder of images is scored by its file names")
    if arguments.baseline and arguments.tuples:
        parser.error("--baseline scores pairs (--pairs)")
    if arguments.test_time_mirror != "model" and not arguments.model:
        parser.error("--test-time-mirror applies to --model")
    if arguments.limit is not None and arguments.limit < 1:
        parser.error("--limit must be >= 1")
    try:
        report = run_evaluation(EvaluationJob(**vars(arguments)))
    except (FileNotFoundError, ValueError, DataFormatError, BadSampleError, OSError) as error:
        parser.exit(2, f"error: {error}\n")
    print("\n".join([report.table, *report.notes]))
    print(f"wrote {report.metrics_path}, per-pair CSV and best/worst grid")
    return 0


if __name__ == "__main__":
    sys.exit(main())
