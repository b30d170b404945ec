"""Appearance encoder E_a and pose encoder E_p: images or heatmaps -> row matrices A (n x d), P (n x k)."""

import keras
import tensorflow as tf

from pnr_tf.layers.blocks import ConvolutionBlock
from pnr_tf.layers.blocks import ResidualBlock
from pnr_tf.layers.blocks import build_sublayer

# The name scope of the pose encoder's last layer, which makes the rows P the solves use. Kept float
# in int8 TFLite: P rounded to 256 levels moves W through the solve's conditioning (BENCHMARKS.md).
PROJECTION_SCOPE = "pose_projection"


@keras.saving.register_keras_serializable(package="pnr_tf")
class AppearanceEncoder(keras.layers.Layer):
    """7x7 conv, two stride-2 3x3 convs, residual blocks, then one row per stride-4 location.

    Input (batch, H, W, channels); output (batch, n, d) with n = ceil(H/4) ceil(W/4) in row-major
    order and d = 4 * base_filters.

    Args:
        base_filters: channels of the first convolution (64 in the paper's setting, so d = 256).
        num_residual_blocks: residual blocks after the downsampling (N_e).
        norm: ``"batch"`` or ``"instance"``.
        stem_strides: 1 (the paper's), or 2: the 7x7 stem, the most expensive convolution at full
            resolution, runs at half resolution and the second downsampling keeps the size, so the
            output stride is 4 either way (the leaner pose path of configs/*_fast.yaml).
        **kwargs: forwarded to ``keras.layers.Layer``.
    """

    def __init__(self, base_filters=64, num_residual_blocks=6, norm="batch", stem_strides=1, **kwargs):
        super().__init__(**kwargs)
        if stem_strides not in (1, 2):
            raise ValueError(f"stem_strides must be 1 or 2, got {stem_strides!r}")
        self.base_filters = base_filters
        self.num_residual_blocks = num_residual_blocks
        self.norm = norm
        self.stem_strides = stem_strides
        policy = self.dtype_policy
        self.stem = ConvolutionBlock(base_filters, 7, strides=stem_strides, norm=norm, dtype=policy, name="stem")
        self.downsampling = [
            ConvolutionBlock(base_filters * 2, 3, strides=2, norm=norm, dtype=policy, name="downsampling_0"),
            ConvolutionBlock(base_filters * 4, 3, strides=4 // (2 * stem_strides), norm=norm, dtype=policy, name="downsampling_1"),
        ]
        self.residual_blocks = [
            ResidualBlock(base_filters * 4, norm=norm, dtype=policy, name=f"residual_{index}")
            for index in range(num_residual_blocks)
        ]

    @property
    def output_dim(self):
        return self.base_filters * 4

    def trunk_layers(self):
        """The layers that make the stride-4 feature map, in the order they run."""
        return [self.stem, *self.downsampling, *self.residual_blocks]

    def build(self, input_shape):
        shape = input_shape
        for layer in self.trunk_layers():
            shape = build_sublayer(layer, shape)

    def feature_map(self, inputs, training=None):
        """The stride-4 feature map (batch, ceil(H/4), ceil(W/4), d) before it is cut into rows."""
        features = inputs
        for layer in self.trunk_layers():
            features = layer(features, training=training)
        return features

    def call(self, inputs, training=None):
        features = self.feature_map(inputs, training=training)
        height, width = features.shape[1], features.shape[2]
        if height is not None and width is not None:  # static rows, -1 batch: no runtime shape in TFLite
            return tf.reshape(features, [-1, height * width, self.output_dim])
        return tf.reshape(features, [tf.shape(features)[0], -1, self.output_dim])

    def compute_output_shape(self, input_shape):
        batch, height, width = input_shape[0], input_shape[1], input_shape[2]
        rows = None if height is None or width is None else -(-height // 4) * -(-width // 4)
        return (batch, rows, self.output_dim)

    def get_config(self):
        config = super().get_config()
        config.update(
            {"base_filters": self.base_filters, "num_residual_blocks": self.num_residual_blocks, "norm": self.norm,
             "stem_strides": self.stem_strides}  # fmt: skip
        )
        return config


@keras.saving.register_keras_serializable(package="pnr_tf")
class PoseEncoder(AppearanceEncoder):
    """The appearance encoder's trunk on pose heatmaps, then a linear layer to k pose features per row.

    Input (batch, H, W, 18); output (batch, n, pose_dim).

    Args:
        base_filters: channels of the first convolution.
        num_residual_blocks: residual blocks after the downsampling (N_e).
        pose_dim: k, the size of each pose row (32 by default).
        norm: ``"batch"`` or ``"instance"``.
        stem_strides: 1, or 2 for a half-resolution stem (see AppearanceEncoder).
        **kwargs: forwarded to ``keras.layers.Layer``.
    """

    def __init__(self, base_filters=64, num_residual_blocks=6, pose_dim=32, norm="batch", stem_strides=1, **kwargs):
        super().__init__(base_filters=base_filters, num_residual_blocks=num_residual_blocks, norm=norm, stem_strides=stem_strides, **kwargs)
        self.pose_dim = pose_dim
        self.projection = keras.layers.Dense(pose_dim, dtype=self.dtype_policy, name="projection")

    def build(self, input_shape):
        super().build(input_shape)
        build_sublayer(self.projection, (None, None, self.base_filters * 4))

    def call(self, inputs, training=None):
        features = super().call(inputs, training=training)
        rows = features.shape[1]
        with keras.name_scope(PROJECTION_SCOPE):
            if rows is None:
                return self.projection(features)
            # Dense on a 3-D tensor becomes a tensordot that reads the shape at run time; on the static
            # (-1, channels) view it is one matmul, so TFLite keeps every later tensor's size static.
            projected = self.projection(tf.reshape(features, [-1, features.shape[-1]]))
            return tf.reshape(projected, [-1, rows, self.pose_dim])

    def compute_output_shape(self, input_shape):
        batch, rows, _ = super().compute_output_shape(input_shape)
        return (batch, rows, self.pose_dim)

    def get_config(self):
        config = super().get_config()
        config.update({"pose_dim": self.pose_dim})
        return config
