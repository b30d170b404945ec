"""The generator as a .keras file for keras.models.load_model in downstream code (after `import pnr_tf`)."""

from pathlib import Path


def refuse_to_overwrite(path, overwrite):
    """FileExistsError for an existing export target unless overwrite: no format replaces one silently."""
    if Path(path).exists() and not overwrite:
        raise FileExistsError(f"{path} exists: pass --overwrite to replace it, or choose another --out / --model-name")


def export_keras(generator, path, overwrite=False):
    """Saves through a temporary name and renames, so an interrupted export leaves no truncated file.

    An existing file is replaced only with ``overwrite`` (the rule of every export format).
    """
    path = Path(path)
    if path.suffix != ".keras":
        raise ValueError(f"a Keras model file must end in .keras, got {path}")
    refuse_to_overwrite(path, overwrite)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.stem + ".partial.keras")
    generator.save(temporary)
    temporary.replace(path)
    return path
