"""Where TFLite float32 loses to TensorFlow at batch 32: each stage of the generator timed in both.

    python -m benchmarks.bench_tflite_layers [--config configs/market_supervised.yaml] [--batch-size 32]

Fresh weights (speed does not depend on them). Every convolution stage of E_a, E_p and the decoder is
frozen (batch norm folds into its convolution, as in the exported model) and converted alone at a fixed
batch, then timed as a tf.function and in the TFLite interpreter (XNNPACK, all cores); the same for the
regression (estimate W, predict A_t: TensorFlow with its stock Cholesky, as the SavedModel runs it,
and the fused kernel; TFLite with the unrolled solves it exports) and for the keypoint heatmaps.
Medians of --repeats calls, all in one run. Ends with the machine-readable lines
`convolutions_tflite_over_tf: X` and `regression_tflite_over_saved_model: X`.

`--kernels-only` times just plain convolutions (3 x 3 and 1 x 1, 256 -> 256, the residual blocks'
size) in both runtimes and prints their GFLOP/s: the floor that the float32 kernels themselves
(XNNPACK against oneDNN) set for the whole model's ratio.
"""

import argparse
import os
import sys

import pnr_tf  # noqa: F401, I001  (first: quiet TensorFlow start-up)  # isort: skip
import numpy as np
import tensorflow as tf
from ai_edge_litert.interpreter import Interpreter
from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

from pnr_tf.config import load_config
from pnr_tf.data.keypoints import keypoints_to_heatmaps
from pnr_tf.export.serving_module import with_solver
from pnr_tf.models.factory import generator_from_config

from benchmarks.common import REPOSITORY
from benchmarks.common import median_seconds


