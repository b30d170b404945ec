"""Convolution building blocks shared by the encoders, the decoder and the discriminator."""

import keras
import numpy as np
import tensorflow as tf

NORMALIZATIONS = ("batch", "instance")


# For a stride-2, 3 x 3 "same" transposed convolution, output row 2m + phase reads input rows m - 1
# and m (the two taps of the sub-pixel convolution) through these kernel rows (-1: no kernel row).
_SUBPIXEL_KERNEL_ROWS = np.array([[2, 0], [-1, 1]])


def subpixel_transposed_convolution(inputs, kernel, bias=None, relu=False):
    """A stride-2, 3 x 3, "same", bias-free transposed convolution as a 2 x 2 convolution + depth_to_space.

    kernel is Conv2DTranspose's (3, 3, out, in). TensorFlow's transposed convolution adds
    x[m] * k[t] into output row 2m + t, so output row 2m + phase sums x[m - 1 + a] * k[t] over the
    taps a in {0, 1} with t = _SUBPIXEL_KERNEL_ROWS[phase, a]; the same for columns. Each of the four
    output phases is one group of channels of an ordinary convolution, interleaved by depth_to_space.
    The result equals the transposed convolution (the same products, summed in another order). Why:
    TFLite needs the output shape of a transposed convolution as a tensor, computed at every call when
    the batch is dynamic, and XNNPACK then leaves the op to a slow reference kernel. ``bias`` (out,)
    and ``relu`` apply per output channel before the interleaving, so the converter fuses them into
    the convolution (as it folds batch norm into an ordinary one).
    """
    if tuple(kernel.shape[:2]) != (3, 3):
        raise ValueError(f"the sub-pixel form covers 3 x 3 kernels, got {tuple(kernel.shape[:2])}")
    output_channels, input_channels = kernel.shape[2], kernel.shape[3]
    padded_kernel = tf.pad(kernel, [[0, 1], [0, 1], [0, 0], [0, 0]])  # row / column 3: zeros for "no kernel row"
    rows = np.where(_SUBPIXEL_KERNEL_ROWS < 0, 3, _SUBPIXEL_KERNEL_ROWS)
    # taps[a, b, phase_row, phase_column] = kernel[rows[phase_row, a], rows[phase_column, b]]
    tap_rows = rows.T[:, None, :, None] * np.ones((1, 2, 1, 2), np.int64)
    tap_columns = rows.T[None, :, None, :] * np.ones((2, 1, 2, 1), np.int64)
    taps = tf.gather_nd(padded_kernel, np.stack([tap_rows, tap_columns], axis=-1))  # (2, 2, 2, 2, out, in)
    taps = tf.transpose(taps, [0, 1, 5, 2, 3, 4])  # (2, 2, in, phase row, phase column, out)
    subpixel_kernel = tf.reshape(taps, [2, 2, input_channels, 4 * output_channels])
    padded = tf.pad(inputs, [[0, 0], [1, 0], [1, 0], [0, 0]])  # the tap a = 0 reads row m - 1
    phases = tf.nn.conv2d(padded, tf.cast(subpixel_kernel, inputs.dtype), strides=1, padding="VALID")
    if bias is not None:
        phases = tf.nn.bias_add(phases, tf.cast(tf.tile(bias, [4]), inputs.dtype))
    if relu:
        phases = tf.nn.relu(phases)
    return tf.nn.depth_to_space(phases, 2)


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
        subpixel_upsampling: run a 3x3 stride-2 transposed convolution as the equal 2x2 convolution and
            depth_to_space (``subpixel_transposed_convolution``), batch norm folded in at inference: the
            same outputs, in ops TFLite sizes when the model is prepared. The TFLite export's copy of
            the generator sets it; the weights are the same either way.
        **kwargs: forwarded to ``keras.layers.Layer``.
    """

    def __init__(self, filters, kernel_size=3, strides=1, norm="batch", transpose=False, subpixel_upsampling=False, **kwargs):
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
        self.subpixel_upsampling = subpixel_upsampling

    def build(self, input_shape):
        build_sublayer(self.normalization, build_sublayer(self.convolution, input_shape))

    def call(self, inputs, training=None):
        if not (self.subpixel_upsampling and self.transpose and self.strides == 2 and self.kernel_size == 3):
            return keras.ops.relu(self.normalization(self.convolution(inputs), training=training))
        if self.norm == "batch" and not training:
            # Batch norm at inference is a per-channel affine map: fold it into the kernel and a bias, as
            # the converter does for an ordinary convolution (unfolded, int8 rounded it separately).
            normalization = self.normalization
            scale = normalization.gamma * tf.math.rsqrt(normalization.moving_variance + normalization.epsilon)
            offset = normalization.beta - normalization.moving_mean * scale
            kernel = self.convolution.kernel * tf.cast(scale[:, None], self.convolution.kernel.dtype)
            return subpixel_transposed_convolution(inputs, kernel, offset, relu=True)
        features = subpixel_transposed_convolution(inputs, self.convolution.kernel)
        return keras.ops.relu(self.normalization(features, training=training))

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
                "subpixel_upsampling": self.subpixel_upsampling,
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
