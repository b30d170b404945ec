"""pnr_tf: pose-guided person image generation with hidden p-norm regression (TensorFlow / Keras 3).

Importing the package registers every layer and model for ``keras.models.load_model``. It also
imports TensorFlow, with its start-up messages filtered by TF_CPP_MIN_LOG_LEVEL (default 2 here;
``pnr_tf.tensorflow_logging``), so every ``python -m pnr_tf.*`` command starts quietly, and with
TensorFlow's oneDNN CPU kernels on (TF_ENABLE_ONEDNN_OPTS=1 unless set) on every x86 CPU.
"""

import os

from pnr_tf import tensorflow_logging

tensorflow_logging.set_default_log_level()
# TensorFlow turns its oneDNN CPU kernels on by itself only where the CPU has AVX-512 VNNI, BF16 or AMX.
# Elsewhere (AVX2: AMD EPYC, older Xeons) its Eigen kernels trained market_cpu 3.3x slower (BENCHMARKS.md).
# TF_ENABLE_ONEDNN_OPTS=0 turns them off; it must be set before TensorFlow is imported.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
with tensorflow_logging.quiet_startup():
    import tensorflow as _tensorflow

    _tensorflow.config.list_physical_devices("GPU")  # the first device listing is when cuInit runs

from pnr_tf.conventions import MAX_PIXELS  # noqa: E402

# OpenCV's own decoding limit (read at its first decode), lowered to ours as a second fence (pnr_tf.images).
os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(MAX_PIXELS))

from pnr_tf.layers.blocks import ConvolutionBlock  # noqa: E402
from pnr_tf.layers.blocks import ResidualBlock  # noqa: E402
from pnr_tf.layers.decoder import ImageDecoder  # noqa: E402
from pnr_tf.layers.encoders import AppearanceEncoder  # noqa: E402
from pnr_tf.layers.encoders import PoseEncoder  # noqa: E402
from pnr_tf.layers.regression import PNormRegression  # noqa: E402
from pnr_tf.models.discriminator import PatchDiscriminator  # noqa: E402
from pnr_tf.models.generator import PNRGenerator  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "AppearanceEncoder",
    "ConvolutionBlock",
    "ImageDecoder",
    "PNRGenerator",
    "PNormRegression",
    "PatchDiscriminator",
    "PoseEncoder",
    "ResidualBlock",
]
