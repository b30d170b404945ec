"""SavedModel in the layout TF-Serving watches: <base>/<model_name>/<version>/."""

import os
import re
import shutil
from pathlib import Path

from pnr_tf.export.keras_file import refuse_to_overwrite
from pnr_tf.export.serving_module import build_export_archive


def existing_versions(model_dir):
    """Numeric version folders under a model directory, ascending (what TF-Serving would load)."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        return []
    return sorted(int(entry.name) for entry in model_dir.iterdir() if entry.is_dir() and re.fullmatch(r"\d+", entry.name))


def export_saved_model(generator, base_dir, model_name="pnr", version=None, overwrite=False):
    """Writes the serving signatures of ``generator``; returns the version directory.

    ``version`` defaults to one more than the newest existing version, so re-exporting rolls a
    running TF-Serving forward. The model is written to a hidden temporary folder and renamed, so
    a server polling the directory never sees a half-written version. An existing version is
    replaced only with ``overwrite``.
    """
    model_dir = Path(base_dir) / model_name
    if version is None:
        version = (existing_versions(model_dir) or [0])[-1] + 1
    if int(version) < 0:
        raise ValueError(f"version must be a non-negative integer, got {version}")
    target = model_dir / str(int(version))
    refuse_to_overwrite(target, overwrite)
    model_dir.mkdir(parents=True, exist_ok=True)
    temporary = model_dir / f".writing-{int(version)}-{os.getpid()}"
    shutil.rmtree(temporary, ignore_errors=True)
    try:
        build_export_archive(generator).write_out(str(temporary), verbose=False)
        if target.exists():
            shutil.rmtree(target)
        os.rename(temporary, target)
    finally:
        shutil.rmtree(temporary, ignore_errors=True)
    return target
