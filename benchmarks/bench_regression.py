"""Throughput of PNormRegression(p=1, num_iterations=5) against a plain float32 GEMM, in one run.

    python -m benchmarks.bench_regression [--repeats 10] [--breakdown] [--solver fused|cholesky|matmul]

Prints ms and GFLOP/s for the forward and forward+backward pass at b=8, n=512, d=256 and k=16, 32,
64, the GFLOP/s of a 2048^3 tf.matmul measured in the same process at the start and the end, and the
ratios to the faster of those two. With the fused kernel (the default, pnr_tf.ops.packed_cholesky)
it also times k=32 on the stock kernels (solver="cholesky"), for the speed-up within one run. The last line is ``fwd_bwd_ratio_to_gemm: R`` for
k=32. ``--breakdown`` first times the parts of one forward IRLS iteration at k=32, each as its own
call (so each includes a call and a copy of its output, and the parts add up to more than the
whole iteration, where the graph overlaps some of them).

FLOP model (multiply-add = 2 FLOPs, LAPACK conventions, symmetric Gram counted once):
  least squares  2nk^2 + 2nkd + k^3/3 + 2k^2 d
  IRLS iteration 2nkd (residual) + 2nd k(k+1)/2 (packed Gram GEMM) + 2nkd (rhs) + d (k^3/3 + 2k^2)
  prediction     2 n k d
  backward       2 x (last IRLS iteration + prediction), the usual backward ~ 2 x forward rule
                 applied to the part the gradient flows through.
"""

import argparse
import os
import time

import pnr_tf  # noqa: F401, I001  (first: quiet TensorFlow start-up)  # isort: skip
import numpy as np
import tensorflow as tf

from pnr_tf.layers.regression import ABSOLUTE_RIDGE_FLOOR
from pnr_tf.layers.regression import PNormRegression
from pnr_tf.ops import packed_cholesky
from pnr_tf.ops import symmetric_solve
from pnr_tf.ops.solvers import describe_solver


def regression_flops(batch_size, num_rows, appearance_dim, pose_dim, num_iterations):
    n, d, k = num_rows, appearance_dim, pose_dim
    least_squares = 2 * n * k * k + 2 * n * k * d + k**3 / 3 + 2 * k * k * d
    iteration = 4 * n * k * d + n * d * k * (k + 1) + d * (k**3 / 3 + 2 * k * k)
    prediction = 2 * n * k * d
    forward = least_squares + num_iterations * iteration + prediction
    backward = 2 * (iteration + prediction)
    return batch_size * forward, batch_size * (forward + backward)


def median_seconds(function, arguments, repeats):
    function(*arguments)  # trace and warm up
    timings = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = function(*arguments)
        tf.nest.map_structure(lambda tensor: tensor.numpy(), result)
        timings.append(time.perf_counter() - start)
    return float(np.median(timings))


def gemm_gflops(repeats, size=2048):
    matrix = tf.random.uniform((size, size))
    seconds = median_seconds(tf.function(tf.matmul), (matrix, matrix), repeats)
    return 2 * size**3 / seconds / 1e9


def measure_regression(batch_size, num_rows, appearance_dim, pose_dim, repeats, solver):
    rng = np.random.default_rng(0)
    appearance = tf.constant(rng.normal(size=(batch_size, num_rows, appearance_dim)).astype(np.float32))
    pose = tf.constant(rng.normal(size=(batch_size, num_rows, pose_dim)).astype(np.float32))
    ridge = 1e-2 if pose_dim >= 64 else 1e-3  # SPEC.md: ridge 1e-2 for k = 64
    layer = PNormRegression(p=1, num_iterations=5, ridge=ridge, solver=solver)

    forward = tf.function(lambda appearance, pose: layer(appearance, pose, pose))

    @tf.function
    def forward_backward(appearance, pose):
        with tf.GradientTape() as tape:
            tape.watch([appearance, pose])
            loss = tf.reduce_sum(tf.square(layer(appearance, pose, pose)))
        return tape.gradient(loss, [appearance, pose])

    return (
        median_seconds(forward, (appearance, pose), repeats),
        median_seconds(forward_backward, (appearance, pose), repeats),
    )


