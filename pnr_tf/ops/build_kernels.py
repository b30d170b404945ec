"""`python -m pnr_tf.ops.build_kernels`: build the fused regression kernel now, and say how.

    python -m pnr_tf.ops.build_kernels            # build (or find) it; print where, with which flags
    python -m pnr_tf.ops.build_kernels --force    # try again after a failed build (e.g. a new compiler)

Training builds it on first use anyway (solver "auto"); this makes the step explicit, e.g. in a
Dockerfile, and shows what a machine's compiler does with it. Exit status 1 when no flag set
compiles: the regression then runs TensorFlow's own kernels, with the same results.
"""

import argparse
import sys
import time

from pnr_tf.ops import packed_cholesky


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m pnr_tf.ops.build_kernels", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cache-dir", default=None, help=f"default ${packed_cholesky.CACHE_VARIABLE} or ~/.cache/pnr_tf/kernels")
    parser.add_argument("--timeout", type=float, default=packed_cholesky.DEFAULT_TIMEOUT_SECONDS, help="seconds per compiler call")
    parser.add_argument("--force", action="store_true", help="retry even when an earlier build failed on this machine")
    arguments = parser.parse_args(argv)
    start = time.perf_counter()
    print(f"compiler: {' '.join(packed_cholesky.compiler())}; flag sets to try: "
          + ", ".join(f"{flag_set.name} ({' '.join(flag_set.flags) or 'compiler default'})" for flag_set in packed_cholesky.flag_sets()))  # fmt: skip
    try:
        path = packed_cholesky.build_library(arguments.cache_dir, arguments.timeout, force=arguments.force)
        packed_cholesky.load_library(arguments.cache_dir, arguments.timeout)
    except packed_cholesky.KernelUnavailableError as error:
        print(f"error: {error}", file=sys.stderr)
        print("the regression will use TensorFlow's own kernels (same results, p=1 about 2-3x slower)", file=sys.stderr)
        return 1
    record = packed_cholesky.build_record(arguments.cache_dir) or {}
    print(f"library: {path}")
    print(f"flag set: {record.get('flag_set')} ({' '.join(record.get('flags', []))})")
    print(f"compiler: {record.get('compiler_version')}; built in {record.get('seconds')} s for TensorFlow {record.get('tensorflow')}")
    for attempt in record.get("failed_attempts", []):
        first_line = attempt["reason"].splitlines()[0] if attempt["reason"] else ""
        print(f"  skipped {attempt['flag_set']} ({' '.join(attempt['flags'])}): {first_line[:160]}")
    print(f"loaded and ready ({time.perf_counter() - start:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
