"""The fused packed Cholesky kernel against float64 references, its build cache, and its fallback."""

import json
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from pnr_tf.layers.regression import PNormRegression
from pnr_tf.ops import packed_cholesky
from pnr_tf.ops import solvers
from pnr_tf.ops.symmetric_solve import packed_position_map
from pnr_tf.ops.symmetric_solve import upper_triangle_indices
from tests.helpers import require_solver

REPOSITORY = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def library():
    """The built kernel. Skips only where no C++ compiler exists; a failed build with one is a failure."""
    require_solver("fused")
    return packed_cholesky.load_library()


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
    # The gradient op's solve reads the stored factor: with upstream = rhs it gives the solution again.
    _, again = library.pnr_packed_cholesky_solve_grad(factor, solution, rhs, ridge=ridge)
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


def test_without_the_factor_the_solution_is_the_same_and_no_factor_is_written(library):
    rng = np.random.default_rng(8)
    _, packed, rhs = random_packed_systems(rng, 2, 6, 21)
    solution, factor = library.pnr_packed_cholesky_solve(packed, rhs, ridge=1e-3, floor=1e-6)
    lean_solution, no_factor = library.pnr_packed_cholesky_solve(packed, rhs, ridge=1e-3, floor=1e-6, with_factor=False)
    np.testing.assert_array_equal(lean_solution.numpy(), solution.numpy())
    assert factor.shape == packed.shape and no_factor.shape == (0, 0, 0)


def test_irls_weights_match_numpy_and_keep_nan(library):
    rng = np.random.default_rng(9)
    appearance = rng.normal(size=(2, 30, 7)).astype(np.float32)
    prediction = appearance + rng.normal(scale=0.05, size=appearance.shape).astype(np.float32)
    prediction[0, 0, :3] = appearance[0, 0, :3]  # zero residuals: the floor delta applies
    prediction[1, 5, 2] = np.nan
    row_weights = (rng.uniform(size=(2, 30, 1)) < 0.7).astype(np.float32)
    weights, weighted = library.pnr_irls_weights(appearance, prediction, row_weights, delta=1e-2)
    residual = np.abs(appearance.astype(np.float64) - prediction)
    expected = row_weights / np.where(residual < 1e-2, 1e-2, residual)  # NaN stays NaN (np.maximum would too)
    np.testing.assert_allclose(weights.numpy(), expected, rtol=1e-6)
    np.testing.assert_allclose(weighted.numpy(), expected * appearance, rtol=1e-6)
    assert np.isnan(weights.numpy()[1, 5, 2]) and np.isfinite(np.delete(weights.numpy().reshape(-1), 1 * 30 * 7 + 5 * 7 + 2)).all()


def test_irls_weights_gradient_matches_float64_autodiff(library):
    rng = np.random.default_rng(12)
    appearance = rng.normal(size=(2, 40, 9)).astype(np.float32)
    prediction = appearance + rng.normal(scale=0.5, size=appearance.shape).astype(np.float32)
    prediction[0, 0, :4] = appearance[0, 0, :4] + 1e-3  # inside the floor delta: no gradient through the residual
    row_weights = rng.uniform(size=(2, 40, 1)).astype(np.float32)
    row_weights[1, :5] = 0.0  # dropped rows still have a gradient to their weight
    weights_upstream, weighted_upstream = rng.normal(size=(2,) + appearance.shape)
    variables = [tf.Variable(value) for value in (appearance, prediction, row_weights)]
    with tf.GradientTape() as tape:
        weights, weighted = packed_cholesky.irls_weights(library, *variables, 1e-2)
        loss = tf.reduce_sum(weights * weights_upstream) + tf.reduce_sum(weighted * weighted_upstream)
    actual = tape.gradient(loss, variables)
    variables64 = [tf.Variable(value.astype(np.float64)) for value in (appearance, prediction, row_weights)]
    with tf.GradientTape() as tape:
        appearance64, prediction64, row_weights64 = variables64
        weights64 = row_weights64 / tf.maximum(tf.abs(appearance64 - prediction64), 1e-2)
        loss = tf.reduce_sum(weights64 * weights_upstream) + tf.reduce_sum(weights64 * appearance64 * weighted_upstream)
    expected = tape.gradient(loss, variables64)
    for got, want in zip(actual, expected):
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-5, atol=1e-5 * np.abs(want.numpy()).max())
    assert np.all(actual[1].numpy()[0, 0, :4] == 0.0)