def convolution_stages(generator, batch_size):
    """(name, layer, input shape) for every stage of E_a, E_p and the decoder, in running order."""
    height, width = generator.contract.image_size
    encoders = (("appearance", generator.appearance_encoder, 3), ("pose", generator.pose_encoder, 18))
    for prefix, encoder, channels in encoders:
        shape = (batch_size, height, width, channels)
        for layer in encoder.trunk_layers():
            yield f"{prefix}.{layer.name}", layer, shape
            shape = tuple(layer.compute_output_shape(shape))
    decoder = generator.decoder
    shape = (batch_size, -(-height // 4), -(-width // 4), decoder.input_dim)
    for layer in decoder.stages():
        yield f"decoder.{layer.name}", layer, shape
        shape = tuple(layer.compute_output_shape(shape))


def tflite_call(function, specs):
    """A callable running ``function`` (frozen, converted to TFLite builtins) on NumPy inputs."""
    frozen = convert_variables_to_constants_v2(function.get_concrete_function(*specs))
    interpreter = Interpreter(model_content=tf.lite.TFLiteConverter.from_concrete_functions([frozen]).convert(), num_threads=os.cpu_count())
    interpreter.allocate_tensors()
    inputs, output = interpreter.get_input_details(), interpreter.get_output_details()[0]["index"]

    def call(arrays):
        for detail, array in zip(inputs, arrays):
            interpreter.set_tensor(detail["index"], array)
        interpreter.invoke()
        return interpreter.get_tensor(output)

    return call


def convolution_function(kernel):
    # The kernel is captured, so the converter stores it as a constant that XNNPACK packs once (as a
    # default argument it became a model input, which TFLite ran at a tenth of the speed).
    return tf.function(lambda inputs: tf.nn.conv2d(inputs, kernel, 1, "SAME"))


def plain_convolution_rates(batch_size, repeats):
    """(name, TF GFLOP/s, TFLite GFLOP/s) for bare convolutions of the residual blocks' shape."""
    random = np.random.default_rng(0)
    for kernel_size, height, width in ((3, 32, 16), (1, 32, 16), (3, 64, 32)):
        kernel = tf.constant(random.standard_normal((kernel_size, kernel_size, 256, 256)).astype(np.float32) * 0.05)
        function = convolution_function(kernel)
        shape = (batch_size, height, width, 256)
        features = random.standard_normal(shape).astype(np.float32)
        flops = 2.0 * batch_size * height * width * kernel_size * kernel_size * 256 * 256
        tf_seconds = median_seconds(lambda arrays: function(*arrays).numpy(), [features], repeats)
        tflite_seconds = median_seconds(tflite_call(function, [tf.TensorSpec(shape, tf.float32)]), [features], repeats)
        yield f"conv {kernel_size}x{kernel_size} 256->256 on {shape}", flops / tf_seconds / 1e9, flops / tflite_seconds / 1e9


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(REPOSITORY / "configs" / "market_supervised.yaml"))
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--kernels-only", action="store_true", help="only the plain convolutions' GFLOP/s")
    arguments = parser.parse_args(argv)
    if arguments.kernels_only:
        for name, tf_rate, tflite_rate in plain_convolution_rates(arguments.batch_size, arguments.repeats):
            print(f"{name:40s} TF {tf_rate:6.0f} GFLOP/s, TFLite (XNNPACK) {tflite_rate:6.0f} GFLOP/s, "
                  f"TFLite time / TF time {tf_rate / tflite_rate:.2f}", flush=True)  # fmt: skip
        return 0
    generator = generator_from_config(load_config(arguments.config))
    random = np.random.default_rng(0)
    print(f"machine: {os.cpu_count()} cores, TF {tf.__version__}; {arguments.config}, batch {arguments.batch_size}", flush=True)
    print(f"{'stage':28s} {'input':>22s} {'TF (ms)':>9s} {'TFLite (ms)':>12s} {'ratio':>6s}", flush=True)

    totals = {"tf": 0.0, "tflite": 0.0}
    for name, layer, shape in convolution_stages(generator, arguments.batch_size):
        features = random.random(shape, dtype=np.float32)
        function = tf.function(lambda inputs, layer=layer: layer(inputs, training=False))
        tf_seconds = median_seconds(lambda arrays: function(*arrays).numpy(), [features], arguments.repeats)
        tflite_seconds = median_seconds(tflite_call(function, [tf.TensorSpec(shape, tf.float32)]), [features], arguments.repeats)
        totals["tf"] += tf_seconds
        totals["tflite"] += tflite_seconds
        print(f"{name:28s} {str(shape):>22s} {tf_seconds * 1e3:9.1f} {tflite_seconds * 1e3:12.1f} {tflite_seconds / tf_seconds:6.2f}", flush=True)
    convolution_ratio = totals["tflite"] / totals["tf"]
    print(f"{'all convolution stages':28s} {'':>22s} {totals['tf'] * 1e3:9.1f} {totals['tflite'] * 1e3:12.1f} {convolution_ratio:6.2f}", flush=True)

    # The regression: estimate W from the source rows, predict the target rows.
    batch, height, width = arguments.batch_size, *generator.contract.image_size
    row_count = -(-height // 4) * -(-width // 4)
    pose_dim, appearance_dim = generator.pose_encoder.pose_dim, generator.appearance_encoder.output_dim
    arrays = [random.standard_normal((batch, row_count, dim), dtype=np.float32) for dim in (appearance_dim, pose_dim, pose_dim)]
    specs = [tf.TensorSpec(array.shape, tf.float32) for array in arrays]
    regression_seconds = {}
    for solver in ("cholesky", "fused", "matmul"):
        regression = with_solver(generator, solver).regression
        function = tf.function(lambda *inputs, regression=regression: regression(*inputs))
        try:
            regression_seconds[f"TF {solver}"] = median_seconds(lambda arrays, function=function: function(*arrays).numpy(), arrays, arguments.repeats)
        except (RuntimeError, ValueError, tf.errors.OpError) as error:  # the fused kernel may not build on this host
            print(f"regression, TF {solver}: unavailable ({error})", flush=True)
    exported = with_solver(generator, "matmul").regression  # what convert_to_tflite puts in the model
    function = tf.function(lambda *inputs: exported(*inputs))
    regression_seconds["TFLite matmul (exported)"] = median_seconds(tflite_call(function, specs), arrays, arguments.repeats)
    for name, seconds in regression_seconds.items():
        print(f"regression (p={generator.regression.p}), {name:24s} {seconds * 1e3:9.1f} ms", flush=True)

    keypoints = (random.random((batch, 18, 2)) * [height, width]).astype(np.float32)
    function = tf.function(lambda points: keypoints_to_heatmaps(points, height, width))
    heatmap_tf = median_seconds(lambda arrays: function(*arrays).numpy(), [keypoints], arguments.repeats)
    heatmap_tflite = median_seconds(tflite_call(function, [tf.TensorSpec(keypoints.shape, tf.float32)]), [keypoints], arguments.repeats)
    print(f"heatmaps: TF {heatmap_tf * 1e3:.1f} ms, TFLite {heatmap_tflite * 1e3:.1f} ms", flush=True)

    print(f"convolutions_tflite_over_tf: {convolution_ratio:.2f}")
    print(f"regression_tflite_over_saved_model: {regression_seconds['TFLite matmul (exported)'] / regression_seconds['TF cholesky']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
