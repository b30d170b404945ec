"""SavedModel in the layout TF-Serving watches: <base>/<model_name>/<version>/."""

import os
import re
import shutil
import tempfile
from pathlib import Path

from pnr_tf import files
from pnr_tf.export.keras_file import refuse_to_overwrite
from pnr_tf.export.serving_module import build_export_archive


def existing_versions(model_dir):
    """Numeric version folders under a model directory, ascending (what TF-Serving would load)."""
    if not files.is_dir(model_dir):
        return []
    return sorted(int(name) for name in files.listdir(model_dir) if re.fullmatch(r"\d+", name) and files.is_dir(files.join(model_dir, name)))


def export_saved_model(generator, base_dir, model_name="pnr", version=None, overwrite=False):
    """Writes the serving signatures of ``generator``; returns the version directory (a string).

    ``version`` defaults to one more than the newest existing version, so re-exporting rolls a
    running TF-Serving forward. Locally the model is written to a hidden temporary folder and
    renamed, so a server polling the directory never sees a half-written version; on an object
    store (gs://...), which cannot rename folders, it is written locally and copied with
    saved_model.pb last (TF-Serving loads a version only once that file exists). An existing
    version is replaced only with ``overwrite``.
    """
    model_dir = files.join(base_dir, model_name)
    if version is None:
        version = (existing_versions(model_dir) or [0])[-1] + 1
    if int(version) < 0:
        raise ValueError(f"version must be a non-negative integer, got {version}")
    target = files.join(model_dir, str(int(version)))
    refuse_to_overwrite(target, overwrite)
    files.makedirs(model_dir)
    if files.is_remote(target):
        with tempfile.TemporaryDirectory() as directory:
            build_export_archive(generator).write_out(directory, verbose=False)
            files.remove_tree(target)
            for root, _, names in os.walk(directory):
                for name in sorted(names, key=lambda name: name == "saved_model.pb"):  # the graph file last
                    local = os.path.join(root, name)
                    files.write_bytes(files.join(target, os.path.relpath(local, directory)), Path(local).read_bytes())
        return target
    temporary = os.path.join(model_dir, f".writing-{int(version)}-{os.getpid()}")
    shutil.rmtree(temporary, ignore_errors=True)
    try:
        build_export_archive(generator).write_out(temporary, verbose=False)
        if os.path.exists(target):
            shutil.rmtree(target)
        os.rename(temporary, target)
    finally:
        shutil.rmtree(temporary, ignore_errors=True)
    return target
