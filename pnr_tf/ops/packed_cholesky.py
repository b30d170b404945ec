"""The fused packed Cholesky solve of ``kernels/packed_cholesky.cc``: how it is built, loaded and called.

For ``p = 1`` most of an IRLS step's time went to unpacking the Gram table to (b, d, k, k) and
to one Eigen factorisation per matrix. The C++ kernel solves all b * d systems straight from the
packed (b, q, d) table, 16 columns side by side in SIMD lanes; the IRLS weights, the rows' outer
products and the gradients of all three are one pass each where stock ops needed several. The layer
runs about 2-3x faster forward and backward on a CPU (BENCHMARKS.md). TensorFlow ships no such
kernel, and a pip wheel cannot carry one for every TensorFlow build, so the source is compiled with
this machine's C++ compiler once, into a cache directory, then loaded with ``tf.load_op_library``.

Building is an explicit step: ``python -m pnr_tf.ops.build_kernels``, or the first time a layer with
``solver="auto"`` or ``"fused"`` is constructed (``pnr_tf.ops.solvers.resolve_solver``), never while
a graph is traced. Compiler flags are tried in order, most specific first, so one flag a compiler or
TensorFlow's bundled headers reject never costs the kernel (``flag_sets``); each attempt has a time
limit. When every flag set fails, the reasons are kept beside the cache entry and the stock kernels
are used, with the same results (``KernelUnavailableError`` says why).

Environment: ``PNR_TF_KERNEL_CACHE`` sets the cache directory (default ``$XDG_CACHE_HOME/pnr_tf/kernels``
or ``~/.cache/pnr_tf/kernels``); ``CXX`` names the compiler (default ``c++``).
"""

import dataclasses
import hashlib
import json
import os
import platform
import shlex
import shutil
import subprocess
import threading
import time
from pathlib import Path

import tensorflow as tf

from pnr_tf import files

SOURCE = Path(__file__).with_name("kernels") / "packed_cholesky.cc"
CACHE_VARIABLE = "PNR_TF_KERNEL_CACHE"
DEFAULT_TIMEOUT_SECONDS = 300.0
_COMMON_FLAGS = ("-shared", "-fPIC", "-O3", "-w")

_loading = threading.Lock()
_loaded = {}  # library path -> loaded op module
_identities = {}  # compiler command -> its --version text


class KernelUnavailableError(RuntimeError):
    """The fused kernel cannot be used on this machine; the message says why."""



@dataclasses.dataclass(frozen=True)
class FlagSet:
    name: str
    flags: tuple


def flag_sets(machine=None):
    """Compiler flag sets to try, in order, for this machine's architecture.

    x86-64: the CPU's own instruction sets without AVX512-FP16, whose intrinsics in TensorFlow's
    bundled Eigen (PacketMathFP16.h) do not compile with g++ 12-13; then the CPU's own sets as the
    compiler sees them (g++ 11 and older clang do not know -mno-avx512fp16, nor AVX512-FP16); then
    x86-64-v3 (AVX2 + FMA, every x86 server CPU since 2013-2015); then the compiler's default target.
    aarch64: -mcpu=native, then armv8-a. Anything else: -march=native, then the default.
    """
    machine = (machine or platform.machine()).lower()
    if machine in ("x86_64", "amd64"):
        return [
            FlagSet("native", ("-march=native", "-mno-avx512fp16")),
            FlagSet("native-as-is", ("-march=native",)),
            FlagSet("x86-64-v3", ("-march=x86-64-v3",)),
            FlagSet("baseline", ()),
        ]
    if machine in ("aarch64", "arm64"):
        return [FlagSet("native", ("-mcpu=native",)), FlagSet("armv8-a", ("-march=armv8-a",)), FlagSet("baseline", ())]
    return [FlagSet("native", ("-march=native",)), FlagSet("baseline", ())]


def default_cache_dir():
    if os.environ.get(CACHE_VARIABLE):
        return Path(os.environ[CACHE_VARIABLE])
    return files.cache_root() / "kernels"


def compiler():
    """The C++ compiler command (``$CXX`` may carry arguments, e.g. ``ccache g++``)."""
    return shlex.split(os.environ.get("CXX", "c++")) or ["c++"]


def _compiler_identity():
    """The compiler's --version text, so another compiler or version gets its own cache entry."""
    command = tuple(compiler())
    if command not in _identities:
        try:
            result = subprocess.run([*command, "--version"], capture_output=True, text=True, timeout=30)
            _identities[command] = result.stdout.strip() or result.stderr.strip()
        except (OSError, subprocess.SubprocessError) as error:
            _identities[command] = f"unavailable: {error}"
    return _identities[command]


