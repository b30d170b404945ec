"""One evaluation as ``python -m pnr_tf.evaluate`` runs it: which data, which pairs, which protocol, then the report.

    from pnr_tf.evaluation.job import EvaluationJob, run_evaluation
    report = run_evaluation(EvaluationJob(model="runs/quickstart", no_inception=True))
    print(report.table)

Defaults follow the run: a model's run directory gives the data root (its config.yaml), the pairs
(its held-out split/pairs-test.csv) and the dataset convention; without a run, data/synthetic,
pairs-test.csv under the root and a convention guessed from the image names. Published numbers
are printed beside ours on the real benchmarks only (not on the built-in synthetic people), or
when the dataset is named.
"""

import dataclasses
import sys

from pnr_tf import files
from pnr_tf import pretrained
from pnr_tf import run_files
from pnr_tf.config import load_config
from pnr_tf.data.annotations import read_annotations
from pnr_tf.data.annotations import read_pairs
from pnr_tf.data.annotations import read_tuples
from pnr_tf.data.datasets import convention
from pnr_tf.data.datasets import guess_convention
from pnr_tf.data.pipeline import build_sample_set
from pnr_tf.evaluation import evaluate
from pnr_tf.evaluation.inception import build_inception
from pnr_tf.inference import PoseTransfer
from pnr_tf.models.loading import locate_model

DEEPFASHION_NOTE = "(DeepFashion protocol, as PATN's scripts score it: SSIM, IS and FID at 256 x 176; mask-SSIM / mask-IS are Market-only)"
INCEPTION_NOTE = "(IS here uses Keras' 1000-class InceptionV3; the paper's used the 1008-class TF graph: compare IS across methods scored here)"


@dataclasses.dataclass
class EvaluationJob:
    """What to score (exactly one of model, images, baseline) and on which data; paths as the command line gives them."""

    model: str = None  # a .keras file, a run directory or a checkpoint
    images: str = None  # another method's outputs
    baseline: str = None  # a trivial baseline scored as the method
    data_root: str = None
    annotations: str = "annotations.csv"
    image_dir: str = "images"
    pairs: str = None
    tuples: str = None
    num_sources: list = None
    out: str = None
    limit: int = None
    allow_missing: bool = False
    batch_size: int = 16
    test_time_mirror: str = "model"  # "model" (as the generator file says), "on" or "off"
    inception_weights: str = None
    no_inception: bool = False
    random_inception: bool = False  # tests: same shapes, no weights
    fid_cache: str = None
    dataset: str = "auto"


@dataclasses.dataclass
class EvaluationReport:
    table: str  # ours, the baselines on the same pairs, published rows where they apply
    notes: list  # lines printed after the table
    metrics_path: str


class _Run:
    """The model's run: its config (None without one) and directory."""

    def __init__(self, model):
        self.directory = locate_model(model).run_dir if model else None
        config_path = files.join(self.directory, run_files.CONFIG) if model else None
        self.config = load_config(config_path) if config_path and files.is_file(config_path) else None


def _pairs_path(job, root, run):
    """The pair file scored: --pairs, else the run's held-out split/pairs-test.csv, else pairs-test.csv under the root."""
    if job.pairs is None and run.directory is not None:
        split_test = files.join(run.directory, run_files.SPLIT, "pairs-test.csv")
        if files.is_file(split_test):
            print(f"scoring the run's held-out identities: {split_test}", file=sys.stderr)  # the identities this run held out
            return split_test
    return files.join(root, job.pairs or "pairs-test.csv")


def _rows(job, root, run):
    """(rows, numbers of sources to score, the row file's path)."""
    if job.tuples:
        tuples_path = files.join(root, job.tuples)
        if not files.is_file(tuples_path):
            raise FileNotFoundError(f"tuple file {tuples_path} does not exist (set --tuples)")
        rows = read_tuples(tuples_path)
        available = min(len(sources) for sources, _ in rows) if rows else 0
        counts = job.num_sources or [available]
        if max(counts) > available:
            raise ValueError(f"{job.tuples} has {available} sources per row; cannot score M = {max(counts)}")
        return rows, counts, str(tuples_path)
    pairs_path = _pairs_path(job, root, run)
    if not files.is_file(pairs_path):
        raise FileNotFoundError(f"pair file {pairs_path} does not exist (set --pairs)")
    return [((source,), target) for source, target in read_pairs(pairs_path)], [None], str(pairs_path)


def _inception(job):
    """(network or None, its cache key), built before the long generation: a missing weights file fails fast."""
    if job.random_inception:
        print("warning: randomly initialised Inception (tests only): IS, mask-IS and FID are meaningless", file=sys.stderr)
        return build_inception(random_weights=True), "random"
    if job.no_inception:
        return None, "imagenet"
    return build_inception(job.inception_weights), "imagenet"


