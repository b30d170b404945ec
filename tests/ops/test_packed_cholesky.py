"""The fused packed Cholesky kernel against float64 references, its build cache, and its fallback."""

import os
import shutil
import warnings

import numpy as np
import pytest
import tensorflow as tf

from pnr_tf.layers.regression import PNormRegression
from pnr_tf.ops import packed_cholesky
from pnr_tf.ops.symmetric_solve import packed_position_map
from pnr_tf.ops.symmetric_solve import upper_triangle_indices


@pytest.fixture(scope="module")
def library():
    """The built kernel. Skips only where no C++ compiler exists; a failed build with one is a failure."""
    if shutil.which(os.environ.get("CXX", "c++")) is None:
        pytest.skip("no C++ compiler: the regression uses the stock kernels here")
    path = packed_cholesky.build_library()
    loaded = packed_cholesky.load_library()
    assert loaded is not None, path
    return loaded


def random_packed_systems(rng, batch_size, size, columns):
    """Well-conditioned SPD matrices G (b, d, k, k) in float64, their packed (b, q, d) float32 form, rhs (b, d, k)."""
    factors = rng.normal(size=(batch_size, columns, 3 * size, size))
    matrices = np.einsum("bdnk,bdnl->bdkl", factors, factors) / size + 0.1 * np.eye(size)
    rows, cols = upper_triangle_indices(size)
    packed = np.transpose(matrices[..., rows, cols], (0, 2, 1)).astype(np.float32)
    rhs = rng.normal(size=(batch_size, columns, size))
    return matrices.astype(np.float32).astype(np.float64), packed, rhs.astype(np.float32)


def ridged(matrices, ridge, floor):
    """float64 G + (ridge * mean(diag G) + floor) I, the regression's relative ridge."""
    strength = ridge * np.trace(matrices, axis1=-2, axis2=-1) / matrices.shape[-1] + floor
    return matrices + strength[..., None, None] * np.eye(matrices.shape[-1])


# d = 5 fills under one 16-lane block, 37 ends in a partial block, 32 fills two exactly.
@pytest.mark.parametrize("size, columns, ridge, floor", [(4, 5, 0.0, 0.0), (7, 37, 1e-3, 1e-6), (32, 32, 0.5, 0.25)])
def test_solution_and_factor_match_float64(library, size, columns, ridge, floor):
    rng = np.random.default_rng(size)
    matrices, packed, rhs = random_packed_systems(rng, 2, size, columns)
    systems = ridged(matrices, ridge, floor)
    solution, factor = library.pnr_packed_cholesky_solve(packed, rhs, ridge=ridge, floor=floor)
    expected = np.linalg.solve(systems, rhs.astype(np.float64)[..., None])[..., 0]
    np.testing.assert_allclose(solution.numpy(), expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())
    # The factor is U with M = U^T U, packed like the input: numpy's lower factor, transposed.
    rows, cols = upper_triangle_indices(size)
    expected_factor = np.transpose(np.linalg.cholesky(systems), (0, 1, 3, 2))[..., rows, cols]
    np.testing.assert_allclose(factor.numpy(), np.transpose(expected_factor, (0, 2, 1)), rtol=1e-4, atol=1e-5)
    again = library.pnr_packed_cholesky_solve_with_factor(factor, rhs)
    np.testing.assert_array_equal(again.numpy(), solution.numpy())


@pytest.mark.parametrize("ridge, floor", [(0.0, 0.0), (0.3, 0.01)])
def test_gradients_match_float64_autodiff_of_a_dense_solve(library, ridge, floor):
    rng = np.random.default_rng(3)
    size, columns = 6, 19
    _, packed, rhs = random_packed_systems(rng, 2, size, columns)
    upstream = rng.normal(size=rhs.shape)
    packed_variable, rhs_variable = tf.Variable(packed), tf.Variable(rhs)
    with tf.GradientTape() as tape:
        solution = packed_cholesky.packed_cholesky_solve(library, packed_variable, rhs_variable, ridge, floor)
        loss = tf.reduce_sum(solution * upstream)
    actual = tape.gradient(loss, [packed_variable, rhs_variable])
    # Reference: tf.linalg.solve on the unpacked, ridged float64 matrices; the unpack's gather sums
    # the gradients of (u, v) and (v, u) into the one packed entry, as the kernel's gradient must.
    packed64, rhs64 = tf.Variable(packed.astype(np.float64)), tf.Variable(rhs.astype(np.float64))
    with tf.GradientTape() as tape:
        full = tf.gather(packed64, packed_position_map(size), axis=1)  # (b, k*k, d)
        matrices = tf.reshape(tf.transpose(full, [0, 2, 1]), (2, columns, size, size))
        strength = ridge * tf.linalg.trace(matrices) / size + floor
        matrices += strength[..., None, None] * tf.eye(size, dtype=tf.float64)
        solution = tf.linalg.solve(matrices, rhs64[..., None])[..., 0]
        reference_loss = tf.reduce_sum(solution * upstream)
    expected = tape.gradient(reference_loss, [packed64, rhs64])
    for got, want in zip(actual, expected):
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-3, atol=1e-4 * np.abs(want.numpy()).max())


