"""What the tests share: tiny models and configs, config and .keras round trips, float64 references of the
heatmaps and of an exported signature, serving inputs, PATN's SSIM call, and image comparisons."""

import os
import tempfile

import keras
import numpy as np

import pnr_tf

SOLVERS = ("fused", "cholesky", "matmul")


def require_solver(solver):
    """Skips a "fused" test only where no C++ compiler exists; with one, a failed build fails the test."""
    import shutil

    import pytest

    from pnr_tf.ops import packed_cholesky

    if solver == "fused" and shutil.which(packed_cholesky.compiler()[0]) is None:
        pytest.skip("no C++ compiler: the fused kernel cannot be built here (the stock solvers are tested)")
    return solver


def tiny_generator(p=1, solver="auto", pose_dim=4, num_iterations=3, row_keep_probability=1.0, seed=0, norm="batch"):
    """A PNRGenerator small enough for unit tests (d = 16, k = pose_dim, one residual block)."""
    return pnr_tf.PNRGenerator(
        appearance_encoder=pnr_tf.AppearanceEncoder(4, 1, norm=norm, name="appearance_encoder"),
        pose_encoder=pnr_tf.PoseEncoder(4, 1, pose_dim=pose_dim, norm=norm, name="pose_encoder"),
        regression=pnr_tf.PNormRegression(p=p, num_iterations=num_iterations, solver=solver, name="regression"),
        decoder=pnr_tf.ImageDecoder(4, 1, norm=norm, name="decoder"),
        row_keep_probability=row_keep_probability,
        seed=seed,
    )


def spread_outputs(generator, inputs, minimum_levels=150):
    """Scales the decoder's last convolution so the generator's uint8 outputs span many levels.

    A fresh decoder's output sits within a few levels of grey, which would let a wrong export or a
    constant image pass 1-level comparisons; output = tanh(linear in that kernel), so scaling it spreads them.
    """
    outputs = np.asarray(generator(inputs))
    kernel = generator.decoder.to_image.kernel
    kernel.assign(kernel * (0.6 / np.arctanh(np.clip(outputs, -0.99, 0.99)).std()))
    outputs = np.asarray(generator(inputs))
    assert np.ptp(outputs) * 127.5 > minimum_levels, np.ptp(outputs)
    return generator


def random_generator_inputs(batch_size=2, num_sources=1, height=16, width=8, seed=0):
    rng = np.random.default_rng(seed)
    source_shape = (batch_size, num_sources, height, width)
    return {
        "source_image": rng.uniform(-1, 1, (*source_shape, 3)).astype("float32"),
        "source_pose": rng.uniform(0, 1, (*source_shape, 18)).astype("float32"),
        "target_pose": rng.uniform(0, 1, (batch_size, height, width, 18)).astype("float32"),
    }


def assert_config_roundtrip(layer):
    """from_config(get_config()) rebuilds a layer with the same config."""
    config = layer.get_config()
    rebuilt = layer.__class__.from_config(config)
    assert rebuilt.get_config() == config
    return rebuilt


def assert_keras_file_roundtrip(model_or_layer, call, atol=0.0, input_shape=None):
    """Saves to .keras, loads, and checks call(loaded) equals call(original).

    A layer is saved inside a Sequential built on ``input_shape`` (batch included).
    """
    expected = np.asarray(call(model_or_layer))
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "roundtrip.keras")
        if isinstance(model_or_layer, keras.Model):
            model = model_or_layer
        else:
            if input_shape is None:
                raise ValueError("Saving a layer needs the input_shape to build its Sequential.")
            model = keras.Sequential([keras.Input(batch_shape=input_shape), model_or_layer])
        model.save(path)
        loaded = keras.models.load_model(path)
    if not isinstance(model_or_layer, keras.Model):
        loaded = loaded.layers[0]
    np.testing.assert_allclose(np.asarray(call(loaded)), expected, atol=atol, rtol=0)
    return loaded


# The tiny model and schedule every training test uses (as a config's sections). float32: a test's numbers
# must not depend on whether the host has bfloat16 instructions (train.precision: auto); bfloat16 has its own tests.
TINY_TRAINING = {
    "model": {
        "base_filters": 4, "num_encoder_blocks": 1, "num_decoder_blocks": 1, "pose_dim": 4,
        "num_iterations": 2, "discriminator_filters": 4, "discriminator_blocks": 1,
    },
    "loss": {"perceptual_weight": 0.0},
    "train": {"batch_size": 4, "num_steps": 2, "log_every": 1, "sample_every": 1, "checkpoint_every": 1, "precision": "float32"},
}  # fmt: skip


# A loss section for tests whose subject is not the adversarial terms (files, signals, validation):
# the discriminators' phase about doubles the training step's tracing, most of such a test's time.
RECONSTRUCTION_ONLY = {"adversarial": False}


def tiny_training_values(data_root=None, **sections):
    """TINY_TRAINING (and data.root) as nested dicts; sections override, e.g. train={"num_steps": 2}."""
    values = {name: dict(section) for name, section in TINY_TRAINING.items()}
    if data_root is not None:
        values["data"] = {"root": str(data_root)}
    for section, overrides in sections.items():
        values.setdefault(section, {}).update(overrides)
    return values


def tiny_training_config(data_root, **sections):
    """A Config for unit tests: the tiny model, batch 4, VGG off; sections override, e.g. train={"num_steps": 2}."""
    from pnr_tf.config import config_from_dict

    return config_from_dict(tiny_training_values(data_root, **sections))


