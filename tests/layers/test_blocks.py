"""The convolution blocks: the sub-pixel form of the decoder's transposed convolution."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from pnr_tf.layers.blocks import ConvolutionBlock
from pnr_tf.layers.blocks import subpixel_transposed_convolution


def transposed_convolution_float64(inputs, kernel):
    """TensorFlow's stride-2 "same" transposed convolution from its definition, in float64.

    Every input pixel (i, j) adds x[i, j] k[t, u] into output pixel (2i + t, 2j + u); "same" keeps
    the first 2H x 2W outputs. kernel is (3, 3, out, in), as Conv2DTranspose stores it.
    """
    batch, height, width, _ = inputs.shape
    inputs, kernel = inputs.astype(np.float64), kernel.astype(np.float64)
    output = np.zeros((batch, 2 * height + 1, 2 * width + 1, kernel.shape[2]))
    for row in range(height):
        for column in range(width):
            for t in range(3):
                for u in range(3):
                    output[:, 2 * row + t, 2 * column + u] += inputs[:, row, column] @ kernel[t, u].T
    return output[:, : 2 * height, : 2 * width]


@pytest.mark.parametrize("height, width", [(4, 3), (5, 2)])
def test_subpixel_form_equals_the_transposed_convolution(height, width):
    random = np.random.default_rng(height)
    inputs = random.standard_normal((2, height, width, 5)).astype(np.float32)
    kernel = random.standard_normal((3, 3, 7, 5)).astype(np.float32)
    expected = transposed_convolution_float64(inputs, kernel)
    output = subpixel_transposed_convolution(tf.constant(inputs), tf.constant(kernel)).numpy()
    assert output.shape == (2, 2 * height, 2 * width, 7)
    np.testing.assert_allclose(output, expected, rtol=0, atol=1e-5)  # float32 sums of 5 x 4 products of N(0, 1)
    keras_layer = keras.layers.Conv2DTranspose(7, 3, strides=2, padding="same", use_bias=False)
    keras_layer.build(inputs.shape)
    keras_layer.kernel.assign(kernel)
    np.testing.assert_allclose(keras_layer(inputs).numpy(), expected, rtol=0, atol=1e-5)  # the reference is Keras's


def test_subpixel_form_refuses_other_kernel_sizes():
    with pytest.raises(ValueError, match="3 x 3"):
        subpixel_transposed_convolution(tf.zeros((1, 2, 2, 1)), tf.zeros((4, 4, 1, 1)))


@pytest.mark.parametrize("norm", ["batch", "instance"])
def test_upsampling_block_gives_the_same_output_in_sub_pixel_form(norm):
    block = ConvolutionBlock(6, 3, strides=2, norm=norm, transpose=True)
    random = np.random.default_rng(1)
    inputs = random.standard_normal((2, 4, 3, 5)).astype(np.float32)
    block.build(inputs.shape)
    if norm == "batch":  # trained-looking statistics, so folding them into the kernel is exercised
        for weight in (block.normalization.gamma, block.normalization.beta, block.normalization.moving_mean):
            weight.assign(random.standard_normal(6).astype(np.float32))
        block.normalization.moving_variance.assign(random.uniform(0.2, 3.0, 6).astype(np.float32))
    expected = block(inputs, training=False).numpy()
    config = block.get_config()
    assert config["subpixel_upsampling"] is False
    subpixel = ConvolutionBlock.from_config({**config, "subpixel_upsampling": True})  # the same weights, the other form
    subpixel.build(inputs.shape)
    subpixel.set_weights(block.get_weights())
    output = subpixel(inputs, training=False).numpy()
    np.testing.assert_allclose(output, expected, rtol=0, atol=1e-5)
