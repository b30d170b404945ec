"""The exported signatures: `pnr_tf.inference.PoseTransfer`'s graph functions in a Keras ExportArchive.

Clients of a served model should not need to know our heatmap width, value range or tensor
layout, so the exported signatures take what a user has (uint8 photos, 18 (y, x) keypoints) and
return a uint8 image (and ``valid``); the generator's contract fixes everything else.
"""

import keras
import tensorflow as tf

from pnr_tf.conventions import NUM_JOINTS
from pnr_tf.inference import PoseTransfer
from pnr_tf.models.generator import copy_generator

SINGLE_SHOT = "serving_default"
MULTI_SHOT = "multi_shot"
ENCODE = "encode"
RENDER = "render"
SIGNATURES = (SINGLE_SHOT, MULTI_SHOT, ENCODE, RENDER)


def with_solver(generator, solver):
    """``generator``, or a copy sharing no state with it, whose regression runs ``solver``.

    Exports need stock ops: a SavedModel ``"cholesky"`` (TF-Serving cannot load our fused kernel),
    TFLite ``"matmul"`` (builtin ops only). The weights are identical because the regression layer
    has none of its own.
    """
    if generator.regression.resolved_solver == solver:
        return generator
    return copy_generator(generator, solver)


def single_shot_signature(height, width):
    return {
        "source_image": tf.TensorSpec((None, height, width, 3), tf.uint8, name="source_image"),
        "source_keypoints": tf.TensorSpec((None, NUM_JOINTS, 2), tf.float32, name="source_keypoints"),
        "target_keypoints": tf.TensorSpec((None, NUM_JOINTS, 2), tf.float32, name="target_keypoints"),
    }


def multi_shot_signature(height, width):
    return {
        "source_images": tf.TensorSpec((None, None, height, width, 3), tf.uint8, name="source_images"),
        "source_keypoints": tf.TensorSpec((None, None, NUM_JOINTS, 2), tf.float32, name="source_keypoints"),
        "target_keypoints": tf.TensorSpec((None, NUM_JOINTS, 2), tf.float32, name="target_keypoints"),
    }


def encode_signature(height, width):
    return {
        "source_images": tf.TensorSpec((None, None, height, width, 3), tf.uint8, name="source_images"),
        "source_keypoints": tf.TensorSpec((None, None, NUM_JOINTS, 2), tf.float32, name="source_keypoints"),
    }


def render_signature(pose_dim, appearance_dim):
    return {
        "coefficients": tf.TensorSpec((None, pose_dim, appearance_dim), tf.float32, name="coefficients"),
        "target_keypoints": tf.TensorSpec((None, NUM_JOINTS, 2), tf.float32, name="target_keypoints"),
    }


def with_batch_size(specs, batch_size):
    """The specs with their batch dimension fixed; render's coefficients stay one person."""
    if batch_size is None:
        return specs
    return {
        name: spec if name == "coefficients" else tf.TensorSpec((batch_size, *spec.shape[1:]), spec.dtype, name=spec.name)
        for name, spec in specs.items()
    }


def build_export_archive(generator, validate=True, signatures=SIGNATURES, batch_size=None):
    """A ``keras.export.ExportArchive`` with ``serving_default``, ``multi_shot``, ``encode`` and ``render``.

    ``encode`` turns source photos into W, the person without the pose; ``render`` draws a W (batch 1:
    one person in every pose of the batch) in target poses. ``batch_size`` fixes the batch dimension
    (TFLite plans a fixed-shape graph without the shape arithmetic of a dynamic one; BENCHMARKS.md).

    The regression runs stock TensorFlow ops unless the generator's is ``"matmul"`` already:
    TF-Serving and other SavedModel loaders know nothing of the fused kernel.
    """
    if generator.regression.resolved_solver == "fused":
        generator = with_solver(generator, "cholesky")
    model = PoseTransfer(generator, validate)
    archive = keras.export.ExportArchive()
    archive.track(generator)
    height, width = model.image_size
    pose_dim, appearance_dim = generator.pose_encoder.pose_dim, generator.appearance_encoder.output_dim
    endpoints = {
        SINGLE_SHOT: (model.single_shot, single_shot_signature(height, width)),
        MULTI_SHOT: (model.multi_shot, multi_shot_signature(height, width)),
        ENCODE: (model.encode_function, encode_signature(height, width)),
        RENDER: (model.render_function, render_signature(pose_dim, appearance_dim)),
    }
    for name in signatures:
        function, specs = endpoints[name]
        archive.add_endpoint(name, tf.function(function), [*with_batch_size(specs, batch_size).values()])
    return archive
