"""Batched Gram matrices and symmetric positive-definite solves for the pNR regression.

Two ideas keep the p-norm regression fast on a CPU and exportable to TFLite:

* Per-column weighted Gram matrices ``P^T diag(r_j) P`` for all ``d`` columns are one GEMM per
  example, ``R^T O``, against the table ``O`` (n x k(k+1)/2) of the upper-triangle entries of each
  row's outer product ``p_i p_i^T``. Symmetry halves the work and no (b, d, n, k) tensor exists.
* The solve has one custom gradient, shared by two factorisations: ``"cholesky"`` (LAPACK-style
  ``tf.linalg.cholesky``) and ``"matmul"`` (an unrolled Cholesky over the static size ``k`` made of
  slicing, matmul and elementwise ops only, which TFLite converts with builtin ops). The IRLS
  solves of the matmul solver skip both layouts' transposes: ``packed_solve_systems_last`` keeps
  the d systems on the last axis, as the Gram GEMM writes them.

Failure policy, the same for both factorisations and the fused kernel: a system whose matrix is not
positive definite, or that holds a NaN or an infinity, solves to NaN in every entry of its solution
column, never to large finite numbers, so a caller's NaN check catches it (training stops naming
the step). The regression's ridge keeps real pose systems positive definite.
"""

import numpy as np
import tensorflow as tf

FACTORIZATIONS = ("cholesky", "matmul")


def upper_triangle_indices(size):
    """Row and column indices of the upper triangle (diagonal included) of a size x size matrix."""
    rows, columns = np.triu_indices(size)
    return rows.astype(np.int32), columns.astype(np.int32)


def packed_position_map(size):
    """For each entry (u, v) of a full size x size matrix, its position in the packed upper triangle."""
    rows, columns = upper_triangle_indices(size)
    positions = np.empty((size, size), dtype=np.int32)
    positions[rows, columns] = np.arange(rows.size, dtype=np.int32)
    positions[columns, rows] = np.arange(rows.size, dtype=np.int32)
    return positions.reshape(-1)


def packed_diagonal_positions(size):
    """Positions of the diagonal entries inside the packed upper triangle."""
    rows, columns = upper_triangle_indices(size)
    return np.flatnonzero(rows == columns).astype(np.int32)


def row_outer_products(pose):
    """Upper-triangle entries of p_i p_i^T for every row, rows last: (b, n, k) -> (b, k(k+1)/2, n).

    Rows-last keeps every gather a copy of contiguous rows, which is several times faster on a
    CPU than gathering along the last axis.
    """
    rows, columns = upper_triangle_indices(pose.shape[-1])
    pose_by_column = tf.transpose(pose, [0, 2, 1])
    return tf.gather(pose_by_column, rows, axis=1) * tf.gather(pose_by_column, columns, axis=1)


def packed_weighted_grams(outer, weights):
    """Packed P^T diag(r_j) P for every column j: outer (b, q, n), weights (b, n, d) -> (b, q, d). One GEMM."""
    return tf.matmul(outer, weights)