def _generated_folder(job, annotations, root, image_dir):
    """({name: ScoredSet} of another method's outputs, the pairs without an output)."""
    pairs_path = files.join(root, job.pairs or "pairs-test.csv")
    expected = None
    if files.is_file(pairs_path):
        expected = read_pairs(pairs_path)
    elif not job.allow_missing:
        raise FileNotFoundError(
            f"pair file {pairs_path} does not exist: --images is scored on the pairs of --pairs, so that a missing "
            "output is noticed (or --allow-missing scores whatever the folder holds)"
        )
    scored, missing = evaluate.read_generated_folder(job.images, annotations, image_dir, job.limit, expected, job.allow_missing)
    name = f"images ({len(missing)} of {len(missing) + len(scored)} pairs MISSING)" if missing else "images"
    return {name: scored}, missing


def _generated_sets(job, model, rows, counts, samples):
    """{name: ScoredSet}: the model's images (or a baseline's) for each number of sources."""
    sets = {}
    for count in counts:
        name = job.baseline or ("pairs" if count is None else f"M={count}")
        print(f"{'decoding' if job.baseline else 'generating'} {len(samples)} images ({name})", file=sys.stderr)
        sets[name] = evaluate.generate_set(model, samples, rows, job.batch_size, count, baseline=job.baseline)
    return sets


def run_evaluation(job):
    """Scores the job's sets, writes metrics.json, per_pair.csv and best_worst.png; returns the EvaluationReport."""
    run = _Run(job.model)
    mirror = None if job.test_time_mirror == "model" else job.test_time_mirror == "on"
    model = PoseTransfer.load(job.model, test_time_mirror=mirror) if job.model else None  # first: a broken model file is reported as such
    root = job.data_root or (run.config.data.root if run.config else "data/synthetic")
    annotation_path, image_dir = files.join(root, job.annotations), files.join(root, job.image_dir)
    if not files.is_file(annotation_path):
        raise FileNotFoundError(f"annotation file {annotation_path} does not exist (set --data-root / --annotations)")
    annotations = read_annotations(annotation_path)
    # Beside the run, except for the generator that ships with the package: nothing is written into an installation.
    out_dir = job.out or (files.join(run.directory, run_files.EVALUATION) if job.model and job.model != pretrained.NAME else run_files.EVALUATION)
    if job.dataset != "auto":
        dataset = convention(job.dataset)
    else:
        dataset = convention(run.config.data.dataset) if run.config is not None else guess_convention(annotations)
    # Published numbers go beside ours on the real benchmark only, not on the built-in synthetic people.
    synthetic = (run.config is not None and run.config.data.synthetic) or any("Synthetic" in name for name in annotations)
    real_market = dataset.name == "market" and "market" in f"{root} {annotation_path}".lower()
    show_published = job.dataset != "auto" or (not synthetic and (real_market or dataset.name == "deepfashion"))

    sets, missing = _generated_folder(job, annotations, root, image_dir) if job.images else ({}, [])
    if not job.images:
        rows, counts, row_file = _rows(job, root, run)
        rows = rows[: job.limit] if job.limit else rows
        # The model's image size; for a baseline, the data's own (the first target image's).
        samples = build_sample_set(rows, annotations, image_dir, model.image_size if model else None, "error", row_file)
    inception, inception_key = _inception(job)  # after the inputs are checked, before the long generation
    if not job.images:
        sets = _generated_sets(job, model, rows, counts, samples)
    metrics, baselines = {}, {}
    for name, scored_set in sets.items():
        print(f"scoring {len(scored_set)} pairs ({name})", file=sys.stderr)
        metrics[name], per_pair = evaluate.score(scored_set, inception, job.fid_cache, inception_key, dataset.mask_ssim)
        prefix = "" if len(sets) == 1 else f"{name.replace('=', '')}_"
        evaluate.write_report(out_dir, metrics[name], scored_set, per_pair, prefix)
        # Every set of pairs gets its own baselines (multi-shot sets share pairs, so one suffices).
        if not baselines:
            baselines = evaluate.baseline_metrics(scored_set, dataset.mask_ssim)
    report = metrics[next(iter(metrics))] if len(metrics) == 1 else {"by_num_sources": metrics}
    report["source"] = str(job.model or job.images or f"baseline: {job.baseline}")
    if model is not None:
        report["test_time_mirror"] = model.test_time_mirror
    if job.images:
        report["num_missing"] = len(missing)
        report["missing_pairs"] = [f"{source}___{target}" for source, target in missing]
    report["baselines"] = baselines
    metrics_path = evaluate.write_metrics(out_dir, report)
    notes = [DEEPFASHION_NOTE] if not dataset.mask_ssim else []
    notes += [INCEPTION_NOTE] if show_published and inception is not None else []
    table = evaluate.comparison_table(metrics, dataset.published if show_published else None, baselines, dataset.mask_ssim)
    return EvaluationReport(table, notes, metrics_path)
