"""Builds the generator and the two discriminators from a ModelConfig."""

import tensorflow as tf

from pnr_tf.conventions import NUM_JOINTS
from pnr_tf.layers.decoder import ImageDecoder
from pnr_tf.layers.encoders import AppearanceEncoder
from pnr_tf.layers.encoders import PoseEncoder
from pnr_tf.layers.regression import PNormRegression
from pnr_tf.models.discriminator import PatchDiscriminator
from pnr_tf.models.generator import InferenceContract
from pnr_tf.models.generator import PNRGenerator


def _generator(model_config, data_config, row_keep_probability, seed, dtype_policy):
    """The generator of a ModelConfig, not built; data_config (image size, heatmap sigma) becomes its inference contract."""
    contract = InferenceContract(data_config.image_height, data_config.image_width, data_config.heatmap_sigma,
                                 test_time_mirror=model_config.test_time_mirror)  # fmt: skip
    return PNRGenerator(
        appearance_encoder=AppearanceEncoder(
            model_config.base_filters, model_config.num_encoder_blocks, norm=model_config.norm, dtype=dtype_policy, name="appearance_encoder"
        ),
        pose_encoder=PoseEncoder(
            model_config.pose_base_filters or model_config.base_filters,
            model_config.num_encoder_blocks if model_config.num_pose_blocks is None else model_config.num_pose_blocks,
            pose_dim=model_config.pose_dim,
            norm=model_config.norm,
            stem_strides=model_config.pose_stem_strides,
            dtype=dtype_policy,
            name="pose_encoder",
        ),
        regression=PNormRegression(
            p=model_config.p,
            num_iterations=model_config.num_iterations,
            delta=model_config.delta,
            ridge=model_config.ridge,
            solver=model_config.solver,
            weight_gradient=model_config.irls_weight_gradient,
            name="regression",
        ),
        decoder=ImageDecoder(model_config.base_filters, model_config.num_decoder_blocks, norm=model_config.norm, dtype=dtype_policy, name="decoder"),
        row_keep_probability=row_keep_probability,
        seed=seed,
        contract=contract,
        dtype=dtype_policy,
        name="generator",
    )


def generator_from_config(config, dtype_policy="float32"):
    """The generator of a whole Config, its variables created for the config's image size.

    ``dtype_policy``: the Keras policy its layers compute in ("mixed_bfloat16": bfloat16 layers, float32
    weights; the regression is float32 under any policy).
    """
    generator = _generator(config.model, config.data, config.train.row_keep_probability, config.train.seed, dtype_policy)
    height, width = config.data.image_height, config.data.image_width
    generator({"source_image": tf.zeros((1, 1, height, width, 3)), "source_pose": tf.zeros((1, 1, height, width, NUM_JOINTS)),
               "target_pose": tf.zeros((1, height, width, NUM_JOINTS))})  # fmt: skip
    return generator


def discriminator_from_config(model_config, name, dtype_policy="float32"):
    return PatchDiscriminator(
        model_config.discriminator_filters, model_config.discriminator_blocks, norm=model_config.norm, dtype=dtype_policy, name=name
    )