def add_packed_ridge(packed, size, ridge, absolute_floor):
    """Adds (ridge * mean diagonal + absolute_floor) to the diagonal of packed (b, q, d) Gram matrices."""
    diagonal_positions = packed_diagonal_positions(size)
    mean_diagonal_value = tf.reduce_mean(tf.gather(packed, diagonal_positions, axis=1), axis=1, keepdims=True)
    indicator = np.zeros((size * (size + 1) // 2, 1), np.float32)
    indicator[diagonal_positions] = 1.0
    return packed + (ridge * mean_diagonal_value + absolute_floor) * tf.constant(indicator, packed.dtype)


def unpack_columns(packed, size):
    """Packed (b, q, d) -> one full symmetric matrix per column, (b, d, k, k)."""
    full = tf.gather(packed, packed_position_map(size), axis=1)  # (b, k*k, d), contiguous rows
    full = tf.transpose(full, [0, 2, 1])
    return tf.reshape(full, tf.concat([tf.shape(full)[:2], [size, size]], axis=0))


def mean_diagonal(matrix):
    """Mean of the diagonal of (..., k, k), written without diag_part (not a TFLite builtin)."""
    size = matrix.shape[-1]
    return tf.reduce_sum(matrix * tf.eye(size, dtype=matrix.dtype), axis=[-2, -1]) / size


def add_relative_ridge(matrix, ridge, absolute_floor):
    """matrix + (ridge * mean(diag(matrix)) + absolute_floor) I, so rank-deficient systems stay solvable."""
    size = matrix.shape[-1]
    strength = ridge * mean_diagonal(matrix) + absolute_floor
    eye = tf.eye(size, dtype=matrix.dtype)
    return matrix + tf.expand_dims(tf.expand_dims(strength, -1), -1) * eye


def _assemble(parts, axis):
    """tf.concat of size-1 slices along ``axis``, written as a sum of one-hot products.

    TFLite's int8 converter requantises the inputs of a CONCATENATION even where the op is kept
    float, which rounded the solves' intermediate and final values to eight bits. A sum keeps each
    column's NaN in that column, as the failure policy needs.
    """
    total = None
    for index, part in enumerate(parts):
        shape = [1] * part.shape.rank
        shape[axis] = len(parts)
        one_hot = np.zeros(len(parts), np.float32)
        one_hot[index] = 1.0
        term = part * tf.constant(one_hot.reshape(shape), part.dtype)
        total = term if total is None else total + term
    return total


def _unrolled_cholesky(matrix):
    """Lower Cholesky factor by k right-looking rank-1 updates; slicing, padding and elementwise only.

    Each update touches only the trailing block (k^3 / 3 multiply-adds in all, not k^3) and forms
    the outer product by broadcasting, not as a matmul of inner size 1.
    """
    size = matrix.shape[-1]
    if size is None:
        raise ValueError("The matmul solver needs a static matrix size k.")
    outer_padding = [[0, 0]] * (matrix.shape.rank - 2)
    columns = []
    remaining = matrix  # the trailing (size - index) x (size - index) block
    for index in range(size):
        pivot = remaining[..., :1, :1]
        # Not positive definite: NaN (tf.where is a TFLite builtin), which spreads to every later column.
        pivot = tf.where(pivot > 0, pivot, tf.constant(np.nan, matrix.dtype))
        column = remaining[..., :, :1] * tf.math.rsqrt(pivot)
        columns.append(tf.pad(column, outer_padding + [[index, 0], [0, 0]]))  # rows above the pivot: exactly zero
        below = column[..., 1:, :]
        remaining = remaining[..., 1:, 1:] - below * tf.linalg.matrix_transpose(below)
    return _assemble(columns, axis=-1)


def _unrolled_cholesky_solve(factor, rhs):
    """Solve L L^T x = rhs by forward then backward substitution over the static size k."""
    size = factor.shape[-1]
    # Forward: L z = rhs, eliminating one column of L at a time.
    residual = rhs
    solution_rows = []
    for index in range(size):
        column = factor[..., :, index : index + 1]
        value = residual[..., index : index + 1, :] / column[..., index : index + 1, :]
        solution_rows.append(value)
        residual = residual - column * value
    forward = _assemble(solution_rows, axis=-2)
    # Backward: L^T x = z; column j of L^T is row j of L.
    residual = forward
    solution_rows = [None] * size
    for index in reversed(range(size)):
        row = factor[..., index : index + 1, :]
        value = residual[..., index : index + 1, :] / row[..., :, index : index + 1]
        solution_rows[index] = value
        residual = residual - tf.linalg.matrix_transpose(row) * value
    return _assemble(solution_rows, axis=-2)


def cholesky_factor(matrix, factorization):
    if factorization == "cholesky":
        return tf.linalg.cholesky(matrix)
    if factorization == "matmul":
        return _unrolled_cholesky(matrix)
    raise ValueError(f"factorization must be one of {FACTORIZATIONS}, got {factorization!r}")


def cholesky_solve(factor, rhs, factorization):
    if factorization == "cholesky":
        solution = tf.linalg.cholesky_solve(factor, rhs)
    elif factorization == "matmul":
        solution = _unrolled_cholesky_solve(factor, rhs)
    else:
        raise ValueError(f"factorization must be one of {FACTORIZATIONS}, got {factorization!r}")
    return _nan_unless_finite(factor, rhs, solution)


def _all_finite(tensor, axis):
    """Whether every value along axis is finite, from TFLite builtins (ABS, LESS_EQUAL, REDUCE_MIN)."""
    finite = tf.cast(tf.abs(tensor) <= np.finfo(np.float32).max, tensor.dtype)  # False for NaN and inf
    return tf.reduce_min(finite, axis=axis, keepdims=True) > 0


def _nan_unless_finite(factor, rhs, solution):
    """NaN for every solution column whose factor or rhs column holds a NaN or an infinity.

    Both factorisations already give a NaN factor for a matrix that is not positive definite, but an
    infinite entry can leave finite, meaningless numbers (or infinities) in the solution.
    """
    valid = _all_finite(factor, axis=[-2, -1]) & _all_finite(rhs, axis=-2)
    return tf.where(valid, solution, tf.constant(np.nan, solution.dtype))


def symmetric_solve(matrix, rhs, factorization="cholesky"):
    """x = matrix^{-1} rhs for symmetric positive-definite matrix (..., k, k), rhs (..., k, m).

    A column of x is NaN when the matrix is not positive definite or the system holds a NaN or
    an infinity (the module's failure policy). The gradient reuses the factor: d rhs =
    matrix^{-1} g, d matrix = -sym(d rhs x^T). The symmetrised matrix gradient is exact for every
    caller that builds the matrix symmetrically.
    """

    @tf.custom_gradient
    def solve(matrix, rhs):
        factor = cholesky_factor(matrix, factorization)
        solution = cholesky_solve(factor, rhs, factorization)

        def gradient(upstream):
            rhs_gradient = cholesky_solve(factor, upstream, factorization)
            matrix_gradient = -tf.matmul(rhs_gradient, solution, transpose_b=True)
            matrix_gradient = 0.5 * (matrix_gradient + tf.linalg.matrix_transpose(matrix_gradient))
            return matrix_gradient, rhs_gradient

        return solution, gradient

    return solve(matrix, rhs)


def packed_solve_systems_last(packed, rhs, size):
    """x_j = G_j^{-1} rhs_j for every column j, from builtin ops: packed (b, q, d), rhs (b, k, d) -> x (b, k, d).

    The matmul solver's path for the IRLS solves. Systems stay on the last axis, as the packed Gram
    GEMM makes them, so every step of the unrolled Cholesky and both substitutions works on contiguous
    runs of d values (in TFLite, where this runs, the (b, d, k, k) layout it replaced cost 2.3x as
    much). The failure policy is the module's: NaN for a column that is not positive definite or not
    finite. Its gradient is TensorFlow's, through the unrolled ops (only the last IRLS step needs one).
    """
    matrix = tf.gather(packed, packed_position_map(size), axis=1)  # (b, k*k, d)
    if matrix.shape[-1] is not None:  # -1 batch, static rest: TFLite sizes the tensor once, not at every call
        matrix = tf.reshape(matrix, [-1, size, size, matrix.shape[-1]])
    else:
        matrix = tf.reshape(matrix, tf.concat([tf.shape(matrix)[:1], [size, size], tf.shape(matrix)[2:]], axis=0))
    # NaN or inf anywhere in a system: its column of the solution is NaN. Not positive definite: NaN
    # pivots, which spread to every later column and, through the back substitution, to all of x.
    finite = _all_finite(packed, axis=1) & _all_finite(rhs, axis=1)
    columns = []
    remaining = matrix  # the trailing (size - index) x (size - index) block of every system
    for index in range(size):
        pivot = remaining[:, :1, :1, :]
        # Not positive definite: NaN (tf.where is a TFLite builtin), which spreads to every later column.
        pivot = tf.where(pivot > 0, pivot, tf.constant(np.nan, matrix.dtype))
        column = (remaining[:, :, :1, :] * tf.math.rsqrt(pivot))[:, :, 0, :]  # (b, size - index, d): column index of L
        columns.append(column)
        below = column[:, 1:, :]
        remaining = remaining[:, 1:, 1:, :] - tf.expand_dims(below, 2) * tf.expand_dims(below, 1)
    # Forward: L z = rhs, one column of L at a time.
    residual, forward = rhs, []
    for column in columns:
        value = residual[:, :1, :] / column[:, :1, :]
        forward.append(value)
        residual = residual[:, 1:, :] - column[:, 1:, :] * value
    # Backward, row by row: x_i = (z_i - sum_{j > i} L[j, i] x_j) / L[i, i], where column i of L holds
    # L[j, i] for j >= i. The solved values accumulate into one tensor through one-hot products, so no
    # step concatenates them (see _assemble) and each row costs a handful of ops: the column-oriented
    # form had to gather every row of L from k columns, ~2.8x the ops and twice the conversion time.
    unit_rows = np.eye(size, dtype=np.float32).reshape(size, 1, size, 1)
    solution = forward[-1] / columns[-1][:, :1, :] * tf.constant(unit_rows[-1], rhs.dtype)
    for index in reversed(range(size - 1)):
        column = columns[index]
        solved_below = tf.reduce_sum(column[:, 1:, :] * solution[:, index + 1 :, :], axis=1, keepdims=True)
        value = (forward[index] - solved_below) / column[:, :1, :]
        solution = solution + value * tf.constant(unit_rows[index], rhs.dtype)
    return tf.where(finite, solution, tf.constant(np.nan, solution.dtype))
