"""Training pairs per second from the supervised pipeline (decode + two heatmaps), printed.

    python -m benchmarks.bench_pipeline [--data DIR] [--batch-size 32] [--num-batches 100] [--workers N]

Uses ../shared/data/market_subset when present (real JPEGs), else a synthetic set it writes to a
temporary directory. Target: >= 300 pairs/s on a 2-core machine, so input never limits a step.

--workers N times each worker's input pipeline as the trainer builds it for N workers (its shard of
the pair list, rows i::N, decoded alone), one after the other, as each worker would run on its own
machine; beside it, what tf.data's DATA sharding (the fallback for an in-memory list: every worker
decodes every pair and keeps 1/N) would deliver per worker on the same machine.
"""

import argparse
import os
import tempfile
import time
from pathlib import Path

import pnr_tf  # noqa: F401, I001  (first: quiet TensorFlow start-up)  # isort: skip
import tensorflow as tf

from pnr_tf.data.pipeline import make_dataset
from pnr_tf.data.pipeline import pair_samples
from pnr_tf.data.synthetic import write_synthetic_dataset

SUBSET = Path(__file__).resolve().parents[2] / "shared" / "data" / "market_subset"


def pairs_per_second(dataset, batch_size, num_batches):
    iterator = iter(dataset)
    for _ in range(5):  # warm up the parallel map and prefetch
        next(iterator)
    start = time.perf_counter()
    for _ in range(num_batches):
        next(iterator)["target_pose"].numpy()
    return num_batches * batch_size / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=None, help="directory with images/, annotations.csv, pairs.csv")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--num-batches", type=int, default=100)
    parser.add_argument("--workers", type=int, default=1)
    arguments = parser.parse_args()
    data = Path(arguments.data) if arguments.data else SUBSET
    if not data.is_dir():
        data = Path(tempfile.mkdtemp()) / "synthetic"
        write_synthetic_dataset(data, num_identities=40, images_per_identity=8)
    samples = pair_samples(data / "pairs.csv", data / "annotations.csv", data / "images")
    print(f"data: {data} ({len(samples)} pairs), cores: {os.cpu_count()}, batch {arguments.batch_size}")
    whole = pairs_per_second(make_dataset(samples, arguments.batch_size), arguments.batch_size, arguments.num_batches)
    if arguments.workers == 1:
        print(f"pairs_per_second: {whole:.0f}")
        return
    for index in range(arguments.workers):
        context = tf.distribute.InputContext(num_input_pipelines=arguments.workers, input_pipeline_id=index)
        shard = samples.shard(context.num_input_pipelines, context.input_pipeline_id)
        rate = pairs_per_second(make_dataset(shard, arguments.batch_size), arguments.batch_size, arguments.num_batches)
        print(f"worker {index}: rows {index}::{arguments.workers} ({len(shard)} pairs), {rate:.0f} pairs/s decoded, all of them its own")
        print(f"worker_{index}_pairs_per_second: {rate:.0f}")
    print(f"DATA sharding instead (every worker decodes every pair, keeps 1/{arguments.workers}): {whole / arguments.workers:.0f} "
          f"of its own pairs/s per worker")  # fmt: skip


if __name__ == "__main__":
    main()
