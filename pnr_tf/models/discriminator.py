"""Patch discriminator used for both D_A (image + source image) and D_P (image + target pose)."""

import keras

from pnr_tf.layers.blocks import ConvolutionBlock
from pnr_tf.layers.blocks import ResidualBlock
from pnr_tf.layers.blocks import build_sublayer


@keras.saving.register_keras_serializable(package="pnr_tf")
class PatchDiscriminator(keras.Model):
    """PATN's ResnetDiscriminator topology with a 1x1 head to one logit per stride-4 patch.

    7x7 conv, two stride-2 3x3 convs, residual blocks, 1x1 conv to one logit. Input (batch, H, W, C)
    with any C (6 for D_A, 3 + 18 for D_P); output (batch, H/4, W/4, 1) float32 logits.

    Args:
        base_filters: channels of the first convolution.
        num_residual_blocks: residual blocks after the downsampling (3 in PATN).
        norm: ``"batch"`` or ``"instance"``.
        **kwargs: forwarded to ``keras.Model``.
    """

    def __init__(self, base_filters=64, num_residual_blocks=3, norm="batch", **kwargs):
        super().__init__(**kwargs)
        self.base_filters = base_filters
        self.num_residual_blocks = num_residual_blocks
        self.norm = norm
        policy = self.dtype_policy
        self.body = [
            ConvolutionBlock(base_filters, 7, norm=norm, dtype=policy, name="stem"),
            ConvolutionBlock(base_filters * 2, 3, strides=2, norm=norm, dtype=policy, name="downsampling_0"),
            ConvolutionBlock(base_filters * 4, 3, strides=2, norm=norm, dtype=policy, name="downsampling_1"),
            *[
                ResidualBlock(base_filters * 4, norm=norm, dtype=policy, name=f"residual_{index}")
                for index in range(num_residual_blocks)
            ],
        ]
        self.head = keras.layers.Conv2D(1, 1, dtype=policy, name="head")

    def build(self, input_shape):
        shape = input_shape
        for layer in [*self.body, self.head]:
            shape = build_sublayer(layer, shape)
        self.built = True

    def call(self, inputs, training=None):
        features = inputs
        for layer in self.body:
            features = layer(features, training=training)
        return keras.ops.cast(self.head(features), "float32")

    def compute_output_shape(self, input_shape):
        batch, height, width = input_shape[0], input_shape[1], input_shape[2]
        return (batch, None if height is None else -(-height // 4), None if width is None else -(-width // 4), 1)

    def get_config(self):
        config = super().get_config()
        config.update(
            {"base_filters": self.base_filters, "num_residual_blocks": self.num_residual_blocks, "norm": self.norm}
        )
        return config
