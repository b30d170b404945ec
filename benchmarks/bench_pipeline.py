"""Training pairs per second from the supervised pipeline (decode + two heatmaps), printed.

    python benchmarks/bench_pipeline.py [--data DIR] [--batch-size 32] [--num-batches 100]

Uses ../shared/data/market_subset when present (real JPEGs), else a synthetic set it writes to a
temporary directory. Target: >= 300 pairs/s on a 2-core machine, so input never limits a step.
"""

import argparse
import os
import tempfile
import time
from pathlib import Path

from pnr_tf.data.pipeline import make_dataset
from pnr_tf.data.pipeline import pair_samples
from pnr_tf.data.synthetic import write_synthetic_dataset

SUBSET = Path(__file__).resolve().parents[2] / "shared" / "data" / "market_subset"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=None, help="directory with images/, annotations.csv, pairs.csv")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--num-batches", type=int, default=100)
    arguments = parser.parse_args()
    data = Path(arguments.data) if arguments.data else SUBSET
    if not data.is_dir():
        data = Path(tempfile.mkdtemp()) / "synthetic"
        write_synthetic_dataset(data, num_identities=40, images_per_identity=8)
    samples = pair_samples(data / "pairs.csv", data / "annotations.csv", data / "images")
    iterator = iter(make_dataset(samples, arguments.batch_size))
    for _ in range(5):  # warm up the parallel map and prefetch
        next(iterator)
    start = time.perf_counter()
    for _ in range(arguments.num_batches):
        batch = next(iterator)
        batch["target_pose"].numpy()
    seconds = time.perf_counter() - start
    print(f"data: {data} ({len(samples)} pairs), cores: {os.cpu_count()}, batch {arguments.batch_size}")
    print(f"pairs_per_second: {arguments.num_batches * arguments.batch_size / seconds:.0f}")


if __name__ == "__main__":
    main()
