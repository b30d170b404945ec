"""`python -m pnr_tf.train`: train a pNR generator (resumes from the output directory's last checkpoint).

    python -m pnr_tf.train --config configs/quickstart.yaml
    python -m pnr_tf.train --config configs/market_supervised.yaml --set data.root=/data/market --output-dir runs/lad
    python -m pnr_tf.train --config configs/market_supervised.yaml --set model.p=2 --dry-run
"""

import argparse
import os
import sys

import tensorflow as tf

from pnr_tf.config import ConfigError
from pnr_tf.config import load_config
from pnr_tf.config import to_yaml
from pnr_tf.data.annotations import DataFormatError
from pnr_tf.data.pipeline import BadSampleError
from pnr_tf.ops.packed_cholesky import KernelUnavailableError
from pnr_tf.training.run_directory import RunDirectoryBusyError
from pnr_tf.training.trainer import Trainer

# A peer stopped answering (train.collective_timeout_seconds): every worker stops, to resume together.
LOST_WORKER_ERRORS = (tf.errors.UnavailableError, tf.errors.DeadlineExceededError, tf.errors.CancelledError, tf.errors.AbortedError)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m pnr_tf.train", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="YAML config (defaults: SPEC.md's values)")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE", help="override a config value")
    parser.add_argument("--output-dir", default=None, help="checkpoints, logs, samples, generator.keras (default runs/<config name>)")
    parser.add_argument("--dry-run", action="store_true", help="print the resolved config and exit")
    arguments = parser.parse_args(argv)
    try:
        config = load_config(arguments.config, arguments.set)
    except ConfigError as error:
        parser.exit(2, f"config error: {error}\n")
    if arguments.dry_run:
        print(to_yaml(config), end="")
        return 0
    output_dir = arguments.output_dir or os.path.join("runs", os.path.splitext(os.path.basename(arguments.config or "default"))[0])
    try:
        model_path = Trainer(config, output_dir).fit()
    except BadSampleError as error:
        parser.exit(2, f"error: {error}\n(data.on_bad_sample: skip skips such rows and reports how many)\n")
    except (ConfigError, FileNotFoundError, KernelUnavailableError, DataFormatError, RunDirectoryBusyError) as error:
        parser.exit(2, f"error: {error}\n")
    except FloatingPointError as error:
        parser.exit(1, f"error: {error}\n")
    except LOST_WORKER_ERRORS as error:
        reason = str(getattr(error, "message", error)).splitlines()[0][:300]
        parser.exit(1, f"error: lost contact with another worker ({type(error).__name__}: {reason}). Every worker stops; "
                       f"start them all again to resume from the chief's last checkpoint in {output_dir}/checkpoints\n")  # fmt: skip
    except OSError as error:  # disk full, permissions: what could not be written, and where
        where = f" ({error.filename})" if error.filename else ""
        parser.exit(2, f"error: {error.strerror or error}{where}: free space or choose another --output-dir; "
                       "the last checkpoint stays restorable\n")  # fmt: skip
    if model_path is None:
        return 1
    print(f"saved {model_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
