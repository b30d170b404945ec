"""Convolution building blocks shared by the encoders, the decoder and the discriminator."""

import keras

NORMALIZATIONS = ("batch", "instance")


def build_sublayer(layer, input_shape):
    """Builds a sublayer unless it is built already (loading restores sublayers before their parent)."""
    if not layer.built:
        layer.build(input_shape)
    return layer.compute_output_shape(input_shape)


def make_normalization(norm, name=None):
    """Batch norm (PATN's Market choice) or instance norm (GroupNormalization with one group per channel)."""
    if norm == "batch":
        # Synchronized: under a strategy the statistics cover the global batch, so N replicas train
        # like one device on the same global batch.
        return keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5, synchronized=True, name=name)
    if norm == "instance":
        return keras.layers.GroupNormalization(groups=-1, epsilon=1e-5, name=name)
    raise ValueError(f"norm must be one of {NORMALIZATIONS}, got {norm!r}")


@keras.saving.register_keras_serializable(package="pnr_tf")
class ConvolutionBlock(keras.layers.Layer):
    """Convolution (or transposed convolution), normalization, ReLU.

    Args:
        filters: output channels.
        kernel_size: square kernel size.
        strides: 1, or 2 to halve (or with ``transpose=True`` double) the spatial size.
        norm: ``"batch"`` or ``"instance"``.
        transpose: use ``Conv2DTranspose`` (upsampling).
        **kwargs: forwarded to ``keras.layers.Layer``.
    """

    def __init__(self, filters, kernel_size=3, strides=1, norm="batch", transpose=False, **kwargs):
        super().__init__(**kwargs)
        self.filters = filters
        self.kernel_size = kernel_size
        self.strides = strides
        self.norm = norm
        self.transpose = transpose
        convolution_class = keras.layers.Conv2DTranspose if transpose else keras.layers.Conv2D
        self.convolution = convolution_class(
            filters, kernel_size, strides=strides, padding="same", use_bias=False, dtype=self.dtype_policy, name="convolution"
        )
        self.normalization = make_normalization(norm, name="normalization")
        self.normalization.dtype_policy = self.dtype_policy

    def build(self, input_shape):
        build_sublayer(self.normalization, build_sublayer(self.convolution, input_shape))

    def call(self, inputs, training=None):
        return keras.ops.relu(self.normalization(self.convolution(inputs), training=training))

    def compute_output_shape(self, input_shape):
        return self.convolution.compute_output_shape(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "filters": self.filters,
                "kernel_size": self.kernel_size,
                "strides": self.strides,
                "norm": self.norm,
                "transpose": self.transpose,
            }
        )
        return config


@keras.saving.register_keras_serializable(package="pnr_tf")
class ResidualBlock(keras.layers.Layer):
    """x + norm(conv3x3(relu(norm(conv3x3(x))))), the block of Johnson et al. that PATN uses.

    Args:
        filters: channels in and out.
        norm: ``"batch"`` or ``"instance"``.
        **kwargs: forwarded to ``keras.layers.Layer``.
    """

    def __init__(self, filters, norm="batch", **kwargs):
        super().__init__(**kwargs)
        self.filters = filters
        self.norm = norm
        self.first = ConvolutionBlock(filters, 3, norm=norm, dtype=self.dtype_policy, name="first")
        self.second_convolution = keras.layers.Conv2D(
            filters, 3, padding="same", use_bias=False, dtype=self.dtype_policy, name="second_convolution"
        )
        self.second_normalization = make_normalization(norm, name="second_normalization")
        self.second_normalization.dtype_policy = self.dtype_policy

    def build(self, input_shape):
        if input_shape[-1] != self.filters:
            raise ValueError(f"ResidualBlock({self.filters}) needs {self.filters} input channels, got {input_shape[-1]}")
        build_sublayer(self.first, input_shape)
        build_sublayer(self.second_convolution, input_shape)
        build_sublayer(self.second_normalization, input_shape)

    def call(self, inputs, training=None):
        hidden = self.first(inputs, training=training)
        return inputs + self.second_normalization(self.second_convolution(hidden), training=training)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({"filters": self.filters, "norm": self.norm})
        return config
