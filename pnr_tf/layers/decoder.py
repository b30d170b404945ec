"""The image generator G: a target appearance feature map -> an image in [-1, 1]."""

import keras

from pnr_tf.layers.blocks import ConvolutionBlock
from pnr_tf.layers.blocks import ResidualBlock
from pnr_tf.layers.blocks import build_sublayer

UPSAMPLING_SCOPE = "upsampling"  # the two upsampling blocks' names (int8 TFLite keeps them float)


@keras.saving.register_keras_serializable(package="pnr_tf")
class ImageDecoder(keras.layers.Layer):
    """Residual blocks, two stride-2 transposed convs, a 7x7 conv to RGB and tanh.

    Input (batch, H/4, W/4, d) with d = 4 * base_filters; output (batch, H, W, 3) in [-1, 1], float32
    also under mixed precision.

    Args:
        base_filters: channels of the last upsampling stage (64: stages of 128 then 64).
        num_residual_blocks: residual blocks before the upsampling (N_g).
        norm: ``"batch"`` or ``"instance"``.
        subpixel_upsampling: the upsampling stages as sub-pixel convolutions (``ConvolutionBlock``): the
            TFLite export's form of the same decoder.
        **kwargs: forwarded to ``keras.layers.Layer``.
    """

    def __init__(self, base_filters=64, num_residual_blocks=6, norm="batch", subpixel_upsampling=False, **kwargs):
        super().__init__(**kwargs)
        self.base_filters = base_filters
        self.num_residual_blocks = num_residual_blocks
        self.norm = norm
        self.subpixel_upsampling = subpixel_upsampling
        policy = self.dtype_policy
        self.residual_blocks = [
            ResidualBlock(base_filters * 4, norm=norm, dtype=policy, name=f"residual_{index}")
            for index in range(num_residual_blocks)
        ]
        self.upsampling = [
            ConvolutionBlock(base_filters * 2, 3, strides=2, norm=norm, transpose=True, subpixel_upsampling=subpixel_upsampling,
                             dtype=policy, name=f"{UPSAMPLING_SCOPE}_0"),
            ConvolutionBlock(base_filters, 3, strides=2, norm=norm, transpose=True, subpixel_upsampling=subpixel_upsampling,
                             dtype=policy, name=f"{UPSAMPLING_SCOPE}_1"),
        ]
        self.to_image = keras.layers.Conv2D(3, 7, padding="same", dtype=policy, name="to_image")

    @property
    def input_dim(self):
        return self.base_filters * 4

    def stages(self):
        """The layers in the order they run (the last, ``to_image``, before the tanh)."""
        return [*self.residual_blocks, *self.upsampling, self.to_image]

    def build(self, input_shape):
        shape = input_shape
        for layer in self.stages():
            shape = build_sublayer(layer, shape)

    def call(self, inputs, training=None):
        features = inputs
        for layer in self.stages():
            features = layer(features, training=training)
        # The output stays float32 under mixed precision: losses and metrics compare it with images.
        return keras.ops.tanh(keras.ops.cast(features, "float32"))

    def compute_output_shape(self, input_shape):
        batch, height, width = input_shape[0], input_shape[1], input_shape[2]
        return (batch, None if height is None else height * 4, None if width is None else width * 4, 3)

    def get_config(self):
        config = super().get_config()
        config.update(
            {"base_filters": self.base_filters, "num_residual_blocks": self.num_residual_blocks, "norm": self.norm,
             "subpixel_upsampling": self.subpixel_upsampling}
        )
        return config
