"""Why TFLite float32 is slower than the SavedModel at batch 32: dynamic batch against a fixed one.

    python -m benchmarks.bench_tflite_batch [--config configs/market_supervised.yaml] [--batch-size 32]

Converts the same fresh model (speed does not depend on the weights) twice, serving_default only:
with the batch dimension dynamic (the default export) and fixed at --batch-size (`export --batch-size`).
Prints the ops of each model (XNNPACK's own log on stderr says how many nodes it took), and the
median time of a batch call for both and for the SavedModel, all in this one run.
"""

import argparse
import collections
import os
import sys
import tempfile
from pathlib import Path

import pnr_tf  # noqa: F401, I001  (first: quiet TensorFlow start-up)  # isort: skip
import tensorflow as tf
from ai_edge_litert.interpreter import Interpreter

from pnr_tf.config import load_config
from pnr_tf.export import export_saved_model
from pnr_tf.export.serving_module import SINGLE_SHOT
from pnr_tf.export.tflite import convert_to_tflite
from pnr_tf.models.factory import generator_from_config

from benchmarks.common import REPOSITORY
from benchmarks.common import median_seconds
from benchmarks.common import requests


def op_counts(flatbuffer):
    interpreter = Interpreter(model_content=flatbuffer, num_threads=os.cpu_count())
    return collections.Counter(op["op_name"] for op in interpreter._get_ops_details())


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(REPOSITORY / "configs" / "market_supervised.yaml"))
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    arguments = parser.parse_args(argv)

    generator = generator_from_config(load_config(arguments.config))
    height, width = generator.contract.image_size
    inputs = requests(arguments.batch_size, height, width)
    print(f"machine: {os.cpu_count()} cores, TF {tf.__version__}; {arguments.config}, batch {arguments.batch_size}", flush=True)

    workspace = Path(tempfile.mkdtemp())
    export_saved_model(generator, workspace, "pnr")
    saved = tf.saved_model.load(str(workspace / "pnr" / "1")).signatures["serving_default"]
    models = {
        "dynamic batch": convert_to_tflite(generator, "none", signatures=[SINGLE_SHOT]),
        f"fixed batch {arguments.batch_size}": convert_to_tflite(generator, "none", signatures=[SINGLE_SHOT], batch_size=arguments.batch_size),
    }
    results = {"saved_model": median_seconds(lambda _: saved(**inputs)["image"].numpy(), None, arguments.repeats)}
    for name, flatbuffer in models.items():
        counts = op_counts(flatbuffer)
        print(f"{name}: {sum(counts.values())} ops: " + ", ".join(f"{op} {count}" for op, count in counts.most_common()), flush=True)
        runner = Interpreter(model_content=flatbuffer, num_threads=os.cpu_count()).get_signature_runner("serving_default")
        results[name] = median_seconds(lambda _, runner=runner: runner(**inputs)["image"], None, arguments.repeats)
    for name, seconds in results.items():
        print(f"{name:20s} {arguments.batch_size / seconds:7.2f} images/s  ({seconds / results['saved_model']:.2f}x the SavedModel's time)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