def _cpu_signature():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return line
    except OSError:
        pass
    return platform.processor()


def library_path(cache_dir=None):
    """Where the library for this source, TensorFlow, compiler and CPU lives (it may not exist yet)."""
    key = hashlib.sha256()
    parts = (SOURCE.read_bytes(), tf.__version__.encode(), _compiler_identity().encode(), platform.machine().encode(),
             _cpu_signature().encode(), repr([flag_set.flags for flag_set in flag_sets()]).encode())  # fmt: skip
    for part in parts:
        key.update(part)
    return Path(cache_dir or default_cache_dir()) / f"packed_cholesky-{key.hexdigest()[:16]}.so"


def build_record_path(library):
    """The JSON record beside a library: flags used, compiler, time, failed attempts."""
    return Path(library).with_suffix(".json")


def failure_record_path(library):
    return Path(library).with_suffix(".failed.json")


def _compile_command(flags, output):
    return [*compiler(), *_COMMON_FLAGS, *flags, str(SOURCE), "-o", str(output),
            *tf.sysconfig.get_compile_flags(), *tf.sysconfig.get_link_flags()]  # fmt: skip


def _first_error_lines(text, limit=2000):
    lines = [line for line in text.splitlines() if "error" in line.lower()]
    return ("\n".join(lines) or text)[-limit:]


