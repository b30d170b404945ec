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
from pathlib import Path

from pnr_tf.evaluation.baselines import BASELINES


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
    what.add_argument("--model", help="generator .keras file, training run directory (even one stopped midway) or checkpoint")
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
    inception = parser.add_mutually_exclusive_group()
    inception.add_argument("--inception-weights", default=None, help="Keras InceptionV3 .h5 (default: the Keras cache)")
    inception.add_argument("--no-inception", action="store_true", help="SSIM and mask-SSIM only")
    inception.add_argument("--random-inception", action="store_true", help=argparse.SUPPRESS)  # tests: same shapes, no weights
    parser.add_argument("--fid-cache", default=str(Path.home() / ".cache" / "pnr_tf" / "fid"), help="real-image FID statistics")
    parser.add_argument("--dataset", choices=("auto", "market", "deepfashion"), default="auto",
                        help="the protocol and the published numbers printed beside ours (auto: the run's data.dataset, "
                             "else the image names)")  # fmt: skip
    return parser


def resolve(root, name):
    from pnr_tf.files import join

    return join(root, name)


def main(argv=None):
    parser = build_parser()
    arguments = parser.parse_args(argv)
    if arguments.num_sources and not arguments.tuples:
        parser.error("--num-sources needs --tuples")
    if arguments.tuples and arguments.images:
        parser.error("--tuples scores a model; a folder of images is scored by its file names")
    if arguments.baseline and arguments.tuples:
        parser.error("--baseline scores pairs (--pairs)")
    if arguments.limit is not None and arguments.limit < 1:
        parser.error("--limit must be >= 1")

    from pnr_tf import files
    from pnr_tf.config import load_config
    from pnr_tf.data.annotations import DataFormatError
    from pnr_tf.data.annotations import read_annotations
    from pnr_tf.data.annotations import read_pairs
    from pnr_tf.data.annotations import read_tuples
    from pnr_tf.data.datasets import convention
    from pnr_tf.data.datasets import guess_convention
    from pnr_tf.data.pipeline import BadSampleError
    from pnr_tf.data.pipeline import build_sample_set
    from pnr_tf.evaluation import evaluate
    from pnr_tf.inference import PoseTransfer
    from pnr_tf.models.loading import locate_model

    try:
        run_config, model = None, None
        if arguments.model:
            # The model first: a broken file is reported as such, whatever the data arguments say.
            model = PoseTransfer.load(arguments.model)
            config_path = files.join(locate_model(arguments.model).run_dir, "config.yaml")
            run_config = load_config(config_path) if files.is_file(config_path) else None
        root = arguments.data_root or (run_config.data.root if run_config else "data/synthetic")
        annotation_path = resolve(root, arguments.annotations)
        image_dir = resolve(root, arguments.image_dir)
        if not files.is_file(annotation_path):
            raise FileNotFoundError(f"annotation file {annotation_path} does not exist (set --data-root / --annotations)")
        annotations = read_annotations(annotation_path)
        out_dir = arguments.out or (files.join(locate_model(arguments.model).run_dir, "evaluation") if arguments.model else "evaluation")
        if arguments.dataset != "auto":
            dataset = convention(arguments.dataset)
        elif run_config is not None:
            dataset = convention(run_config.data.dataset)
        else:
            dataset = guess_convention(annotations)
        # Published numbers go beside ours on the real benchmark only, not on the built-in synthetic people.
        synthetic = (run_config is not None and run_config.data.synthetic) or any("Synthetic" in name for name in annotations)
        real_market = dataset.name == "market" and "market" in f"{root} {annotation_path}".lower()
        show_published = arguments.dataset != "auto" or (not synthetic and (real_market or dataset.name == "deepfashion"))

        sets, missing = {}, []  # name -> ScoredSet; pairs without another method's output
        if arguments.images:
            pairs_path = resolve(root, arguments.pairs or "pairs-test.csv")
            expected = None
            if files.is_file(pairs_path):
                expected = read_pairs(pairs_path)
            elif not arguments.allow_missing:
                raise FileNotFoundError(
                    f"pair file {pairs_path} does not exist: --images is scored on the pairs of --pairs, so that a missing "
                    "output is noticed (or --allow-missing scores whatever the folder holds)"
                )
            sets["images"], missing = evaluate.read_generated_folder(
                arguments.images, annotations, image_dir, arguments.limit, expected, arguments.allow_missing
            )
            if missing:
                scored = sets.pop("images")
                sets[f"images ({len(missing)} of {len(missing) + len(scored)} pairs MISSING)"] = scored
        else:
            if arguments.tuples:
                if not files.is_file(resolve(root, arguments.tuples)):
                    raise FileNotFoundError(f"tuple file {resolve(root, arguments.tuples)} does not exist (set --tuples)")
                rows = read_tuples(resolve(root, arguments.tuples))
                available = min(len(sources) for sources, _ in rows) if rows else 0
                counts = arguments.num_sources or [available]
                if max(counts) > available:
                    raise ValueError(f"{arguments.tuples} has {available} sources per row; cannot score M = {max(counts)}")
                row_file = str(resolve(root, arguments.tuples))
            else:
                pairs_path = resolve(root, arguments.pairs or "pairs-test.csv")
                split_test = files.join(locate_model(arguments.model).run_dir, "split", "pairs-test.csv") if arguments.model else None
                if arguments.pairs is None and split_test is not None and files.is_file(split_test):
                    pairs_path = split_test  # the identities this run held out (data.test_identities)
                    print(f"scoring the run's held-out identities: {pairs_path}", file=sys.stderr)
                if not files.is_file(pairs_path):
                    raise FileNotFoundError(f"pair file {pairs_path} does not exist (set --pairs)")
                rows = [((source,), target) for source, target in read_pairs(pairs_path)]
                counts, row_file = [None], str(pairs_path)
            rows = rows[: arguments.limit] if arguments.limit else rows
            # The model's image size; for a baseline, the data's own (the first target image's).
            image_size = model.image_size if model else None  # a baseline: the data's own size
            samples = build_sample_set(rows, annotations, image_dir, image_size, "error", row_file)

        # After the inputs are checked and before the long generation: a missing weights file fails fast.
        inception, inception_key = None, "imagenet"
        if arguments.random_inception:
            from pnr_tf.evaluation.inception import build_inception

            inception, inception_key = build_inception(random_weights=True), "random"
            print("warning: randomly initialised Inception (tests only): IS, mask-IS and FID are meaningless", file=sys.stderr)
        elif not arguments.no_inception:
            from pnr_tf.evaluation.inception import build_inception

            inception = build_inception(arguments.inception_weights)

        if not arguments.images:
            for count in counts:
                name = arguments.baseline or ("pairs" if count is None else f"M={count}")
                print(f"{'decoding' if arguments.baseline else 'generating'} {len(samples)} images ({name})", file=sys.stderr)
                sets[name] = evaluate.generate_set(model, samples, rows, arguments.batch_size, count, baseline=arguments.baseline)

        metrics, baselines = {}, {}
        for name, scored_set in sets.items():
            print(f"scoring {len(scored_set)} pairs ({name})", file=sys.stderr)
            metrics[name], per_pair = evaluate.score(scored_set, inception, arguments.fid_cache, inception_key, dataset.mask_ssim)
            prefix = "" if len(sets) == 1 else f"{name.replace('=', '')}_"
            evaluate.write_report(out_dir, metrics[name], scored_set, per_pair, prefix)
            # Every set of pairs gets its own baselines (multi-shot sets share pairs, so one suffices).
            if not baselines:
                baselines = evaluate.baseline_metrics(scored_set, dataset.mask_ssim)
        report = metrics[next(iter(metrics))] if len(metrics) == 1 else {"by_num_sources": metrics}
        report["source"] = str(arguments.model or arguments.images or f"baseline: {arguments.baseline}")
        if arguments.images:
            report["num_missing"] = len(missing)
            report["missing_pairs"] = [f"{source}___{target}" for source, target in missing]
        report["baselines"] = baselines
        evaluate.write_metrics(out_dir, report)
    except (FileNotFoundError, ValueError, DataFormatError, BadSampleError, OSError) as error:
        parser.exit(2, f"error: {error}\n")

    print(evaluate.comparison_table(metrics, dataset.published if show_published else None, baselines, dataset.mask_ssim))
    if not dataset.mask_ssim:
        print("(DeepFashion protocol, as PATN's scripts score it: SSIM, IS and FID at 256 x 176; mask-SSIM / mask-IS are Market-only)")
    if show_published and inception is not None:
        print("(IS here uses Keras' 1000-class InceptionV3; the paper's used the 1008-class TF graph: compare IS across methods scored here)")
    print(f"wrote {files.join(out_dir, 'metrics.json')}, per-pair CSV and best/worst grid")
    return 0


if __name__ == "__main__":
    sys.exit(main())