def test_mismatched_shapes_fail_with_invalid_argument(library):
    packed = tf.ones((2, 10, 3))  # q = 10 means k = 4
    with pytest.raises(tf.errors.InvalidArgumentError, match="shapes do not match"):
        library.pnr_packed_cholesky_solve(packed, tf.ones((2, 3, 5)))
    with pytest.raises((tf.errors.InvalidArgumentError, ValueError)):
        library.pnr_packed_cholesky_solve(tf.ones((10, 3)), tf.ones((2, 3, 4)))


def all_op_types(graph):
    types = {operation.type for operation in graph.get_operations()}
    for function in graph._functions.values():  # while-loop bodies live in the function library
        types |= {node.op for node in function.definition.node_def}
    return types


@pytest.mark.parametrize("p", [1, 2])
def test_regression_with_the_fused_kernel_equals_the_stock_kernels(library, p):
    rng = np.random.default_rng(4)
    appearance = tf.constant(rng.normal(size=(2, 60, 21)).astype(np.float32))
    pose = tf.constant(rng.normal(size=(2, 60, 5)).astype(np.float32))
    layer = PNormRegression(p=p, num_iterations=4)

    def output_and_gradients(appearance, pose):
        with tf.GradientTape() as tape:
            tape.watch([appearance, pose])
            output = layer(appearance, pose, pose)
            loss = tf.reduce_sum(output**2)
        return [output, *tape.gradient(loss, [appearance, pose])]

    fused_function = tf.function(output_and_gradients)
    fused = fused_function(appearance, pose)
    with packed_cholesky.stock_kernels_only():
        stock_function = tf.function(output_and_gradients)
        stock = stock_function(appearance, pose)
        stock_ops = all_op_types(stock_function.get_concrete_function(appearance, pose).graph)
    fused_ops = all_op_types(fused_function.get_concrete_function(appearance, pose).graph)
    # The comparison is only worth something if the two graphs really differ.
    assert ("PnrPackedCholeskySolve" in fused_ops) == (p == 1)
    assert "PnrPackedCholeskySolve" not in stock_ops
    for got, want in zip(fused, stock):
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-4, atol=1e-4 * np.abs(want.numpy()).max())


def test_build_compiles_into_an_empty_cache_and_reuses_it(library, tmp_path):
    path = packed_cholesky.build_library(tmp_path)
    assert path == packed_cholesky.library_path(tmp_path) and path.stat().st_size > 0
    assert not list(tmp_path.glob("*.partial"))
    modified = path.stat().st_mtime_ns
    assert packed_cholesky.build_library(tmp_path) == path and path.stat().st_mtime_ns == modified


def test_a_failing_compiler_warns_once_and_falls_back(tmp_path, monkeypatch):
    monkeypatch.setenv("CXX", str(tmp_path / "no-such-compiler"))
    monkeypatch.setenv(packed_cholesky.CACHE_VARIABLE, str(tmp_path / "cache"))
    monkeypatch.setattr(packed_cholesky, "_loaded", {})
    with pytest.raises(packed_cholesky.KernelBuildError, match="cannot run the C\\+\\+ compiler"):
        packed_cholesky.build_library()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert packed_cholesky.load_library() is None
        assert packed_cholesky.load_library() is None
    assert len(caught) == 1 and "stock kernels" in str(caught[0].message)
    rng = np.random.default_rng(5)
    appearance = rng.normal(size=(1, 30, 6)).astype(np.float32)
    pose = rng.normal(size=(1, 30, 3)).astype(np.float32)
    fallback = PNormRegression(p=1)(appearance, pose, pose).numpy()
    reference = PNormRegression(p=1, solver="matmul")(appearance, pose, pose).numpy()
    np.testing.assert_allclose(fallback, reference, rtol=1e-4, atol=1e-5)


def test_compiler_errors_are_reported(tmp_path, monkeypatch):
    compiler = tmp_path / "broken-compiler"
    compiler.write_text("#!/bin/sh\necho 'kernel.cc:1: error: something broke' >&2\nexit 1\n")
    compiler.chmod(0o755)
    monkeypatch.setenv("CXX", str(compiler))
    with pytest.raises(packed_cholesky.KernelBuildError, match="error: something broke"):
        packed_cholesky.build_library(tmp_path)
    assert not list(tmp_path.glob("*.so")) and not list(tmp_path.glob("*.partial"))


@pytest.mark.parametrize("value", ["0", "off"])
def test_environment_variable_turns_the_kernel_off(library, monkeypatch, value):
    monkeypatch.setenv(packed_cholesky.ENABLE_VARIABLE, value)
    assert packed_cholesky.fused_library() is None
    monkeypatch.setenv(packed_cholesky.ENABLE_VARIABLE, "1")
    assert packed_cholesky.fused_library() is library
