"""Training throughput and the quickstart learning curve, printed.

    python -m benchmarks.bench_train throughput [--batch-sizes 8 32] [--steps 3] [--config configs/market_supervised.yaml]
    python -m benchmarks.bench_train stages [--config configs/market_cpu.yaml] [--batch-size 8]
    python -m benchmarks.bench_train curve --run-dir runs/quickstart [--config configs/quickstart.yaml]

throughput: training images/s of a config's model (default market_supervised: base 64, N = 6, k = 32,
p = 1, both discriminators, perceptual loss on a randomly initialised VGG19 of the same shape) on
synthetic data of the config's dataset size, after one traced warm-up step; for each --precisions
(train.precision) in turn, with its speed over the first one's.

stages: forward + backward time of each part of the generator (the encoders, the regression, the
decoder) in its own tf.function, then the whole training step, medians.

curve: the run's validation curve (validation.jsonl: SSIM and L1 every train.validate_every steps,
with the baselines), then SSIM (PATN's arguments) and L1 on [-1, 1] on the held-out test pairs (the
run's split/pairs-test.csv, else pairs-test.csv of its data) for the untrained model (the run's seed
and config), the trained generator of the run, and the copy-source and mean-image baselines.
"""

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import pnr_tf  # noqa: F401, I001  (first: quiet TensorFlow start-up)  # isort: skip
import keras
import numpy as np
import tensorflow as tf

from pnr_tf.config import load_config
from pnr_tf.conventions import NUM_JOINTS
from pnr_tf.data.pipeline import pair_samples
from pnr_tf.data.synthetic import write_synthetic_dataset
from pnr_tf.models.factory import generator_from_config
from pnr_tf.models.loading import load_generator
from pnr_tf.precision import cpu_flags
from pnr_tf.training.run_splits import load_samples
from pnr_tf.training.trainer import Trainer
from pnr_tf.training.validation import Validator

from benchmarks.common import REPOSITORY
from benchmarks.common import median_seconds


def throughput(config_path, batch_sizes, steps, precisions=("float32",)):
    dataset = load_config(config_path).data.dataset
    root = Path(tempfile.mkdtemp()) / "synthetic"
    write_synthetic_dataset(root, num_identities=20, images_per_identity=6, dataset=dataset)
    flags = sorted(cpu_flags() & {"avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile"})
    print(f"machine: {os.cpu_count()} cores, {' '.join(flags) or 'no AVX2'}; model: {config_path} (random VGG19), synthetic {dataset}-size data")
    for batch_size in batch_sizes:
        first = None
        for precision in precisions:
            config = load_config(config_path, [f"data.root={root}", "data.annotation_file=annotations.csv", "data.pairs_file=pairs.csv",
                                               "data.image_dir=images", "data.validation_identities=0", "data.test_identities=0",
                                               f"train.batch_size={batch_size}", f"train.precision={precision}"])  # fmt: skip
            trainer = Trainer(config, tempfile.mkdtemp(), random_vgg=True)
            iterator = iter(trainer.dataset(load_samples(config), 0))
            start = time.perf_counter()
            trainer.train_step(next(iterator))
            trace_seconds = time.perf_counter() - start
            start = time.perf_counter()
            for _ in range(steps):
                trainer.train_step(next(iterator))
            seconds = (time.perf_counter() - start) / steps
            first = first or seconds
            print(f"batch {batch_size:3d} {precision:>14s} ({trainer.task.precision.policy}): {seconds:6.2f} s/step  {batch_size / seconds:6.2f} images/s"
                  f"  {first / seconds:4.2f}x  (first step with tracing {trace_seconds:.1f} s)", flush=True)  # fmt: skip
    print(f"peak resident memory: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 / 1024:.2f} GB")


