"""Training throughput and the quickstart learning curve, printed.

    python benchmarks/bench_train.py throughput [--batch-sizes 8 32] [--steps 3]
    python benchmarks/bench_train.py curve --run-dir runs/quickstart [--config configs/quickstart.yaml]

throughput: training images/s of the market_supervised model (base 64, N = 6, k = 32, p = 1, both
discriminators, perceptual loss on a randomly initialised VGG19 of the same shape) on synthetic
128 x 64 data, after one traced warm-up step.

curve: SSIM (PATN's arguments via scikit-image: gaussian weights, sigma 1.5, no sample covariance,
uint8, data_range of the generated image) and L1 on the held-out synthetic pairs (pairs-test.csv),
for the untrained model (the run's seed and config) and the trained generator.keras of the run.
"""

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import keras
import numpy as np

import pnr_tf  # noqa: F401
from pnr_tf.config import load_config
from pnr_tf.data.pipeline import make_dataset
from pnr_tf.data.pipeline import pair_samples
from pnr_tf.data.synthetic import write_synthetic_dataset
from pnr_tf.models.factory import build_generator
from pnr_tf.training.trainer import Trainer
from pnr_tf.training.trainer import load_samples

REPOSITORY = Path(__file__).resolve().parents[1]


def throughput(batch_sizes, steps):
    root = Path(tempfile.mkdtemp()) / "synthetic"
    write_synthetic_dataset(root, num_identities=20, images_per_identity=6)
    print(f"machine: {os.cpu_count()} cores; model: configs/market_supervised.yaml (random VGG19)")
    for batch_size in batch_sizes:
        config = load_config(REPOSITORY / "configs" / "market_supervised.yaml", [f"data.root={root}", "data.annotation_file=annotations.csv", "data.pairs_file=pairs.csv", "data.image_dir=images", f"train.batch_size={batch_size}"])
        trainer = Trainer(config, tempfile.mkdtemp(), random_vgg=True)
        iterator = iter(trainer._dataset(load_samples(config), 0))
        step = trainer._distributed_step_function()
        start = time.perf_counter()
        float(step(next(iterator))["l1"])
        trace_seconds = time.perf_counter() - start
        start = time.perf_counter()
        for _ in range(steps):
            float(step(next(iterator))["l1"])
        seconds = (time.perf_counter() - start) / steps
        print(f"batch {batch_size:3d}: {seconds:6.2f} s/step  {batch_size / seconds:6.2f} images/s  (first step with tracing {trace_seconds:.1f} s)")


def score(generator, samples, batch_size=16):
    """Mean SSIM (PATN's arguments) and mean L1 over every pair of the sample set."""
    from skimage.metrics import structural_similarity

    ssim_values, l1_values = [], []
    dataset = make_dataset(samples, batch_size, shuffle=False, repeat=False, drop_remainder=False)
    for batch in dataset:
        inputs = {name: batch[name] for name in ("source_image", "source_pose", "target_pose")}
        generated = np.asarray(generator(inputs, training=False))
        target = batch["target_image"].numpy()
        l1_values.extend(np.abs(generated - target).mean(axis=(1, 2, 3)))
        for generated_image, target_image in zip(generated, target):
            generated_uint8 = ((generated_image + 1) * 127.5).round().clip(0, 255).astype(np.uint8)
            target_uint8 = ((target_image + 1) * 127.5).round().clip(0, 255).astype(np.uint8)
            data_range = float(generated_uint8.max()) - float(generated_uint8.min())
            ssim_values.append(
                structural_similarity(
                    target_uint8, generated_uint8, gaussian_weights=True, sigma=1.5,
                    use_sample_covariance=False, channel_axis=-1, data_range=max(data_range, 1.0),
                )  # fmt: skip
            )
    return float(np.mean(ssim_values)), float(np.mean(l1_values))


def curve(run_dir, config_path):
    run_dir = Path(run_dir)
    config = load_config(run_dir / "config.yaml" if (run_dir / "config.yaml").is_file() else config_path)
    data = config.data
    samples = pair_samples(data.path("pairs-test.csv"), data.path(data.annotation_file), data.path(data.image_dir))
    keras.utils.set_random_seed(config.train.seed)
    untrained = build_generator(config.model, config.train.row_keep_probability, seed=config.train.seed)
    trained = keras.models.load_model(run_dir / "generator.keras")
    print(f"held-out pairs: {len(samples)} ({data.root}/pairs-test.csv); run: {run_dir}")
    for name, generator in (("untrained", untrained), ("trained", trained)):
        ssim, l1 = score(generator, samples)
        print(f"{name:9s} SSIM {ssim:.4f}  L1 {l1:.4f}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    speed = commands.add_parser("throughput")
    speed.add_argument("--batch-sizes", type=int, nargs="+", default=[8, 32])
    speed.add_argument("--steps", type=int, default=3)
    learning = commands.add_parser("curve")
    learning.add_argument("--run-dir", default="runs/quickstart")
    learning.add_argument("--config", default=str(REPOSITORY / "configs" / "quickstart.yaml"))
    arguments = parser.parse_args()
    if arguments.command == "throughput":
        throughput(arguments.batch_sizes, arguments.steps)
    else:
        curve(arguments.run_dir, arguments.config)
    return 0


if __name__ == "__main__":
    sys.exit(main())
