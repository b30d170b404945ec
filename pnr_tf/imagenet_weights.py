"""Pretrained ImageNet weights from the Keras cache or an explicit path; never downloaded."""

import os
from pathlib import Path


def keras_cache_path(file_name):
    """Where keras.applications caches a weights file: $KERAS_HOME/models, by default ~/.keras/models."""
    keras_home = os.environ.get("KERAS_HOME", str(Path.home() / ".keras"))
    return Path(keras_home) / "models" / file_name


def find_weights(weights_path, file_name, purpose, alternative):
    """The weights file to load, or FileNotFoundError saying where to put it.

    purpose: what needs the weights ("the perceptual loss"); alternative: how to do without them.
    """
    weights = Path(weights_path) if weights_path else keras_cache_path(file_name)
    if not weights.is_file():
        raise FileNotFoundError(
            f"ImageNet weights not found at {weights}. {purpose[0].upper()}{purpose[1:]} needs them and this program "
            f"never downloads: copy {file_name} (as keras.applications caches it) to {keras_cache_path(file_name)} "
            f"or pass its path; {alternative}"
        )
    return weights
