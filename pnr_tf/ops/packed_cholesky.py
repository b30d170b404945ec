"""The fused packed Cholesky solve of ``kernels/packed_cholesky.cc``: built on first use, stock kernels otherwise.

For ``p = 1`` most of an IRLS step's time went to unpacking the Gram table to (b, d, k, k) and
to one Eigen factorisation per matrix. The C++ kernel solves all b * d systems straight from the
packed (b, q, d) table, 16 columns side by side in SIMD lanes, which makes the whole layer about 1.7x
faster on a CPU (BENCHMARKS.md). TensorFlow ships no such kernel, and a pip wheel cannot carry
one for every TensorFlow build, so the source is compiled with the C++ compiler on this machine
the first time it is needed (about 15 s, once per TensorFlow version and CPU) into a cache
directory, then loaded with ``tf.load_op_library``.

When there is no compiler, or the build fails, a warning says so and the regression falls back to
``tf.linalg.cholesky`` with identical results, only slower. The fused kernel has no GPU version, so
it is not used when TensorFlow sees a GPU, nor inside ``stock_kernels_only()``, which exports use
so that a SavedModel needs nothing but stock TensorFlow (TF-Serving cannot load custom ops).

Environment: ``PNR_TF_FUSED_KERNELS=0`` turns the kernel off; ``PNR_TF_KERNEL_CACHE`` sets the
cache directory (default ``$XDG_CACHE_HOME/pnr_tf/kernels`` or ``~/.cache/pnr_tf/kernels``);
``CXX`` names the compiler (default ``c++``).
"""

import contextlib
import hashlib
import os
import platform
import subprocess
import threading
import warnings
from pathlib import Path

import numpy as np
import tensorflow as tf

from pnr_tf.ops.symmetric_solve import upper_triangle_indices

SOURCE = Path(__file__).with_name("kernels") / "packed_cholesky.cc"
ENABLE_VARIABLE = "PNR_TF_FUSED_KERNELS"
CACHE_VARIABLE = "PNR_TF_KERNEL_CACHE"

_loading = threading.Lock()
_loaded = {}  # "library": the loaded module, or None after a failed attempt
_stock_only = threading.local()


class KernelBuildError(RuntimeError):
    """The fused kernel could not be compiled on this machine."""


def default_cache_dir():
    if os.environ.get(CACHE_VARIABLE):
        return Path(os.environ[CACHE_VARIABLE])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "pnr_tf" / "kernels"


def _compiler_command(source, output):
    compiler = os.environ.get("CXX", "c++")
    # -march=native: built on and for this CPU; the cache key below names the CPU.
    flags = ["-shared", "-fPIC", "-O3", "-march=native", "-w"]
    return [compiler, *flags, str(source), "-o", str(output), *tf.sysconfig.get_compile_flags(), *tf.sysconfig.get_link_flags()]


def _cpu_signature():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return line
    except OSError:
        pass
    return platform.processor()


def library_path(cache_dir=None):
    """Where the library built from the current source, TensorFlow and CPU lives (it may not exist yet)."""
    key = hashlib.sha256()
    for part in (SOURCE.read_bytes(), tf.__version__.encode(), " ".join(_compiler_command("", "")).encode(),
                 platform.machine().encode(), _cpu_signature().encode()):  # fmt: skip
        key.update(part)
    return Path(cache_dir or default_cache_dir()) / f"packed_cholesky-{key.hexdigest()[:16]}.so"


def build_library(cache_dir=None):
    """Compiles the kernel unless the cache holds it already; returns the library's path.

    Concurrent builders (test workers, training workers) wait on a lock file instead of
    compiling twice, and a library appears in the cache only complete (written, then renamed).
    """
    target = library_path(cache_dir)
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.with_suffix(".lock"), "w") as lock:
        try:
            import fcntl

            fcntl.flock(lock, fcntl.LOCK_EX)
        except ImportError:  # no fcntl (Windows): at worst two processes compile the same file
            pass
        if target.is_file():
            return target
        partial = target.with_suffix(f".{os.getpid()}.partial")
        try:
            result = subprocess.run(_compiler_command(SOURCE, partial), capture_output=True, text=True)
        except OSError as error:
            raise KernelBuildError(f"cannot run the C++ compiler: {error}") from error
        if result.returncode != 0:
            partial.unlink(missing_ok=True)
            message = "\n".join(line for line in result.stderr.splitlines() if "error" in line)[-2000:]
            raise KernelBuildError(f"compiling {SOURCE.name} failed:\n{message or result.stderr[-2000:]}")
        os.replace(partial, target)
    return target