def stages(config_path, batch_size, repeats):
    """Forward + backward time of each part of the generator in a training step, and the step itself.

    Each part runs in its own tf.function on the inputs it sees in a step (random images and
    heatmaps of the config's size), with the gradient of its output's sum taken with respect to its
    weights and its inputs; the whole step adds the L1 loss, Adam and the weight average.
    """
    config = load_config(config_path, [f"train.batch_size={batch_size}"])
    height, width = config.data.image_height, config.data.image_width
    generator = generator_from_config(config)
    rng = np.random.default_rng(0)
    images = tf.constant(rng.uniform(-1, 1, (batch_size, height, width, 3)), tf.float32)
    poses = tf.constant(rng.uniform(0, 1, (batch_size, height, width, NUM_JOINTS)), tf.float32)
    appearance = generator.appearance_encoder(images)
    pose_rows = generator.pose_encoder(poses)
    coefficients = generator.regression.estimate(appearance, pose_rows)
    feature_map = tf.reshape(generator.regression.predict(pose_rows, coefficients), [batch_size, -(-height // 4), -(-width // 4), -1])
    parts = {
        "appearance encoder (source)": (generator.appearance_encoder, lambda: generator.appearance_encoder(images, training=True), [images]),
        "pose encoder (a step runs it twice)": (generator.pose_encoder, lambda: generator.pose_encoder(poses, training=True), [poses]),
        "regression (estimate, predict)": (generator.regression, lambda: generator.regression(appearance, pose_rows, pose_rows), [appearance, pose_rows]),
        "decoder": (generator.decoder, lambda: generator.decoder(feature_map, training=True), [feature_map]),
    }  # fmt: skip
    print(f"machine: {os.cpu_count()} cores; model: {config_path}, batch {batch_size}; forward + backward, median of {repeats}")
    for name, (layer, forward, inputs) in parts.items():
        @tf.function
        def step(forward=forward, layer=layer, inputs=inputs):
            with tf.GradientTape() as tape:
                tape.watch(inputs)
                total = tf.reduce_sum(forward())
            return tape.gradient(total, [*layer.trainable_variables, *inputs])

        print(f"  {name:36s} {1e3 * median_seconds(lambda _: step(), None, repeats):7.1f} ms")
    root = Path(tempfile.mkdtemp()) / "synthetic"
    write_synthetic_dataset(root, num_identities=10, images_per_identity=4, dataset=config.data.dataset)
    config = load_config(config_path, [f"data.root={root}", "data.annotation_file=annotations.csv", "data.pairs_file=pairs.csv",
                                       "data.image_dir=images", "data.validation_identities=0", "data.test_identities=0",
                                       f"train.batch_size={batch_size}"])  # fmt: skip
    trainer = Trainer(config, tempfile.mkdtemp(), random_vgg=True)
    iterator = iter(trainer.dataset(load_samples(config), 0))
    print(f"  {'whole training step':36s} {1e3 * median_seconds(lambda _: trainer.train_step(next(iterator)), None, repeats):7.1f} ms")


def curve(run_dir, config_path):
    """The run's validation curve (validation.jsonl), then held-out test pairs: untrained, trained, baselines."""
    run_dir = Path(run_dir)
    config = load_config(run_dir / "config.yaml" if (run_dir / "config.yaml").is_file() else config_path)
    data = config.data
    log = run_dir / "validation.jsonl"
    if log.is_file():
        lines = [json.loads(line) for line in log.read_text().splitlines()]
        print(f"validation curve ({lines[0]['pairs']} pairs of data.validation_pairs), SSIM / L1:")
        for name, values in lines[0]["baselines"].items():
            print(f"  baseline {name:12s} SSIM {values['ssim']:.4f}  L1 {values['l1']:.4f}")
        for line in lines[1:]:
            print(f"  step {line['step']:6d}          SSIM {line['ssim']:.4f}  L1 {line['l1']:.4f}")
    test_pairs = run_dir / "split" / "pairs-test.csv"
    test_pairs = test_pairs if test_pairs.is_file() else data.path("pairs-test.csv")
    samples = pair_samples(test_pairs, data.path(data.annotation_file), data.path(data.image_dir), (data.image_height, data.image_width))
    validator = Validator(samples, (data.image_height, data.image_width))
    keras.utils.set_random_seed(config.train.seed)
    untrained = generator_from_config(config)
    trained = load_generator(run_dir)
    print(f"held-out test pairs: {len(validator)} ({test_pairs}); run: {run_dir}")
    rows = {"untrained": validator.score(untrained), "trained": validator.score(trained)}
    rows |= {f"baseline {name}": values for name, values in validator.baselines().items()}
    for name, values in rows.items():
        print(f"  {name:22s} SSIM {values['ssim']:.4f}  L1 {values['l1']:.4f}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    speed = commands.add_parser("throughput")
    speed.add_argument("--batch-sizes", type=int, nargs="+", default=[8, 32])
    speed.add_argument("--steps", type=int, default=3)
    speed.add_argument("--precisions", nargs="+", default=["float32", "auto"], help="train.precision values, compared with the first")
    speed.add_argument("--config", default=str(REPOSITORY / "configs" / "market_supervised.yaml"),
                       help="e.g. configs/deepfashion_supervised.yaml for 256 x 176")  # fmt: skip
    parts = commands.add_parser("stages")
    parts.add_argument("--batch-size", type=int, default=8)
    parts.add_argument("--repeats", type=int, default=20)
    parts.add_argument("--config", default=str(REPOSITORY / "configs" / "market_cpu.yaml"))
    learning = commands.add_parser("curve")
    learning.add_argument("--run-dir", default="runs/quickstart")
    learning.add_argument("--config", default=str(REPOSITORY / "configs" / "quickstart.yaml"))
    arguments = parser.parse_args()
    if arguments.command == "throughput":
        throughput(arguments.config, arguments.batch_sizes, arguments.steps, arguments.precisions)
    elif arguments.command == "stages":
        stages(arguments.config, arguments.batch_size, arguments.repeats)
    else:
        curve(arguments.run_dir, arguments.config)
    return 0


if __name__ == "__main__":
    sys.exit(main())
