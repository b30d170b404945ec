"""The p-norm regression (pNR) layer: estimate a pose-invariant W with A = P W, predict P_t W."""

import keras
import tensorflow as tf

from pnr_tf.ops.packed_cholesky import irls_weights
from pnr_tf.ops.packed_cholesky import load_library
from pnr_tf.ops.packed_cholesky import packed_cholesky_solve
from pnr_tf.ops.packed_cholesky import row_outer_products as fused_row_outer_products
from pnr_tf.ops.solvers import resolve_solver
from pnr_tf.ops.symmetric_solve import add_packed_ridge
from pnr_tf.ops.symmetric_solve import add_relative_ridge
from pnr_tf.ops.symmetric_solve import packed_solve_systems_last
from pnr_tf.ops.symmetric_solve import packed_weighted_grams
from pnr_tf.ops.symmetric_solve import row_outer_products
from pnr_tf.ops.symmetric_solve import symmetric_solve
from pnr_tf.ops.symmetric_solve import unpack_columns

# Added to the relative ridge so an all-zero pose (Gram = 0) still gives a finite W (= 0).
ABSOLUTE_RIDGE_FLOOR = 1e-6
REGRESSION_SCOPE = "p_norm_regression"  # the name scope of every op the regression adds


@keras.saving.register_keras_serializable(package="pnr_tf")
class PNormRegression(keras.layers.Layer):
    """Hidden p-norm regression of appearance rows on pose rows (the paper's pNR module).

    Step 1 estimates ``W = argmin_W sum |A - P W|^p`` per example from the source rows; step 2
    predicts the target appearance ``A_t = P_t W``. ``p = 2`` is ridge-regularised least squares;
    ``p = 1`` (least absolute deviations) runs IRLS from the least-squares solution, with the
    gradient taken through the last iteration only, the incoming W held constant.

    The computation always runs in float32, also under a mixed-precision policy.

    Args:
        p: 1 (least absolute deviations, IRLS) or 2 (least squares).
        num_iterations: IRLS iterations T for ``p = 1`` (at least 1).
        delta: residual floor in the IRLS weights ``1 / max(|r|, delta)``.
        ridge: ridge strength relative to the mean diagonal of each Gram matrix.
        solver: ``"auto"`` (default: the fused CPU kernel of ``pnr_tf.ops.packed_cholesky`` when
            it builds and no GPU is visible, else ``"cholesky"``), ``"fused"`` (the kernel or an
            error), ``"cholesky"`` (``tf.linalg.cholesky``) or ``"matmul"`` (an unrolled Cholesky of
            matmul, slicing and elementwise ops, which TFLite converts with builtin ops only). It is
            resolved once, when the layer is constructed (``resolved_solver``); the config keeps
            the requested one, so a saved model resolves again on the machine that loads it.
        weight_gradient: whether the last IRLS iteration's gradient runs through its weights
            ``1 / max(|a - P w|, delta)`` as well as through the solve. False holds them constant:
            the last iteration is then differentiated as the weighted least squares it solves, and
            A and P get no terms of size up to ``1 / delta^2`` from rows that fit within delta.
        **kwargs: forwarded to ``keras.layers.Layer``.

    A system that is not positive definite or holds NaN / inf gives NaN (every solver alike);
    ``row_weights`` must be finite and non-negative (checked in the graph).

    Example:
    >>> regression = PNormRegression(p=1)
    >>> source_appearance = tf.random.normal((2, 512, 256))  # (batch, rows, d)
    >>> source_pose = tf.random.normal((2, 512, 32))  # (batch, rows, k)
    >>> target_pose = tf.random.normal((2, 512, 32))
    >>> regression(source_appearance, source_pose, target_pose).shape
    TensorShape([2, 512, 256])

    Multi-shot: stack the rows of M sources, (batch, M * n, .), before calling; M may vary.

    Reference: "Pose Guided Person Image Generation with Hidden p-Norm Regression", eq. (1)-(4).
    """

    def __init__(self, p=1, num_iterations=5, delta=1e-2, ridge=1e-3, solver="auto", weight_gradient=True, **kwargs):
        # The solve stays float32 under mixed precision: float16 Gram matrices are not usable.
        kwargs["dtype"] = "float32"
        super().__init__(**kwargs)
        if p not in (1, 2):
            raise ValueError(f"p must be 1 or 2, got {p!r}")
        if int(num_iterations) != num_iterations or num_iterations < 1:
            raise ValueError(f"num_iterations must be a positive integer, got {num_iterations!r}")
        if not delta > 0:
            raise ValueError(f"delta must be positive, got {delta!r}")
        if not ridge >= 0:
            raise ValueError(f"ridge must be non-negative, got {ridge!r}")
        self.p = int(p)
        self.num_iterations = int(num_iterations)
        self.delta = float(delta)
        self.ridge = float(ridge)
        self.solver = solver
        self.weight_gradient = bool(weight_gradient)
        self.resolved_solver = resolve_solver(solver)  # raises for an unknown name

    def estimate(self, appearance, pose, row_weights=None):
        """W (batch, k, d) from appearance (batch, n, d), pose (batch, n, k), row_weights (batch, n) or None."""
        # One name scope for all of the regression's ops: int8 TFLite export keeps exactly these in float.
        with tf.name_scope(REGRESSION_SCOPE):
            return self._estimate(appearance, pose, row_weights)

    def _estimate(self, appearance, pose, row_weights):
        appearance = tf.cast(appearance, tf.float32)
        pose = tf.cast(pose, tf.float32)
        if pose.shape[-1] is None:
            raise ValueError("The pose feature size k (last axis) must be known when the graph is built.")
        if row_weights is None:
            row_weights = tf.zeros_like(pose[..., 0]) + 1.0  # not tf.ones(tf.shape(...)): a runtime shape in TFLite
        else:
            row_weights = tf.cast(row_weights, tf.float32)
            # A negative or non-finite weight makes the systems indefinite or NaN: refuse it here, by name.
            checks = [
                tf.debugging.assert_all_finite(row_weights, "PNormRegression: row_weights must be finite"),
                tf.debugging.assert_non_negative(row_weights, message="PNormRegression: row_weights must be >= 0"),
            ]
            with tf.control_dependencies(checks):
                row_weights = tf.identity(row_weights)
        row_weights = tf.expand_dims(row_weights, -1)  # (batch, n, 1)

        coefficients = self._least_squares(appearance, pose, row_weights)
        if self.p == 2:
            return coefficients

        outer = fused_row_outer_products(load_library(), pose) if self.resolved_solver == "fused" else row_outer_products(pose)
        # Earlier IRLS iterations carry no gradient: run them on stopped inputs so the loop
        # records nothing for the backward pass.
        stopped = [tf.stop_gradient(tensor) for tensor in (appearance, pose, outer, row_weights)]

        def body(iteration, current):
            return iteration + 1, self.irls_step(*stopped, current, differentiable=False)

        _, coefficients = tf.while_loop(
            lambda iteration, current: iteration < self.num_iterations - 1,
            body,
            (tf.constant(0), tf.stop_gradient(coefficients)),
        )
        # The last iteration carries the gradient, from the incoming W held constant.
        return self.irls_step(appearance, pose, outer, row_weights, tf.stop_gradient(coefficients), weight_gradient=self.weight_gradient)

    def call(self, source_appearance, source_pose, target_pose, row_weights=None):
        return self.predict(target_pose, self.estimate(source_appearance, source_pose, row_weights))

    def predict(self, target_pose, coefficients):
        """Step 2: A_t = P_t W; target_pose (batch, n_t, k), coefficients (batch or 1, k, d) -> (batch, n_t, d)."""
        with tf.name_scope(REGRESSION_SCOPE):
            return tf.matmul(tf.cast(target_pose, tf.float32), tf.cast(coefficients, tf.float32))

    def _least_squares(self, appearance, pose, row_weights):
        weighted_pose = pose * row_weights
        gram = tf.matmul(weighted_pose, pose, transpose_a=True)  # (batch, k, k)
        rhs = tf.matmul(weighted_pose, appearance, transpose_a=True)  # (batch, k, d)
        system = add_relative_ridge(gram, self.ridge, ABSOLUTE_RIDGE_FLOOR)
        return symmetric_solve(system, rhs, self._factorization)

    def irls_step(self, appearance, pose, outer, row_weights, coefficients, differentiable=True, weight_gradient=True):
        """One IRLS update of every column of W: w_j = (P^T D_j P + l_j I)^-1 P^T D_j a_j.

        appearance (b, n, d), pose (b, n, k), outer = ``row_outer_products(pose)``, row_weights
        (b, n, 1), coefficients (b, k, d). ``differentiable=False`` lets the fused kernel skip what
        only the gradient needs; ``weight_gradient=False`` holds the weights D_j constant.
        """
        prediction = tf.matmul(pose, coefficients)
        if self.resolved_solver == "fused" and not (differentiable and weight_gradient):  # one pass, no gradient of its own
            weights, weighted_appearance = load_library().pnr_irls_weights(appearance, prediction, row_weights, delta=self.delta)
        elif self.resolved_solver == "fused":  # the same pass, and one for its gradient
            weights, weighted_appearance = irls_weights(load_library(), appearance, prediction, row_weights, self.delta)
        else:
            weights = row_weights / tf.maximum(tf.abs(appearance - prediction), self.delta)  # (batch, n, d)
            weighted_appearance = weights * appearance
        if not weight_gradient:
            # D_j as numbers: the gradient reaches A through D_j a_j and P through the Gram matrices only.
            weights = tf.stop_gradient(weights)
            weighted_appearance = weights * appearance
        size = pose.shape[-1]
        packed = packed_weighted_grams(outer, weights)  # (batch, k(k+1)/2, d): one GEMM
        if self.resolved_solver == "matmul":  # builtin ops for TFLite, systems on the last axis throughout
            packed = add_packed_ridge(packed, size, self.ridge, ABSOLUTE_RIDGE_FLOOR)
            return packed_solve_systems_last(packed, tf.matmul(pose, weighted_appearance, transpose_a=True), size)  # (batch, k, d)
        rhs = tf.matmul(weighted_appearance, pose, transpose_a=True)  # (batch, d, k)
        if self.resolved_solver == "fused":  # ridge and solve in one kernel, straight from the packing
            solution = packed_cholesky_solve(load_library(), packed, rhs, self.ridge, ABSOLUTE_RIDGE_FLOOR, differentiable)  # (batch, d, k)
        else:
            packed = add_packed_ridge(packed, size, self.ridge, ABSOLUTE_RIDGE_FLOOR)
            system = unpack_columns(packed, size)  # (batch, d, k, k)
            solution = tf.squeeze(symmetric_solve(system, tf.expand_dims(rhs, -1), self._factorization), -1)
        return tf.transpose(solution, [0, 2, 1])

    @property
    def _factorization(self):
        """The dense factorisation for the solves the fused kernel does not cover (least squares)."""
        return "matmul" if self.resolved_solver == "matmul" else "cholesky"

    def compute_output_shape(self, source_appearance_shape, source_pose_shape, target_pose_shape, row_weights_shape=None):
        return (target_pose_shape[0], target_pose_shape[1], source_appearance_shape[-1])

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "p": self.p,
                "num_iterations": self.num_iterations,
                "delta": self.delta,
                "ridge": self.ridge,
                "solver": self.solver,
                "weight_gradient": self.weight_gradient,
            }
        )
        return config
