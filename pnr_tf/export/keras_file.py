"""The generator as a .keras file for keras.models.load_model in downstream code (after `import pnr_tf`)."""

import os
import tempfile
from pathlib import Path

from pnr_tf import files


def refuse_to_overwrite(path, overwrite):
    """FileExistsError for an existing export target unless overwrite: no format replaces one silently."""
    if files.exists(path) and not overwrite:
        raise FileExistsError(f"{path} exists: pass --overwrite to replace it, or choose another --out / --model-name")


def export_keras(generator, path, overwrite=False):
    """Saves through a temporary name and renames, so an interrupted export leaves no truncated file.

    A URI (gs://, ram://) gets the file written locally first, then copied. An existing file is
    replaced only with ``overwrite`` (the rule of every export format).
    """
    path = str(path)
    if not path.endswith(".keras"):
        raise ValueError(f"a Keras model file must end in .keras, got {path}")
    refuse_to_overwrite(path, overwrite)
    with tempfile.TemporaryDirectory() as directory:
        local = os.path.join(directory, "model.keras")
        generator.save(local)
        files.write_bytes(path, Path(local).read_bytes())
    return path
