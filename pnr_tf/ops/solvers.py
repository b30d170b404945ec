"""Which solver the regression runs: chosen once, explicitly, and reported.

``"auto"`` picks the fused CPU kernel when it builds (or is cached) and no GPU is visible, else
TensorFlow's Cholesky; ``"fused"`` demands the kernel (an error says why when it cannot be used);
``"cholesky"`` is stock ``tf.linalg.cholesky``; ``"matmul"`` an unrolled Cholesky of builtin ops
that TFLite converts. All four give the same numbers to float32 rounding, and the same failure
policy (NaN for a system that is not positive definite or holds NaN / inf).
"""

import warnings

import tensorflow as tf

from pnr_tf.ops import packed_cholesky

SOLVERS = ("auto", "fused", "cholesky", "matmul")
_warned = set()


def resolve_solver(requested):
    """The concrete solver ("fused", "cholesky" or "matmul") for a requested one, on this machine.

    Resolution may build the fused kernel (once per machine, cached): it runs when a regression
    layer is constructed, never while a graph is traced. ``"auto"`` falling back to "cholesky"
    because the kernel cannot be built warns once per process with the reason.
    """
    if requested not in SOLVERS:
        raise ValueError(f"solver must be one of {SOLVERS}, got {requested!r}")
    if requested in ("cholesky", "matmul"):
        return requested
    if requested == "fused":
        try:
            packed_cholesky.load_library()
        except packed_cholesky.KernelUnavailableError as error:
            raise packed_cholesky.KernelUnavailableError(
                f'solver="fused" needs the fused CPU kernel, which is unavailable here: {error}\n'
                'Use solver="auto" (fused where available) or "cholesky".'
            ) from None
        return "fused"
    if tf.config.list_logical_devices("GPU"):
        return "cholesky"  # the fused kernel is CPU-only
    try:
        packed_cholesky.load_library()
    except packed_cholesky.KernelUnavailableError as error:
        if str(error) not in _warned:
            _warned.add(str(error))
            warnings.warn(
                f"pnr_tf: the fused regression kernel is unavailable, so solver='auto' uses TensorFlow's "
                f"Cholesky (same results, p=1 about 2-3x slower): {error}",
                RuntimeWarning,
                stacklevel=3,
            )
        return "cholesky"
    return "fused"


def describe_solver(resolved):
    """One line for logs and run records: the solver and, for the fused kernel, how it was built."""
    if resolved != "fused":
        return {"cholesky": "cholesky (tf.linalg.cholesky)", "matmul": "matmul (unrolled Cholesky, TFLite builtins)"}[resolved]
    record = packed_cholesky.build_record() or {}
    return f"fused ({record.get('library', 'kernel')}, flags {' '.join(record.get('flags', []))})"
