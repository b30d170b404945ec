"""What several benchmarks share: request batches, a median timer, the synthetic held-out pairs.

Run the benchmarks from the repository's root as modules, e.g. ``python -m benchmarks.bench_render``.
"""

import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from pnr_tf.data.datasets import guess_convention
from pnr_tf.data.pipeline import pair_samples
from pnr_tf.data.synthetic import write_synthetic_dataset

REPOSITORY = Path(__file__).resolve().parents[1]


def requests(batch_size, height, width, seed=0):
    """serving_default inputs: random uint8 photos, keypoints inside the central 80 % of the image."""
    rng = np.random.default_rng(seed)
    size = np.array([height, width], dtype=np.float32)
    return {
        "source_image": rng.integers(0, 256, (batch_size, height, width, 3), dtype=np.uint8),
        "source_keypoints": (rng.uniform(0.1, 0.9, (batch_size, 18, 2)) * size).astype(np.float32),
        "target_keypoints": (rng.uniform(0.1, 0.9, (batch_size, 18, 2)) * size).astype(np.float32),
    }


def median_seconds(call, inputs, repeats):
    """The median of ``repeats`` calls of ``call(inputs)``, after one warm-up call."""
    call(inputs)  # warm-up: tracing, allocation, delegate set-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call(inputs)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def synthetic_pairs(generator):
    """Held-out pairs of the built-in synthetic people at the generator's image size."""
    root = Path(tempfile.mkdtemp()) / "synthetic"
    write_synthetic_dataset(root, num_identities=20, images_per_identity=6, dataset=guess_convention([], generator.contract.image_size).name)
    return pair_samples(root / "pairs-test.csv", root / "annotations.csv", root / "images", generator.contract.image_size)
