"""pnr_tf: pose-guided person image generation with hidden p-norm regression (TensorFlow / Keras 3).

Importing the package registers every layer and model for ``keras.models.load_model``.
"""

from pnr_tf.layers.blocks import ConvolutionBlock
from pnr_tf.layers.blocks import ResidualBlock
from pnr_tf.layers.decoder import ImageDecoder
from pnr_tf.layers.encoders import AppearanceEncoder
from pnr_tf.layers.encoders import PoseEncoder
from pnr_tf.layers.regression import PNormRegression
from pnr_tf.models.discriminator import PatchDiscriminator
from pnr_tf.models.generator import PNRGenerator

__version__ = "0.1.0"