# n = 300 ends in a partial chunk of rows (the kernel works on 128 at a time); k = 1 has no off-diagonal.
@pytest.mark.parametrize("rows, size", [(300, 7), (5, 1), (128, 32)])
def test_row_outer_products_and_gradient_match_float64(library, rows, size):
    rng = np.random.default_rng(rows + size)
    pose = rng.normal(size=(3, rows, size)).astype(np.float32)
    upstream = rng.normal(size=(3, size * (size + 1) // 2, rows)).astype(np.float32)
    pose_variable = tf.Variable(pose)
    with tf.GradientTape() as tape:
        outer = packed_cholesky.row_outer_products(library, pose_variable)
        loss = tf.reduce_sum(outer * upstream)
    gradient = tape.gradient(loss, pose_variable)
    # float64 by hand: entry (u, v) of row i is p_iu p_iv; its gradient d p_iw = sum_v G_i[w, v] p_iv,
    # G_i the symmetric matrix of the upstream entries with the diagonal counted twice.
    pose64 = pose.astype(np.float64)
    rows_index, columns_index = upper_triangle_indices(size)
    expected = np.transpose(pose64[:, :, rows_index] * pose64[:, :, columns_index], (0, 2, 1))
    np.testing.assert_allclose(outer.numpy(), expected, rtol=1e-6, atol=1e-6)
    symmetric = np.zeros((3, rows, size, size))
    symmetric[:, :, rows_index, columns_index] += np.transpose(upstream, (0, 2, 1))
    symmetric[:, :, columns_index, rows_index] += np.transpose(upstream, (0, 2, 1))
    expected_gradient = np.einsum("bnwv,bnv->bnw", symmetric, pose64)
    np.testing.assert_allclose(gradient.numpy(), expected_gradient, rtol=1e-5, atol=1e-5 * np.abs(expected_gradient).max())


def test_solve_gradient_is_nan_for_a_system_that_is_not_positive_definite(library):
    rng = np.random.default_rng(11)
    _, packed, rhs = random_packed_systems(rng, 1, 5, 20)
    packed[0, 0, 3] = -1.0  # column 3's first pivot is negative
    packed_variable, rhs_variable = tf.Variable(packed), tf.Variable(rhs)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(packed_cholesky.packed_cholesky_solve(library, packed_variable, rhs_variable, 1e-3, 1e-6))
    packed_gradient, rhs_gradient = (gradient.numpy() for gradient in tape.gradient(loss, [packed_variable, rhs_variable]))
    assert np.isnan(packed_gradient[0, :, 3]).all() and np.isnan(rhs_gradient[0, 3]).all()
    assert np.isfinite(np.delete(packed_gradient, 3, axis=2)).all() and np.isfinite(np.delete(rhs_gradient, 3, axis=1)).all()


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
    results, operations = {}, {}
    for solver in ("fused", "cholesky"):
        layer = PNormRegression(p=p, num_iterations=4, solver=solver)

        def output_and_gradients(appearance, pose):
            with tf.GradientTape() as tape:
                tape.watch([appearance, pose])
                output = layer(appearance, pose, pose)
                loss = tf.reduce_sum(output**2)
            return [output, *tape.gradient(loss, [appearance, pose])]

        function = tf.function(output_and_gradients)
        results[solver] = function(appearance, pose)
        operations[solver] = all_op_types(function.get_concrete_function(appearance, pose).graph)
    # The comparison is only worth something if the two graphs really differ.
    assert ("PnrPackedCholeskySolve" in operations["fused"]) == (p == 1)
    assert "PnrPackedCholeskySolve" not in operations["cholesky"]
    for got, want in zip(results["fused"], results["cholesky"]):
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-4, atol=1e-4 * np.abs(want.numpy()).max())


def wrapped_compiler(tmp_path, body):
    """A compiler script: logs every full compile (-shared) to compiles.log, runs `body`, else the real c++."""
    real = shutil.which(packed_cholesky.compiler()[0])
    script = tmp_path / "wrapped-c++"
    script.write_text(
        "#!/bin/sh\n"
        f'case " $* " in *" -shared "*) echo "$*" >> {tmp_path}/compiles.log ;; esac\n'
        f"{body}\n"
        f'exec {real} "$@"\n'
    )
    script.chmod(0o755)
    return script


def compiles(tmp_path):
    log = tmp_path / "compiles.log"
    return log.read_text().splitlines() if log.is_file() else []


def test_a_failing_first_flag_set_falls_back_to_the_next(library, tmp_path, monkeypatch):
    # Simulated: every flag set that builds for this very CPU fails, as AVX512-FP16 did with g++ 12.
    compiler = wrapped_compiler(tmp_path, 'case " $* " in *" -shared "*native*) echo "kernel.cc:1: error: simulated" >&2; exit 1 ;; esac')
    monkeypatch.setenv("CXX", str(compiler))
    path = packed_cholesky.build_library(tmp_path / "cache")
    record = json.loads(packed_cholesky.build_record_path(path).read_text())
    expected = next(flag_set for flag_set in packed_cholesky.flag_sets() if not any("native" in flag for flag in flag_set.flags))
    assert record["flag_set"] == expected.name
    assert [attempt["flag_set"] for attempt in record["failed_attempts"]] == [
        flag_set.name for flag_set in packed_cholesky.flag_sets()[: packed_cholesky.flag_sets().index(expected)]
    ]
    assert all("simulated" in attempt["reason"] for attempt in record["failed_attempts"])
    # The fallback library is a working kernel (loaded in a fresh process: op names register once per process).
    code = (
        "import numpy as np, tensorflow as tf\n"
        f"library = tf.load_op_library({str(path)!r})\n"
        "packed = np.array([[[4.0], [1.0], [3.0]]], np.float32)  # [[4, 1], [1, 3]], upper triangle\n"
        "print(library.pnr_packed_cholesky_solve(packed, np.array([[[1.0, 2.0]]], np.float32))[0].numpy().tolist())\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    np.testing.assert_allclose(json.loads(result.stdout.strip().splitlines()[-1]), [[[1 / 11, 7 / 11]]], rtol=1e-6)


def test_a_hanging_compiler_times_out_and_the_failure_is_remembered(tmp_path, monkeypatch):
    require_solver("fused")
    compiler = wrapped_compiler(tmp_path, 'case " $* " in *" -shared "*) sleep 60 ;; esac')
    monkeypatch.setenv("CXX", str(compiler))
    cache = tmp_path / "cache"
    with pytest.raises(packed_cholesky.KernelUnavailableError, match="timed out after 1 s"):
        packed_cholesky.build_library(cache, timeout=1.0)
    assert packed_cholesky.failure_record_path(packed_cholesky.library_path(cache)).is_file()
    attempts = len(compiles(tmp_path))
    assert attempts == len(packed_cholesky.flag_sets())
    # A later process does not wait through the same failures again, unless asked to.
    with pytest.raises(packed_cholesky.KernelUnavailableError, match="build_kernels --force"):
        packed_cholesky.build_library(cache, timeout=1.0)
    assert len(compiles(tmp_path)) == attempts


def test_without_a_compiler_auto_warns_once_and_uses_tensorflows_cholesky(tmp_path, monkeypatch):
    monkeypatch.setenv("CXX", str(tmp_path / "no-such-compiler"))
    monkeypatch.setenv(packed_cholesky.CACHE_VARIABLE, str(tmp_path / "cache"))
    monkeypatch.setattr(solvers, "_warned", set())
    with pytest.raises(packed_cholesky.KernelUnavailableError, match="no C\\+\\+ compiler"):
        packed_cholesky.build_library()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        layers = [PNormRegression(p=1), PNormRegression(p=1)]
    assert [layer.resolved_solver for layer in layers] == ["cholesky", "cholesky"]
    assert len(caught) == 1 and "uses TensorFlow's Cholesky" in str(caught[0].message)
    with pytest.raises(packed_cholesky.KernelUnavailableError, match='solver="fused" needs the fused CPU kernel'):
        PNormRegression(p=1, solver="fused")
    rng = np.random.default_rng(5)
    appearance = rng.normal(size=(1, 30, 6)).astype(np.float32)
    pose = rng.normal(size=(1, 30, 3)).astype(np.float32)
    fallback = layers[0](appearance, pose, pose).numpy()
    reference = PNormRegression(p=1, solver="matmul")(appearance, pose, pose).numpy()
    np.testing.assert_allclose(fallback, reference, rtol=1e-4, atol=1e-5)


def test_compiler_errors_are_reported(tmp_path, monkeypatch):
    compiler = tmp_path / "broken-compiler"
    compiler.write_text("#!/bin/sh\necho 'kernel.cc:1: error: something broke' >&2\nexit 1\n")
    compiler.chmod(0o755)
    monkeypatch.setenv("CXX", str(compiler))
    with pytest.raises(packed_cholesky.KernelUnavailableError, match="error: something broke"):
        packed_cholesky.build_library(tmp_path)
    assert not list(tmp_path.glob("*.so")) and not list(tmp_path.glob("*.partial"))


def test_build_kernels_command_in_two_processes_compiles_once_into_an_empty_cache_and_says_what_it_built(library, tmp_path):
    # Two at once, as two workers of one machine starting together would: one compiles, the other waits
    # on the lock and finds the library (one real compile, ~12 s, serves both checks).
    compiler = wrapped_compiler(tmp_path, "")
    cache = tmp_path / "cache"
    environment = dict(os.environ, CXX=str(compiler), PYTHONPATH=str(REPOSITORY))
    command = [sys.executable, "-m", "pnr_tf.ops.build_kernels", "--cache-dir", str(cache)]
    processes = [subprocess.Popen(command, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [process.communicate(timeout=600) for process in processes]
    path = packed_cholesky.library_path(cache)
    record = json.loads(packed_cholesky.build_record_path(path).read_text())
    for process, (stdout, stderr) in zip(processes, outputs):
        assert process.returncode == 0, stderr[-2000:]
        assert f"library: {path}" in stdout
        assert f"flag set: {record['flag_set']} ({' '.join(record['flags'])})" in stdout
        assert stderr == ""  # TensorFlow's start-up lines are filtered too
    assert len(compiles(tmp_path)) == 1
    # It compiled into the empty cache, atomically, and a later build finds the library instead of compiling.
    assert path.stat().st_size > 0 and not list(cache.glob("*.partial"))
    assert record["flag_set"] in [flag_set.name for flag_set in packed_cholesky.flag_sets()]
    modified = path.stat().st_mtime_ns
    assert packed_cholesky.build_library(cache) == path and path.stat().st_mtime_ns == modified
    assert len(compiles(tmp_path)) == 1
