"""A training run's directory: what it holds, its lock, and what a resumed run may change.

    config.yaml          the resolved config of the run
    sessions.jsonl       one line per start: the regression solver it resolved to, devices, versions,
                         and the settings changed since the last start
    checkpoints/         tf.train.CheckpointManager (models, the weight average, both optimizers, RNG state)
    logs/                TensorBoard: every loss term, the adversarial schedule, validation SSIM / L1
                         (and the baselines, once), image grids
    samples/step_N.png   source | source pose | target pose | generated | target, every sample_every steps
    validation.jsonl     step, SSIM, L1 of each validation; the first line the baselines
    generator.keras      the generator (its weight average when train.ema_decay > 0), written with every
                         checkpoint and on SIGINT / SIGTERM, so a run stopped midway is usable
    generator_best.keras the same at the best validation SSIM so far
    split/               pairs-{train,validation,test}.csv when data.*_identities hold identities out
"""

import contextlib
import json
import os
import socket
from pathlib import Path

import tensorflow as tf

from pnr_tf import files
from pnr_tf import run_files
from pnr_tf.config import ConfigError
from pnr_tf.config import load_config
from pnr_tf.config import resume_changes


class RunDirectoryBusyError(RuntimeError):
    """Another process trains in this run directory."""


@contextlib.contextmanager
def run_directory_lock(output_dir):
    """An exclusive lock on <output_dir>/.lock (released when the process ends, even killed).

    Object stores (gs://, ...) have no locks: there the run directory is not guarded.
    """
    if files.is_remote(output_dir):
        yield
        return
    import fcntl  # POSIX only: imported where it is used

    path = Path(output_dir) / ".lock"
    with open(path, "a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            owner = lock.read().strip() or "another process"
            raise RunDirectoryBusyError(
                f"{output_dir} is in use by a training run ({owner}): wait for it to finish, or train into another --output-dir"
            ) from None
        lock.seek(0)
        lock.truncate()
        lock.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
        lock.flush()
        try:
            yield
        finally:
            lock.seek(0)
            lock.truncate()


def check_resumed_precision(output_dir, precision):
    """ConfigError when the run's last start resolved train.precision to float16 and this one does not, or the other
    way round (auto on another machine): float16's loss-scale variables are in the checkpoint or missing from it."""
    sessions = files.join(output_dir, run_files.SESSIONS)
    before = json.loads(files.read_text(sessions).splitlines()[-1]).get("precision") if files.is_file(sessions) else None
    if before is not None and (before == "mixed_float16") != precision.loss_scaling:
        raise ConfigError(f"the run's checkpoint was written in {before} and this machine resolves train.precision to {precision.policy}: "
                          f"float16's loss scaling changes what a checkpoint holds; set train.precision: {before} to resume here")  # fmt: skip


def changes_since_last_start(config, output_dir):
    """{key: (before, now)} of the settings a resumed run changes; ConfigError for those it may not
    (another model or data contract: ``pnr_tf.config.resume_changes``). Empty for a new run."""
    checkpoints = files.join(output_dir, run_files.CHECKPOINTS)
    previous = files.join(output_dir, run_files.CONFIG)
    if not (tf.train.latest_checkpoint(checkpoints) and files.is_file(previous)):
        return {}
    return resume_changes(load_config(previous), config)