def load_library():
    """The loaded op library, or None (turned off, or the build failed: warned once per process)."""
    if os.environ.get(ENABLE_VARIABLE, "1").strip().lower() in ("0", "false", "no", "off"):
        return None
    with _loading:
        if "library" not in _loaded:
            try:
                _loaded["library"] = tf.load_op_library(str(build_library()))
            except (KernelBuildError, OSError, tf.errors.OpError) as error:
                _loaded["library"] = None
                warnings.warn(
                    f"pnr_tf: the fused regression kernel is unavailable ({error}). Falling back to "
                    f"TensorFlow's stock kernels: same results, p=1 about 1.7x slower. "
                    f"Set {ENABLE_VARIABLE}=0 to silence this.",
                    RuntimeWarning,
                    stacklevel=2,
                )
        return _loaded["library"]


@contextlib.contextmanager
def stock_kernels_only():
    """Graphs traced inside use only stock TensorFlow ops (for SavedModels that TF-Serving loads)."""
    _stock_only.depth = getattr(_stock_only, "depth", 0) + 1
    try:
        yield
    finally:
        _stock_only.depth -= 1


def fused_library():
    """The library to use for the graph being traced now, or None for the stock kernels."""
    if getattr(_stock_only, "depth", 0) or tf.config.list_logical_devices("GPU"):
        return None
    return load_library()


def packed_cholesky_solve(library, packed, rhs, ridge=0.0, floor=0.0):
    """x_j = M_j^{-1} rhs_j for every column, M_j = G_j + (ridge * mean(diag G_j) + floor) I.

    packed (b, k(k+1)/2, d) holds the upper triangles of the G_j (``add_packed_ridge`` is done
    inside the kernel); rhs (b, d, k); returns (b, d, k). The gradient reuses the factor:
    d rhs = M^{-1} g and d M = -sym(d rhs x^T), written back in packed form, where an off-diagonal
    entry stands for both (u, v) and (v, u); the ridge adds (ridge / k) trace(d M) to the diagonal.
    """
    size = rhs.shape[-1]
    rows, columns = upper_triangle_indices(size)
    diagonal = (rows == columns).astype(np.float32).reshape(-1, 1)
    # d packed(u, v) = dM(u, v) + dM(v, u); the diagonal is counted once.
    symmetry = tf.constant(1.0 - 0.5 * diagonal)

    @tf.custom_gradient
    def solve(packed, rhs):
        solution, factor = library.pnr_packed_cholesky_solve(packed, rhs, ridge=float(ridge), floor=float(floor))

        def gradient(upstream):
            rhs_gradient = library.pnr_packed_cholesky_solve_with_factor(factor, upstream)
            # Rows-last (b, k, d) makes both gathers copies of contiguous rows.
            rhs_by_row = tf.transpose(rhs_gradient, [0, 2, 1])
            solution_by_row = tf.transpose(solution, [0, 2, 1])
            cross = tf.gather(rhs_by_row, rows, axis=1) * tf.gather(solution_by_row, columns, axis=1)
            cross += tf.gather(rhs_by_row, columns, axis=1) * tf.gather(solution_by_row, rows, axis=1)
            packed_gradient = -symmetry * cross
            if ridge:
                trace = tf.reduce_sum(packed_gradient * diagonal, axis=1, keepdims=True)  # (b, 1, d)
                packed_gradient += (ridge / size) * trace * diagonal
            return packed_gradient, rhs_gradient

        return solution, gradient

    return solve(packed, rhs)
