"""VGG19 (ImageNet) features up to relu1_2 for the perceptual loss, loaded without network access."""

import keras
import tensorflow as tf

from pnr_tf.conventions import pixel_levels
from pnr_tf.imagenet_weights import find_weights

VGG19_WEIGHTS_FILE = "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5"
FEATURE_LAYER = "block1_conv2"  # relu1_2: Keras fuses the ReLU into the convolution
# Caffe-style preprocessing Keras' VGG19 weights expect: BGR, mean-subtracted, 0-255.
_BGR_MEAN = (103.939, 116.779, 123.68)


def build_vgg19_features(weights_path=None, random_weights=False, dtype_policy="float32"):
    """A model mapping images in [-1, 1] (b, H, W, 3, RGB) to VGG19 relu1_2 features.

    weights_path: the Keras `..._notop.h5` file; None looks in the standard Keras cache. Nothing is
    downloaded: a missing file is an error that says where to put it. random_weights=True builds the
    same network randomly initialised (tests). dtype_policy: what its layers compute in (the
    training step's policy; the loss compares the features in float32).
    """
    if random_weights:
        weights = None
    else:
        weights = find_weights(
            weights_path, VGG19_WEIGHTS_FILE, "the perceptual loss (VGG19)",
            "set loss.vgg19_weights to its path, or loss.perceptual_weight: 0 to train without the perceptual loss.",
        )  # fmt: skip
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(dtype_policy)  # keras.applications builds its layers with the global policy
    try:
        vgg = keras.applications.VGG19(include_top=False, weights=None, input_shape=(None, None, 3))
    finally:
        keras.config.set_dtype_policy(previous)
    if weights is not None:
        vgg.load_weights(str(weights))
    features = keras.Model(vgg.input, vgg.get_layer(FEATURE_LAYER).output, name="vgg19_relu1_2")
    features.trainable = False
    return features


def vgg_preprocess(images):
    """[-1, 1] RGB -> the 0-255, BGR, mean-subtracted input of Keras' VGG19 weights."""
    images = pixel_levels(images)
    return images[..., ::-1] - tf.constant(_BGR_MEAN, tf.float32)
