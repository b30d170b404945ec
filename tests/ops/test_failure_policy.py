"""One failure policy for every solver: systems that are not positive definite or hold NaN / inf give NaN."""

import numpy as np
import pytest
import tensorflow as tf

from pnr_tf.layers.regression import PNormRegression
from pnr_tf.ops import packed_cholesky
from pnr_tf.ops.symmetric_solve import packed_solve_systems_last
from pnr_tf.ops.symmetric_solve import symmetric_solve
from pnr_tf.ops.symmetric_solve import upper_triangle_indices
from tests.helpers import SOLVERS
from tests.helpers import require_solver

SIZE = 5


def systems_with_failures():
    """Six (matrix, rhs) systems: good, indefinite, NaN in the matrix, inf in the matrix, inf in rhs, good."""
    rng = np.random.default_rng(0)
    factors = rng.normal(size=(6, 3 * SIZE, SIZE))
    matrices = np.einsum("bnk,bnl->bkl", factors, factors) / SIZE + 0.1 * np.eye(SIZE)
    rhs = rng.normal(size=(6, SIZE))
    matrices[1] -= 50.0 * np.eye(SIZE)  # indefinite: negative eigenvalues
    matrices[2, 1, 3] = matrices[2, 3, 1] = np.nan
    matrices[3, 4, 4] = np.inf
    rhs[4, 2] = np.inf
    return matrices.astype(np.float32), rhs.astype(np.float32)


def check_policy(solution, matrices, rhs):
    """Good systems match float64 NumPy; failed ones are NaN in every entry."""
    for index in (0, 5):
        expected = np.linalg.solve(matrices[index].astype(np.float64), rhs[index].astype(np.float64))
        np.testing.assert_allclose(solution[index], expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())
    for index in (1, 2, 3, 4):
        assert np.isnan(solution[index]).all(), (index, solution[index])


@pytest.mark.parametrize("factorization", ["cholesky", "matmul"])
def test_dense_factorizations_follow_the_policy(factorization):
    matrices, rhs = systems_with_failures()
    solution = symmetric_solve(tf.constant(matrices), tf.constant(rhs[..., None]), factorization).numpy()[..., 0]
    check_policy(solution, matrices, rhs)


def test_the_fused_kernel_follows_the_policy():
    require_solver("fused")
    library = packed_cholesky.load_library()
    matrices, rhs = systems_with_failures()
    rows, columns = upper_triangle_indices(SIZE)
    # Packed (b, q, d): the six systems as six columns of one example.
    packed = np.transpose(matrices[:, rows, columns], (1, 0))[None]
    solution, _ = library.pnr_packed_cholesky_solve(packed, rhs[None], ridge=0.0, floor=0.0)
    check_policy(solution.numpy()[0], matrices, rhs)


def test_the_builtin_ops_solver_with_systems_last_follows_the_policy():
    # The matmul solver's IRLS path (TFLite): the same packed (b, q, d) layout as the fused kernel.
    matrices, rhs = systems_with_failures()
    rows, columns = upper_triangle_indices(SIZE)
    packed = np.transpose(matrices[:, rows, columns], (1, 0))[None]
    solution = packed_solve_systems_last(tf.constant(packed), tf.constant(rhs.T[None]), SIZE).numpy()[0].T
    check_policy(solution, matrices, rhs)


def test_the_builtin_ops_solver_with_systems_last_matches_float64_at_k_64():
    rng = np.random.default_rng(4)
    size, batch, columns_per_example = 64, 2, 3
    factors = rng.normal(size=(batch, columns_per_example, 4 * size, size))
    matrices = np.einsum("bjnk,bjnl->bjkl", factors, factors) / size + 1e-2 * np.eye(size)
    rhs = rng.normal(size=(batch, columns_per_example, size))
    rows, cols = upper_triangle_indices(size)
    packed = np.transpose(matrices[:, :, rows, cols], (0, 2, 1)).astype(np.float32)  # (b, q, d)
    solution = packed_solve_systems_last(tf.constant(packed), tf.constant(np.transpose(rhs, (0, 2, 1)).astype(np.float32)), size).numpy()
    expected = np.linalg.solve(matrices, rhs[..., None])[..., 0]  # float64, (b, d, k)
    assert np.linalg.cond(matrices).max() < 20  # well conditioned, as the ridge keeps pose systems
    # float32 elimination over 64 columns: measured 3e-7 of the largest entry; a wrong term is off by O(1).
    np.testing.assert_allclose(np.transpose(solution, (0, 2, 1)), expected, rtol=0, atol=1e-5 * np.abs(expected).max())


@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("p", [1, 2])
def test_non_finite_inputs_poison_only_what_depends_on_them(p, solver):
    require_solver(solver)
    rng = np.random.default_rng(1)
    appearance = rng.normal(size=(3, 40, 6)).astype(np.float32)
    pose = rng.normal(size=(3, 40, 4)).astype(np.float32)
    clean = PNormRegression(p=p, solver=solver)(appearance, pose, pose).numpy()
    appearance[1, 7, 2] = np.nan  # one appearance value: column 2 of example 1 only
    pose[2, 11, 0] = np.inf  # one pose value: all of example 2 (P is shared by every column)
    output = PNormRegression(p=p, solver=solver)(appearance, pose, pose).numpy()
    np.testing.assert_allclose(output[0], clean[0], rtol=1e-5, atol=1e-5)
    assert np.isnan(output[1][:, 2]).all()
    np.testing.assert_allclose(np.delete(output[1], 2, axis=1), np.delete(clean[1], 2, axis=1), rtol=1e-4, atol=1e-4)
    assert np.isnan(output[2]).all()


@pytest.mark.parametrize("bad_value", [-1.0, np.nan, np.inf])
def test_row_weights_must_be_finite_and_non_negative(bad_value):
    rng = np.random.default_rng(2)
    appearance = rng.normal(size=(1, 20, 3)).astype(np.float32)
    pose = rng.normal(size=(1, 20, 2)).astype(np.float32)
    row_weights = np.ones((1, 20), np.float32)
    row_weights[0, 4] = bad_value
    with pytest.raises(tf.errors.InvalidArgumentError, match="row_weights must be"):
        PNormRegression(p=1, solver="cholesky")(appearance, pose, pose, row_weights)
