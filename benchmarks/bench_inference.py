"""Inference speed of every deployment path in one run, printed.

    python benchmarks/bench_inference.py [--model runs/x/generator.keras] [--config configs/market_supervised.yaml]
                                         [--repeats 5] [--batch-size 32]

Every path does the same work: uint8 photo + keypoints in, uint8 image out (heatmaps in-graph).
Paths: Keras (the generator in a tf.function, no export), SavedModel (tf.saved_model.load),
TFLite float32 / float16 / dynamic_range (ai_edge_litert, its default XNNPACK delegate, 2 threads),
and gRPC (client -> dev server on localhost, SavedModel behind it). Latency is the median of
``--repeats`` single-image calls; throughput is images/s of the median batch call. Without --model a
freshly built model of the config's shape is timed (speed does not depend on the weights).
"""

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pnr_tf  # noqa: F401  (first: quiet TensorFlow start-up)
import numpy as np
import tensorflow as tf
from ai_edge_litert.interpreter import Interpreter

from pnr_tf.config import load_config
from pnr_tf.export import export_saved_model
from pnr_tf.export.tflite import convert_to_tflite
from pnr_tf.inference import PoseTransfer
from pnr_tf.models.factory import built_generator
from pnr_tf.models.loading import load_generator
from pnr_tf.serving.client import GeneratorClient
from pnr_tf.serving.dev_server import serve

REPOSITORY = Path(__file__).resolve().parents[1]


def requests(batch_size, height, width, seed=0):
    rng = np.random.default_rng(seed)
    size = np.array([height, width], dtype=np.float32)
    return {
        "source_image": rng.integers(0, 256, (batch_size, height, width, 3), dtype=np.uint8),
        "source_keypoints": (rng.uniform(0, 1, (batch_size, 18, 2)) * size).astype(np.float32),
        "target_keypoints": (rng.uniform(0, 1, (batch_size, 18, 2)) * size).astype(np.float32),
    }


def median_seconds(call, inputs, repeats):
    call(inputs)  # warm-up: tracing, allocation, delegate set-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call(inputs)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None)
    parser.add_argument("--config", default=str(REPOSITORY / "configs" / "market_supervised.yaml"))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=32)
    arguments = parser.parse_args(argv)

    if arguments.model:
        generator = load_generator(arguments.model)
        description = arguments.model
    else:
        generator = built_generator(load_config(arguments.config))
        description = f"{arguments.config} (fresh weights)"
    height, width = generator.contract.image_size
    print(f"machine: {os.cpu_count()} cores, TF {tf.__version__}; model: {description}, {height} x {width}, "
          f"{generator.count_params():,} parameters")  # fmt: skip

    workspace = Path(tempfile.mkdtemp())
    keras_function = tf.function(PoseTransfer(generator).single_shot)
    export_saved_model(generator, workspace, "pnr")
    saved_model = tf.saved_model.load(str(workspace / "pnr" / "1")).signatures["serving_default"]
    paths = {
        "keras (tf.function)": lambda inputs: keras_function(**inputs)["image"].numpy(),
        "saved_model": lambda inputs: saved_model(**inputs)["image"].numpy(),
    }
    for quantize in ("none", "float16", "dynamic_range"):
        start = time.perf_counter()
        flatbuffer = convert_to_tflite(generator, quantize)
        print(f"tflite {quantize}: {len(flatbuffer) / 1e6:.1f} MB, converted in {time.perf_counter() - start:.0f} s")
        runner = Interpreter(model_content=flatbuffer, num_threads=os.cpu_count()).get_signature_runner("serving_default")
        paths[f"tflite {quantize}"] = lambda inputs, runner=runner: runner(**inputs)["image"]
    server, port, _ = serve(workspace / "pnr", port=0, host="localhost")
    client = GeneratorClient(f"localhost:{port}", timeout=600)
    paths["grpc (dev server)"] = lambda inputs: client.predict(inputs)["image"]

    single, batch = requests(1, height, width), requests(arguments.batch_size, height, width, seed=1)
    print(f"{'path':22s} {'latency b=1 (ms)':>17s} {f'images/s b={arguments.batch_size}':>15s}")
    results = {}
    for name, call in paths.items():
        latency = median_seconds(call, single, arguments.repeats)
        throughput = arguments.batch_size / median_seconds(call, batch, max(2, arguments.repeats // 2))
        results[name] = (latency, throughput)
        print(f"{name:22s} {latency * 1e3:17.1f} {throughput:15.2f}", flush=True)
    client.close()
    server.stop(grace=None)
    reference = results["saved_model"]
    print("ratios to saved_model (latency, throughput): " + ", ".join(
        f"{name} {latency / reference[0]:.2f} {throughput / reference[1]:.2f}" for name, (latency, throughput) in results.items()
    ))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
