"""Builds the generator and the two discriminators from a ModelConfig."""

from pnr_tf.layers.decoder import ImageDecoder
from pnr_tf.layers.encoders import AppearanceEncoder
from pnr_tf.layers.encoders import PoseEncoder
from pnr_tf.layers.regression import PNormRegression
from pnr_tf.models.discriminator import PatchDiscriminator
from pnr_tf.models.generator import PNRGenerator


def build_generator(model_config, row_keep_probability=1.0, seed=None):
    return PNRGenerator(
        appearance_encoder=AppearanceEncoder(
            model_config.base_filters, model_config.num_encoder_blocks, norm=model_config.norm, name="appearance_encoder"
        ),
        pose_encoder=PoseEncoder(
            model_config.base_filters,
            model_config.num_encoder_blocks,
            pose_dim=model_config.pose_dim,
            norm=model_config.norm,
            name="pose_encoder",
        ),
        regression=PNormRegression(
            p=model_config.p,
            num_iterations=model_config.num_iterations,
            delta=model_config.delta,
            ridge=model_config.ridge,
            solver=model_config.solver,
            name="regression",
        ),
        decoder=ImageDecoder(model_config.base_filters, model_config.num_decoder_blocks, norm=model_config.norm, name="decoder"),
        row_keep_probability=row_keep_probability,
        seed=seed,
        name="generator",
    )


def build_discriminator(model_config, name):
    return PatchDiscriminator(
        model_config.discriminator_filters, model_config.discriminator_blocks, norm=model_config.norm, name=name
    )
