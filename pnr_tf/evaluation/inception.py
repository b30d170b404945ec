"""InceptionV3 (ImageNet) softmax and pool features for IS, mask-IS and FID; weights never downloaded."""

import keras
import numpy as np
import tensorflow as tf

from pnr_tf.conventions import from_pixels
from pnr_tf.imagenet_weights import find_weights

INCEPTION_WEIGHTS_FILE = "inception_v3_weights_tf_dim_ordering_tf_kernels.h5"  # Keras' InceptionV3 with its top
INPUT_SIZE = 299


def build_inception(weights_path=None, random_weights=False):
    """A model: (b, H, W, 3) uint8 RGB -> (softmax (b, 1000), pool features (b, 2048)).

    Images are resized bilinearly to 299 x 299 and scaled to [-1, 1] inside the model, as Keras'
    InceptionV3 expects. random_weights=True builds the same network randomly initialised (tests).
    """
    weights = None
    if not random_weights:
        weights = find_weights(
            weights_path, INCEPTION_WEIGHTS_FILE, "IS, mask-IS and FID (InceptionV3)",
            "or evaluate with --no-inception for the SSIM family alone.",
        )  # fmt: skip
    inception = keras.applications.InceptionV3(include_top=True, weights=None)
    if weights is not None:
        inception.load_weights(str(weights))
    network = keras.Model(inception.input, [inception.output, inception.get_layer("avg_pool").output])
    network.trainable = False

    @tf.function(input_signature=[tf.TensorSpec((None, None, None, 3), tf.uint8)])
    def outputs(images):
        resized = tf.image.resize(tf.cast(images, tf.float32), (INPUT_SIZE, INPUT_SIZE), method="bilinear")
        probabilities, features = network(from_pixels(resized), training=False)  # InceptionV3 reads [-1, 1], as our models do
        return probabilities, features

    return outputs


def inception_outputs(inception, images, batch_size=32):
    """Softmax (N, 1000) and pool features (N, 2048), float64, of (N, H, W, 3) uint8 images."""
    probabilities, features = [], []
    for start in range(0, len(images), batch_size):
        batch_probabilities, batch_features = inception(np.asarray(images[start : start + batch_size], np.uint8))
        probabilities.append(batch_probabilities.numpy())
        features.append(batch_features.numpy())
    return np.concatenate(probabilities).astype(np.float64), np.concatenate(features).astype(np.float64)