def _accepts(flags, timeout):
    """Whether the compiler takes these flags at all: a fraction of a second, before a full compile."""
    if not flags:
        return True, ""
    command = [*compiler(), *flags, "-x", "c++", "-fsyntax-only", "-"]
    try:
        result = subprocess.run(command, input="int main() { return 0; }\n", capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return False, f"the flag check timed out after {timeout:.0f} s"
    except OSError as error:
        raise KernelUnavailableError(f"cannot run the C++ compiler {compiler()[0]!r}: {error}") from error
    return result.returncode == 0, _first_error_lines(result.stderr, 500)


def _compile(flag_set, output, timeout):
    """Compiles with one flag set; returns None on success, else the reason."""
    accepted, reason = _accepts(flag_set.flags, min(timeout, 60.0))
    if not accepted:
        return f"the compiler rejects {' '.join(flag_set.flags)}: {reason}"
    try:
        result = subprocess.run(_compile_command(flag_set.flags, output), capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return f"compiling timed out after {timeout:.0f} s"
    except OSError as error:
        raise KernelUnavailableError(f"cannot run the C++ compiler {compiler()[0]!r}: {error}") from error
    if result.returncode != 0:
        return f"compiling {SOURCE.name} failed:\n{_first_error_lines(result.stderr)}"
    return None


def build_library(cache_dir=None, timeout=DEFAULT_TIMEOUT_SECONDS, force=False):
    """Compiles the kernel unless the cache holds it; returns the library's path.

    Tries ``flag_sets()`` in order and keeps the first that compiles; the build record beside the
    library names it. Raises KernelUnavailableError when none does (also on later calls, from the
    recorded failure, until ``force=True`` or another compiler). Concurrent builders (test workers,
    training workers) wait on a lock file instead of compiling twice, and a library appears in the
    cache only complete (written, then renamed).
    """
    target = library_path(cache_dir)
    failure = failure_record_path(target)
    if target.is_file():
        return target
    if shutil.which(compiler()[0]) is None:
        raise KernelUnavailableError(f"no C++ compiler {compiler()[0]!r} on this machine (set CXX to use another)")
    if failure.is_file() and not force:
        raise KernelUnavailableError(_failure_message(json.loads(failure.read_text())))
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.with_suffix(".lock"), "w") as lock:
        try:
            import fcntl

            fcntl.flock(lock, fcntl.LOCK_EX)
        except ImportError:  # no fcntl (Windows): at worst two processes compile the same file
            pass
        if target.is_file():
            return target
        if failure.is_file() and not force:
            raise KernelUnavailableError(_failure_message(json.loads(failure.read_text())))
        attempts = []
        for flag_set in flag_sets():
            partial = target.with_suffix(f".{os.getpid()}.partial")
            start = time.perf_counter()
            try:
                reason = _compile(flag_set, partial, timeout)
            except KernelUnavailableError:
                partial.unlink(missing_ok=True)
                raise
            if reason is None:
                record = {
                    "library": str(target), "flag_set": flag_set.name, "flags": [*_COMMON_FLAGS, *flag_set.flags],
                    "compiler": compiler(), "compiler_version": _compiler_identity().splitlines()[0],
                    "tensorflow": tf.__version__, "machine": platform.machine(),
                    "seconds": round(time.perf_counter() - start, 1), "failed_attempts": attempts,
                }  # fmt: skip
                build_record_path(target).write_text(json.dumps(record, indent=2) + "\n")
                os.replace(partial, target)
                failure.unlink(missing_ok=True)
                return target
            partial.unlink(missing_ok=True)
            attempts.append({"flag_set": flag_set.name, "flags": list(flag_set.flags), "reason": reason})
        failure.write_text(json.dumps({"attempts": attempts, "compiler": compiler()}, indent=2) + "\n")
        raise KernelUnavailableError(_failure_message({"attempts": attempts}))


def _failure_message(record):
    reasons = "\n".join(f"- {attempt['flag_set']} ({' '.join(attempt['flags']) or 'no -march'}): {attempt['reason']}"
                        for attempt in record["attempts"])  # fmt: skip
    return (f"every compiler flag set failed for {SOURCE.name}:\n{reasons}\n"
            "(python -m pnr_tf.ops.build_kernels --force tries again)")  # fmt: skip


def build_record(cache_dir=None):
    """The build record of the library for this machine, or None when it is not built."""
    path = build_record_path(library_path(cache_dir))
    return json.loads(path.read_text()) if path.is_file() else None


def load_library(cache_dir=None, timeout=DEFAULT_TIMEOUT_SECONDS):
    """The loaded op library, building it first when needed; raises KernelUnavailableError."""
    with _loading:
        path = build_library(cache_dir, timeout)
        if str(path) not in _loaded:
            try:
                _loaded[str(path)] = tf.load_op_library(str(path))
            except (OSError, tf.errors.OpError) as error:
                raise KernelUnavailableError(f"cannot load {path}: {error}") from error
        return _loaded[str(path)]


def packed_cholesky_solve(library, packed, rhs, ridge=0.0, floor=0.0, differentiable=True):
    """x_j = M_j^{-1} rhs_j for every column, M_j = G_j + (ridge * mean(diag G_j) + floor) I.

    packed (b, k(k+1)/2, d) holds the upper triangles of the G_j (``add_packed_ridge`` is done
    inside the kernel); rhs (b, d, k); returns (b, d, k). A system whose matrix is not positive
    definite, or that holds a NaN or infinity (matrix or rhs), gives NaN in all of its solution.
    The gradient reuses the factor: d rhs = M^{-1} g and d M = -sym(d rhs x^T), written back in
    packed form, where an off-diagonal entry stands for both (u, v) and (v, u); the ridge adds
    (ridge / k) trace(d M) to the diagonal. ``differentiable=False`` (IRLS iterations under
    stop_gradient) skips writing the factor the gradient would need.
    """
    if not differentiable:
        return library.pnr_packed_cholesky_solve(packed, rhs, ridge=float(ridge), floor=float(floor), with_factor=False)[0]

    @tf.custom_gradient
    def solve(packed, rhs):
        solution, factor = library.pnr_packed_cholesky_solve(packed, rhs, ridge=float(ridge), floor=float(floor))

        def gradient(upstream):
            return library.pnr_packed_cholesky_solve_grad(factor, solution, upstream, ridge=float(ridge))

        return solution, gradient

    return solve(packed, rhs)


def irls_weights(library, appearance, prediction, row_weights, delta):
    """IRLS weights and weighted appearance by the kernel, with its gradient (also to row_weights).

    weights = row_weights / max(|appearance - prediction|, delta), weighted = weights * appearance;
    appearance and prediction (b, n, d), row_weights (b, n, 1). A NaN residual stays NaN.
    """

    @tf.custom_gradient
    def weigh(appearance, prediction, row_weights):
        outputs = library.pnr_irls_weights(appearance, prediction, row_weights, delta=float(delta))

        def gradient(weights_gradient, weighted_gradient):
            return library.pnr_irls_weights_grad(
                appearance, prediction, row_weights, weights_gradient, weighted_gradient, delta=float(delta)
            )

        return tuple(outputs), gradient

    return weigh(appearance, prediction, row_weights)


def row_outer_products(library, pose):
    """``symmetric_solve.row_outer_products`` by the kernel: (b, n, k) -> (b, k(k+1)/2, n), with its gradient.

    The stock form is two gathers forward and two UnsortedSegmentSums backward; the kernel makes
    one pass over the table each way.
    """

    @tf.custom_gradient
    def outer(pose):
        def gradient(upstream):
            return library.pnr_row_outer_products_grad(pose, upstream)

        return library.pnr_row_outer_products(pose), gradient

    return outer(pose)
