"""The generator wrapped for clients: uint8 images and keypoints in, a uint8 image out.

Clients of a served model should not need to know our heatmap width, value range or tensor
layout, so the exported signatures take what a user has (a photo, 18 (y, x) keypoints) and
build the heatmaps inside the graph with the same function the training pipeline uses.
"""

import keras
import tensorflow as tf

from pnr_tf.data.keypoints import HEATMAP_SIGMA
from pnr_tf.data.keypoints import keypoints_to_heatmaps
from pnr_tf.models.generator import PNRGenerator

NUM_JOINTS = 18
SINGLE_SHOT = "serving_default"
MULTI_SHOT = "multi_shot"
OUTPUT_NAME = "image"


def model_image_size(generator):
    """(height, width) the generator was built for, read from its build config."""
    shapes = generator.get_build_config().get("input_shape")
    if not shapes:
        raise ValueError("the generator is not built: call it once or load it from a .keras file first")
    shape = shapes["target_pose"]
    return int(shape[1]), int(shape[2])


def with_solver(generator, solver):
    """``generator``, or a copy sharing no state with it, whose regression runs ``solver``.

    Exports need stock ops: a SavedModel ``"cholesky"`` (TF-Serving cannot load our fused kernel),
    TFLite ``"matmul"`` (builtin ops only). The weights are identical because the regression layer
    has none of its own.
    """
    if generator.regression.resolved_solver == solver:
        return generator
    config = generator.get_config()
    config["regression"]["config"]["solver"] = solver
    copy = PNRGenerator.from_config(config)
    copy.build_from_config(generator.get_build_config())
    copy.set_weights(generator.get_weights())
    return copy


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


class ServingFunctions:
    """The two client-facing functions over one generator.

    Args:
        generator: a built ``PNRGenerator``.
        heatmap_sigma: the Gaussian width the generator was trained with (data.heatmap_sigma).
        validate: add in-graph checks (equal batch sizes, M >= 1) that fail with INVALID_ARGUMENT.
            TFLite has no builtin Assert op, so its export turns them off.
    """

    def __init__(self, generator, heatmap_sigma=HEATMAP_SIGMA, validate=True):
        self.generator = generator
        self.height, self.width = model_image_size(generator)
        self.heatmap_sigma = float(heatmap_sigma)
        self.validate = validate

    def single_shot(self, source_image, source_keypoints, target_keypoints):
        """(b, H, W, 3) uint8, (b, 18, 2), (b, 18, 2) -> {"image": (b, H, W, 3) uint8}."""
        return self.multi_shot(tf.expand_dims(source_image, 1), tf.expand_dims(source_keypoints, 1), target_keypoints)

    def multi_shot(self, source_images, source_keypoints, target_keypoints):
        """(b, M, H, W, 3) uint8, (b, M, 18, 2), (b, 18, 2) -> {"image": (b, H, W, 3) uint8}."""
        if self.validate:
            source_images, source_keypoints, target_keypoints = self._checked(
                source_images, source_keypoints, target_keypoints
            )
        heatmaps = lambda keypoints: keypoints_to_heatmaps(keypoints, self.height, self.width, self.heatmap_sigma)  # noqa: E731
        inputs = {
            "source_image": tf.cast(source_images, tf.float32) / 127.5 - 1.0,
            "source_pose": heatmaps(source_keypoints),
            "target_pose": heatmaps(target_keypoints),
        }
        generated = self.generator(inputs, training=False)
        pixels = tf.clip_by_value(tf.round((generated + 1.0) * 127.5), 0.0, 255.0)
        return {OUTPUT_NAME: tf.cast(pixels, tf.uint8)}

    def _checked(self, source_images, source_keypoints, target_keypoints):
        image_shape = tf.shape(source_images)
        keypoint_shape = tf.shape(source_keypoints)
        batch_size = tf.shape(target_keypoints)[0]
        checks = [
            tf.debugging.assert_equal(
                image_shape[:2], keypoint_shape[:2],
                message="source images and source keypoints must have the same batch size and number of sources",
            ),
            tf.debugging.assert_equal(
                image_shape[0], batch_size, message="source images and target keypoints must have the same batch size"
            ),
            tf.debugging.assert_positive(image_shape[1], message="at least one source image is needed"),
        ]  # fmt: skip
        with tf.control_dependencies(checks):
            return tf.identity(source_images), tf.identity(source_keypoints), tf.identity(target_keypoints)


def build_export_archive(generator, heatmap_sigma=HEATMAP_SIGMA, validate=True):
    """A ``keras.export.ExportArchive`` with the ``serving_default`` and ``multi_shot`` endpoints.

    The regression runs stock TensorFlow ops unless the generator's is ``"matmul"`` already:
    TF-Serving and other SavedModel loaders know nothing of the fused kernel.
    """
    if generator.regression.resolved_solver == "fused":
        generator = with_solver(generator, "cholesky")
    functions = ServingFunctions(generator, heatmap_sigma, validate)
    archive = keras.export.ExportArchive()
    archive.track(generator)
    height, width = functions.height, functions.width
    archive.add_endpoint(SINGLE_SHOT, tf.function(functions.single_shot), [*single_shot_signature(height, width).values()])
    archive.add_endpoint(MULTI_SHOT, tf.function(functions.multi_shot), [*multi_shot_signature(height, width).values()])
    return archive