def print_iteration_breakdown(batch_size, num_rows, appearance_dim, pose_dim, repeats, reference_gflops):
    """Times each part of one forward IRLS iteration separately (the graph overlaps some of them)."""
    rng = np.random.default_rng(0)
    appearance = tf.constant(rng.normal(size=(batch_size, num_rows, appearance_dim)).astype(np.float32))
    pose = tf.constant(rng.normal(size=(batch_size, num_rows, pose_dim)).astype(np.float32))
    coefficients = tf.constant(0.1 * rng.normal(size=(batch_size, pose_dim, appearance_dim)).astype(np.float32))
    row_weights = tf.ones((batch_size, num_rows, 1))
    layer = PNormRegression(p=1, solver="fused")
    outer = symmetric_solve.row_outer_products(pose)

    def weights_and_rhs(appearance, pose, coefficients):
        residual = appearance - tf.matmul(pose, coefficients)
        weights = row_weights / tf.maximum(tf.abs(residual), layer.delta)
        return weights, tf.matmul(weights * appearance, pose, transpose_a=True)

    def ridge_and_unpack(packed):
        packed = symmetric_solve.add_packed_ridge(packed, pose_dim, layer.ridge, ABSOLUTE_RIDGE_FLOOR)
        return symmetric_solve.unpack_columns(packed, pose_dim)

    weights, rhs = weights_and_rhs(appearance, pose, coefficients)
    packed = symmetric_solve.packed_weighted_grams(outer, weights)
    system = ridge_and_unpack(packed)
    factor = tf.linalg.cholesky(system)
    parts = {
        "residual, weights, rhs (2 GEMMs)": (weights_and_rhs, (appearance, pose, coefficients)),
        "packed Gram GEMM": (symmetric_solve.packed_weighted_grams, (outer, weights)),
        "ridge + unpack to (b, d, k, k)": (ridge_and_unpack, (packed,)),
        "batched cholesky": (tf.linalg.cholesky, (system,)),
        "two triangular solves": (lambda factor, rhs: tf.linalg.cholesky_solve(factor, rhs[..., None]), (factor, rhs)),
    }
    library = packed_cholesky.load_library()
    fused = lambda packed, rhs: library.pnr_packed_cholesky_solve(packed, rhs, ridge=layer.ridge, floor=ABSOLUTE_RIDGE_FLOOR)  # noqa: E731
    parts["fused kernel: ridge + all solves"] = (fused, (packed, rhs))
    stock_layer = PNormRegression(p=1, solver="cholesky")
    step_arguments = (appearance, pose, outer, row_weights, coefficients)
    parts |= {
        "whole iteration, stock kernels": (stock_layer.irls_step, step_arguments),
        "whole iteration": (layer.irls_step, step_arguments),
    }
    milliseconds = {}
    for name, (function, arguments) in parts.items():
        milliseconds[name] = 1e3 * median_seconds(tf.function(function), arguments, repeats)
        print(f"  k={pose_dim} iteration part  {name:34s} {milliseconds[name]:7.1f} ms")
    n, d, k = num_rows, appearance_dim, pose_dim
    iteration_flops = batch_size * (4 * n * k * d + n * d * k * (k + 1) + d * (k**3 / 3 + 2 * k * k))
    print(f"  whole iteration at {iteration_flops / milliseconds['whole iteration'] / 1e6 / reference_gflops:.2f} of GEMM")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--solver", default="fused", choices=["fused", "cholesky", "matmul"])
    parser.add_argument("--breakdown", action="store_true", help="time the parts of one IRLS iteration first (fused only)")
    arguments = parser.parse_args()

    batch_size, num_rows, appearance_dim = 8, 512, 256
    if arguments.solver == "fused":
        try:
            packed_cholesky.load_library()
        except packed_cholesky.KernelUnavailableError as error:
            parser.error(f"the fused kernel is unavailable ({error}); run with --solver cholesky")
    reference = gemm_gflops(arguments.repeats)
    print(f"machine: {os.cpu_count()} cores, TensorFlow {tf.__version__}, solver: {describe_solver(arguments.solver)}")
    print(f"gemm_2048_gflops: {reference:.1f}")
    if arguments.breakdown and arguments.solver == "fused":
        print_iteration_breakdown(batch_size, num_rows, appearance_dim, 32, arguments.repeats, reference)

    def measure(pose_dim):
        return measure_regression(batch_size, num_rows, appearance_dim, pose_dim, arguments.repeats, arguments.solver)

    timings = {pose_dim: measure(pose_dim) for pose_dim in (16, 32, 64)}
    if arguments.solver == "fused":
        stock_k32 = measure_regression(batch_size, num_rows, appearance_dim, 32, arguments.repeats, "cholesky")
    # This host's GEMM speed drifts by up to 40 % within a run: the ratios divide by the faster of
    # the two GEMM measurements, so a slow first reading cannot flatter them.
    reference_at_end = gemm_gflops(arguments.repeats)
    print(f"gemm_2048_gflops_at_end: {reference_at_end:.1f} (the ratios use the faster of the two)")
    reference = max(reference, reference_at_end)
    for pose_dim, (forward_seconds, forward_backward_seconds) in timings.items():
        forward_flops, forward_backward_flops = regression_flops(batch_size, num_rows, appearance_dim, pose_dim, 5)
        forward_gflops = forward_flops / forward_seconds / 1e9
        forward_backward_gflops = forward_backward_flops / forward_backward_seconds / 1e9
        print(
            f"k={pose_dim:3d}  forward {forward_seconds * 1e3:8.1f} ms {forward_gflops:6.1f} GFLOP/s "
            f"(ratio {forward_gflops / reference:.2f})   forward+backward {forward_backward_seconds * 1e3:8.1f} ms "
            f"{forward_backward_gflops:6.1f} GFLOP/s (ratio {forward_backward_gflops / reference:.2f})"
        )
    if arguments.solver == "fused":
        fused_k32 = timings[32]
        print(
            f"k= 32  stock kernels: forward {stock_k32[0] * 1e3:8.1f} ms, forward+backward {stock_k32[1] * 1e3:8.1f} ms "
            f"(fused is {stock_k32[0] / fused_k32[0]:.2f}x / {stock_k32[1] / fused_k32[1]:.2f}x faster)"
        )
    _, forward_backward_flops_k32 = regression_flops(batch_size, num_rows, appearance_dim, 32, 5)
    print(f"fwd_bwd_ratio_to_gemm: {forward_backward_flops_k32 / timings[32][1] / 1e9 / reference:.3f}")


if __name__ == "__main__":
    main()
