"""bfloat16 against float32 on this CPU: serving speed, agreement of the pictures, and training memory, printed.

    python -m benchmarks.bench_precision serving [--config configs/market_supervised.yaml] [--batch-size 32] [--repeats 5]
    python -m benchmarks.bench_precision agreement --model pretrained --data-root ../shared/data/market_subset [--pairs FILE]
    python -m benchmarks.bench_precision memory [--config configs/market_cpu.yaml] [--batch-size 32]

serving: the SavedModel's serving_default, exported in float32 and with ``--precision bfloat16``, on
random requests: latency at batch 1 (median of --repeats calls) and images/s at --batch-size, and
their ratio. Speed does not depend on the weights: fresh models of the config are timed.

agreement: a trained model's pictures drawn in float32 and in bfloat16 on held-out pairs (the run's
split/pairs-test.csv, or --pairs under --data-root): SSIM of each bfloat16 picture to its float32
twin (mean and the worst), and each precision's SSIM and mask-SSIM to the real targets.

memory: the peak resident memory of a process that traces and runs training steps at --batch-size,
once per precision (each in its own process, so the peaks do not mix).
"""

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pnr_tf  # noqa: F401, I001  (first: quiet TensorFlow start-up)  # isort: skip
import numpy as np
import tensorflow as tf

from pnr_tf import files
from pnr_tf.config import load_config
from pnr_tf.data.pipeline import decoded_batches
from pnr_tf.data.pipeline import pair_samples
from pnr_tf.evaluation.evaluate import pair_scores
from pnr_tf.evaluation.ssim import body_masks
from pnr_tf.evaluation.ssim import ssim_scores
from pnr_tf.export import export_saved_model
from pnr_tf.inference import PoseTransfer
from pnr_tf.models.factory import generator_from_config
from pnr_tf.models.generator import copy_generator
from pnr_tf.models.loading import load_generator
from pnr_tf.models.loading import locate_model
from pnr_tf.precision import cpu_flags

from benchmarks.common import REPOSITORY
from benchmarks.common import median_seconds
from benchmarks.common import requests

PRECISION_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")


def machine():
    flags = " ".join(sorted(cpu_flags() & set(PRECISION_FLAGS))) or "no AVX2"
    return f"{os.cpu_count()} cores, {flags}"


def serving(config_path, batch_size, repeats):
    generator = generator_from_config(load_config(config_path))
    height, width = generator.contract.image_size
    print(f"machine: {machine()}; model: {config_path} ({generator.count_params():,} parameters), SavedModel serving_default")
    single, batch = requests(1, height, width), requests(batch_size, height, width, seed=1)
    results = {}
    for precision, model in (("float32", generator), ("bfloat16", copy_generator(generator, dtype_policy="mixed_bfloat16"))):
        workspace = Path(tempfile.mkdtemp())
        export_saved_model(model, workspace, "pnr")
        signature = tf.saved_model.load(str(workspace / "pnr" / "1")).signatures["serving_default"]
        call = lambda inputs, signature=signature: signature(**inputs)["image"].numpy()  # noqa: E731
        latency = median_seconds(call, single, repeats)
        throughput = batch_size / median_seconds(call, batch, max(2, repeats // 2))
        results[precision] = (latency, throughput)
        print(f"  {precision:9s} latency b=1 {latency * 1e3:8.1f} ms   {throughput:7.2f} images/s at b={batch_size}", flush=True)
    (latency32, throughput32), (latency16, throughput16) = results["float32"], results["bfloat16"]
    print(f"  bfloat16 over float32: latency {latency32 / latency16:.2f}x faster, throughput {throughput16 / throughput32:.2f}x")


def agreement(model, data_root, pairs):
    generator = load_generator(model)
    size = generator.contract.image_size
    location = locate_model(model)
    split = files.join(location.run_dir, "split", "pairs-test.csv")
    pairs_path = files.join(data_root, pairs) if pairs else split
    samples = pair_samples(pairs_path, files.join(data_root, "annotations.csv"), files.join(data_root, "images"), size)
    batches = list(decoded_batches(samples, 32, size))
    inputs = [np.concatenate([batch[name] for batch in batches]) for name in ("source_images", "source_keypoints", "target_keypoints")]
    targets = np.concatenate([batch["target_images"] for batch in batches])
    drawn = {"float32": PoseTransfer(generator).generate(*inputs),
             "bfloat16": PoseTransfer(copy_generator(generator, dtype_policy="mixed_bfloat16")).generate(*inputs)}  # fmt: skip
    twins = ssim_scores(drawn["float32"], drawn["bfloat16"])
    print(f"machine: {machine()}; model: {model}; {len(targets)} held-out pairs ({pairs_path})")
    print(f"  SSIM of bfloat16 to float32 pictures: mean {twins.mean():.4f}, worst {twins.min():.4f}")
    masks = body_masks(inputs[2], *size)
    for precision, images in drawn.items():
        scores = pair_scores(targets, images, masks)
        print(f"  {precision:9s} to the real targets: SSIM {scores['ssim'].mean():.4f}  mask-SSIM {scores['mask_ssim'].mean():.4f}")


def memory(config_path, batch_size, precisions):
    print(f"machine: {machine()}; model: {config_path}, batch {batch_size}: peak resident memory of a training process")
    for precision in precisions:
        command = [sys.executable, "-m", "benchmarks.bench_train", "throughput", "--config", str(config_path), "--batch-sizes",
                   str(batch_size), "--steps", "3", "--precisions", precision]  # fmt: skip
        printed = subprocess.run(command, check=True, cwd=REPOSITORY, capture_output=True, text=True).stdout.splitlines()
        steps = [line for line in printed if line.startswith("batch")]
        peak = [line for line in printed if line.startswith("peak resident memory")]
        print(f"  {precision:15s} {peak[-1].split(': ', 1)[1]}; {steps[-1].split(': ', 1)[1]}", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    speed = commands.add_parser("serving")
    speed.add_argument("--config", default=str(REPOSITORY / "configs" / "market_supervised.yaml"))
    speed.add_argument("--batch-size", type=int, default=32)
    speed.add_argument("--repeats", type=int, default=5)
    agree = commands.add_parser("agreement")
    agree.add_argument("--model", required=True)
    agree.add_argument("--data-root", required=True)
    agree.add_argument("--pairs", default=None, help="a pair file under --data-root (default: the model's split/pairs-test.csv)")
    peak = commands.add_parser("memory")
    peak.add_argument("--config", default=str(REPOSITORY / "configs" / "market_cpu.yaml"))
    peak.add_argument("--batch-size", type=int, default=32)
    peak.add_argument("--precisions", nargs="+", default=["float32"])
    arguments = parser.parse_args()
    if arguments.command == "serving":
        serving(arguments.config, arguments.batch_size, arguments.repeats)
    elif arguments.command == "agreement":
        agreement(arguments.model, arguments.data_root, arguments.pairs)
    else:
        memory(arguments.config, arguments.batch_size, arguments.precisions)
    return 0


if __name__ == "__main__":
    sys.exit(main())