def tiny_training_overrides(data_root=None, **sections):
    """The same as ``--set section.key=value`` arguments for the train command."""
    return [f"{section}.{key}={value}" for section, values in tiny_training_values(data_root, **sections).items() for key, value in values.items()]


def numpy_heatmaps(keypoints, height, width, sigma=6.0):
    """Float64 reference of the pose heatmaps: (..., 18, 2) (y, x) -> (..., height, width, 18)."""
    keypoints = np.asarray(keypoints, dtype=np.float64)
    rows = np.arange(height, dtype=np.float64)[:, None, None]
    columns = np.arange(width, dtype=np.float64)[None, :, None]
    y = keypoints[..., None, None, :, 0]
    x = keypoints[..., None, None, :, 1]
    heatmaps = np.exp(-((rows - y) ** 2 + (columns - x) ** 2) / (2 * sigma * sigma))
    visible = (y >= 0) & (x >= 0) & (y < height) & (x < width)
    return heatmaps * visible


# Left and right OpenPose-18 joints by hand (shoulder, elbow, wrist, hip, knee, ankle, eye, ear).
LEFT_RIGHT_PAIRS = ((2, 5), (3, 6), (4, 7), (8, 11), (9, 12), (10, 13), (14, 15), (16, 17))


def numpy_mirror(images=None, heatmaps=None):
    """Left-right mirror in NumPy: images flipped; heatmaps flipped with each left and right channel exchanged."""
    if heatmaps is None:
        return np.asarray(images)[..., ::-1, :]
    order = list(range(18))
    for left, right in LEFT_RIGHT_PAIRS:
        order[left], order[right] = right, left
    return np.asarray(heatmaps)[..., ::-1, :][..., order]


def reference_generate(generator, source_images, source_keypoints, target_keypoints, sigma=6.0, mirror=False):
    """What an exported signature must return, built from NumPy pieces around the Keras model.

    source_images (b, M, H, W, 3) uint8, keypoints (b, M, 18, 2) and (b, 18, 2) -> ((b, H, W, 3) float
    model output in [-1, 1], the same as uint8 pixels). ``mirror``: the mean of the drawing and the
    flipped-back drawing of the mirrored inputs (test-time mirror averaging).
    """
    height, width = source_images.shape[2:4]
    inputs = {
        "source_image": (source_images.astype(np.float64) / 127.5 - 1.0).astype(np.float32),
        "source_pose": numpy_heatmaps(source_keypoints, height, width, sigma).astype(np.float32),
        "target_pose": numpy_heatmaps(target_keypoints, height, width, sigma).astype(np.float32),
    }
    generated = np.asarray(generator(inputs, training=False), dtype=np.float64)
    if mirror:
        mirrored = {"source_image": numpy_mirror(inputs["source_image"]).copy(), "source_pose": numpy_mirror(heatmaps=inputs["source_pose"]).copy(),
                    "target_pose": numpy_mirror(heatmaps=inputs["target_pose"]).copy()}  # fmt: skip
        generated = 0.5 * (generated + numpy_mirror(np.asarray(generator(mirrored, training=False), dtype=np.float64)))
    return generated, np.clip(np.round((generated + 1.0) * 127.5), 0, 255).astype(np.uint8)


def random_serving_inputs(batch_size, num_sources, height=16, width=8, seed=0):
    """uint8 images and keypoints inside the image, a few marked missing (-1), as clients send them."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (batch_size, num_sources, height, width, 3), dtype=np.uint8)
    size = np.array([height, width], dtype=np.float32)
    source_keypoints = (rng.uniform(0, 1, (batch_size, num_sources, 18, 2)) * size).astype(np.float32)
    target_keypoints = (rng.uniform(0, 1, (batch_size, 18, 2)) * size).astype(np.float32)
    source_keypoints[:, :, 3] = -1.0
    target_keypoints[:, 10] = -1.0
    return images, source_keypoints, target_keypoints


def patn_ssim(reference, generated):
    """PATN's SSIM call on scikit-image (compare_ssim with multichannel=True is channel_axis=-1 today)."""
    from skimage.metrics import structural_similarity

    return structural_similarity(
        reference, generated, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, channel_axis=-1,
        data_range=generated.max() - generated.min(),
    )  # fmt: skip


def level_difference(actual, expected):
    """Largest difference in uint8 levels between two images."""
    return int(np.abs(np.asarray(actual, np.int32) - np.asarray(expected, np.int32)).max())


def with_contract(generator, **changes):
    """A copy of a built generator (same weights) whose inference contract has ``changes``."""
    from pnr_tf.models.generator import copy_generator

    return copy_generator(generator, contract_changes=changes)


def png_declaring(width, height, rows=1):
    """A PNG whose header declares width x height; its data holds only a few rows (a decompression bomb's header)."""
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
    pixels = zlib.compress(b"".join(b"\x00" + bytes(3 * width) for _ in range(rows)))
    return b"\x89PNG\r\n\x1a\n" + header + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


def tensor_declaring(dtype, shape):
    """A TensorProto that declares a shape and carries no values (TensorFlow would fill it with zeros)."""
    import tensorflow as tf

    proto = tf.make_tensor_proto(np.zeros((0,), dtype))
    proto.tensor_shape.Clear()
    for size in shape:
        proto.tensor_shape.dim.add().size = size
    return proto
