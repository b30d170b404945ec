"""Loads a trained generator from a .keras file, a run directory or a checkpoint, with clear errors.

A run stopped midway is usable: training writes generator.keras with every checkpoint, and a
checkpoint prefix (``runs/x/checkpoints/ckpt-300``) or a run's checkpoints folder loads too, from
the run's config.yaml and the checkpointed weights (the weight average when the run kept one).
"""

import dataclasses
import os
import tempfile
import zipfile

import keras
import tensorflow as tf

from pnr_tf import files
from pnr_tf import pretrained
from pnr_tf import run_files
from pnr_tf.config import load_config
from pnr_tf.models.factory import generator_from_config
from pnr_tf.models.generator import PNRGenerator


@dataclasses.dataclass(frozen=True)
class ModelLocation:
    path: str  # a .keras file, or a checkpoint prefix (a local path or a URI)
    run_dir: str  # the folder of the run's config.yaml and evaluation/
    is_checkpoint: bool


def locate_model(path):
    """A .keras file, a run directory, a checkpoints folder, a checkpoint prefix or "pretrained" (the generator that
    ships with pnr_tf, ``pnr_tf.pretrained``) -> ModelLocation."""
    if str(path) == pretrained.NAME:
        path = str(pretrained.folder())
    path = str(path).rstrip("/")
    # A checkpoint prefix first: in-memory file systems report any prefix of a file as a folder.
    if files.is_file(f"{path}.index"):
        return ModelLocation(path, files.parent(files.parent(path)), True)
    if files.is_dir(path):
        if files.is_file(files.join(path, run_files.GENERATOR)):
            return ModelLocation(files.join(path, run_files.GENERATOR), path, False)
        checkpoints = files.join(path, run_files.CHECKPOINTS) if files.is_dir(files.join(path, run_files.CHECKPOINTS)) else path
        latest = tf.train.latest_checkpoint(checkpoints)
        if latest:
            return ModelLocation(latest, files.parent(checkpoints), True)
        raise FileNotFoundError(
            f"no generator in {path}: expected generator.keras or checkpoints/ (python -m pnr_tf.train writes both)"
        )
    if path.endswith(".keras"):
        if not files.is_file(path):
            raise FileNotFoundError(f"no generator at {path}")
        return ModelLocation(path, files.parent(path), False)
    raise FileNotFoundError(
        f"no generator at {path}: pass a .keras file, a training run directory, its checkpoints/ folder or a "
        "checkpoint such as runs/x/checkpoints/ckpt-300"
    )


def variables_by_path(owner):
    """Every variable of a Keras model or optimizer, keyed by its path, for tf.train.Checkpoint.

    TensorFlow's object-graph tracking does not see layers held in Keras 3 lists, so checkpointing
    the model object silently drops e.g. their batch-norm statistics; an explicit mapping keeps all
    (weights, batch-norm statistics, the row-dropout RNG state, optimizer slots and step count).
    """
    mapping = {}
    for variable in owner.variables:
        # Full paths are stable: the models and optimizers all have explicit names.
        key = variable.path.replace("/", ".")
        if key in mapping:
            raise ValueError(f"two variables of {owner.name} share the path {variable.path}")
        mapping[key] = variable
    return mapping


def _restore_from_checkpoint(location):
    config_path = files.join(location.run_dir, run_files.CONFIG)
    if not files.is_file(config_path):
        raise FileNotFoundError(f"the checkpoint {location.path} needs its run's config.yaml, which is not at {config_path}")
    generator = generator_from_config(load_config(config_path))
    # The reader takes the prefix as given; tf.train.list_variables would take a ram:// prefix for a folder.
    reader = tf.compat.v1.train.NewCheckpointReader(str(location.path))
    stored = {name.split("/", 1)[0] for name in reader.get_variable_to_shape_map()}
    owner = "generator_average" if "generator_average" in stored else "generator"
    status = tf.train.Checkpoint(**{owner: variables_by_path(generator)}).restore(str(location.path))
    status.expect_partial().assert_existing_objects_matched()
    return generator


def load_generator(path):
    """A PNRGenerator from a .keras file, a run directory or a checkpoint (see locate_model)."""
    location = locate_model(path)
    if location.is_checkpoint:
        return _restore_from_checkpoint(location)
    with tempfile.TemporaryDirectory() as directory:
        local = location.path
        if files.is_remote(local):  # read it once, then load the local copy
            local = os.path.join(directory, run_files.GENERATOR)
            with open(local, "wb") as copy:
                copy.write(files.read_bytes(location.path))
        if not zipfile.is_zipfile(local):  # Keras would call a truncated file "File not found"
            raise ValueError(f"{location.path} exists but is not a readable Keras model file (not a complete .keras zip archive): "
                             "truncated, or another kind of file")  # fmt: skip
        try:
            generator = keras.models.load_model(local, compile=False)
        except (OSError, ValueError, TypeError, KeyError, zipfile.BadZipFile) as error:
            reason = str(error).splitlines()[0][:200] if str(error) else type(error).__name__
            raise ValueError(f"{location.path} exists but is not a readable Keras model file ({reason}): truncated, or not a model") from None
    if not isinstance(generator, PNRGenerator):
        raise ValueError(f"{location.path} holds a {type(generator).__name__}, not a PNRGenerator")
    return generator
