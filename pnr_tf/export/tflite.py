"""TFLite with builtin ops only: the regression switched to its matmul solver, both signatures kept."""

import tempfile
from pathlib import Path

import tensorflow as tf

from pnr_tf.export.keras_file import refuse_to_overwrite
from pnr_tf.export.serving_module import MULTI_SHOT
from pnr_tf.export.serving_module import SINGLE_SHOT
from pnr_tf.export.serving_module import build_export_archive
from pnr_tf.export.serving_module import with_solver

QUANTIZATIONS = ("none", "float16", "dynamic_range")


def convert_to_tflite(generator, quantize="none"):
    """The .tflite flatbuffer (bytes) with ``serving_default`` and ``multi_shot`` signatures.

    Batch size and M stay dynamic: run through ``Interpreter.get_signature_runner``, which resizes
    the inputs per call. TFLite cannot fail a call from inside the graph, so where a SavedModel
    answers INVALID_ARGUMENT (no visible joint in a source or the target) the output ``valid`` is 0. ``float16`` stores weights as float16; ``dynamic_range`` stores them as
    int8 and quantises activations on the fly.
    """
    if quantize not in QUANTIZATIONS:
        raise ValueError(f"quantize must be one of {QUANTIZATIONS}, got {quantize!r}")
    # TFLite has no builtin Assert: the in-graph checks stay in the SavedModel only.
    archive = build_export_archive(with_solver(generator, "matmul"), validate=False)
    with tempfile.TemporaryDirectory() as directory:
        archive.write_out(directory, verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(directory, signature_keys=[SINGLE_SHOT, MULTI_SHOT])
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        if quantize != "none":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if quantize == "float16":
            converter.target_spec.supported_types = [tf.float16]
        return converter.convert()


def export_tflite(generator, path, quantize="none", overwrite=False):
    """Writes the .tflite file (an existing one only with ``overwrite``); returns its path."""
    path = Path(path)
    refuse_to_overwrite(path, overwrite)
    path.parent.mkdir(parents=True, exist_ok=True)
    flatbuffer = convert_to_tflite(generator, quantize)
    temporary = path.with_name(path.name + ".partial")
    temporary.write_bytes(flatbuffer)
    temporary.replace(path)
    return path
