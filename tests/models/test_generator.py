"""PNRGenerator, the encoders, decoder and discriminator: shapes, multi-shot, row dropout, serialization."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

import pnr_tf
from tests.helpers import assert_config_roundtrip
from tests.helpers import assert_keras_file_roundtrip
from tests.helpers import random_generator_inputs
from tests.helpers import tiny_generator

REPOSITORY = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("norm", ["batch", "instance"])
def test_encoder_rows_are_the_row_major_stride_four_feature_map(norm):
    encoder = pnr_tf.AppearanceEncoder(4, 1, norm=norm)
    images = np.random.default_rng(0).uniform(-1, 1, (2, 16, 8, 3)).astype("float32")
    rows = encoder(images).numpy()
    feature_map = encoder.feature_map(images).numpy()
    assert rows.shape == (2, 4 * 2, 16)
    np.testing.assert_array_equal(rows, feature_map.reshape(2, -1, 16))


def test_pose_encoder_projects_each_row_to_pose_dim():
    encoder = pnr_tf.PoseEncoder(4, 1, pose_dim=5)
    heatmaps = np.random.default_rng(1).uniform(0, 1, (3, 16, 8, 18)).astype("float32")
    rows = encoder(heatmaps)
    assert rows.shape == (3, 8, 5)
    assert encoder.compute_output_shape((3, 16, 8, 18)) == (3, 8, 5)


def test_decoder_upsamples_four_times_into_the_tanh_range():
    decoder = pnr_tf.ImageDecoder(4, 1)
    images = decoder(np.random.default_rng(2).normal(0, 10, (2, 4, 2, 16)).astype("float32")).numpy()
    assert images.shape == (2, 16, 8, 3)
    assert np.abs(images).max() <= 1.0


@pytest.mark.parametrize("channels", [6, 21])
def test_discriminator_gives_one_logit_per_patch(channels):
    discriminator = pnr_tf.PatchDiscriminator(4, 1)
    logits = discriminator(np.zeros((2, 16, 8, channels), "float32"))
    assert logits.shape == (2, 4, 2, 1)
    assert logits.dtype == tf.float32


@pytest.mark.parametrize(
    "layer, input_shape",
    [
        (pnr_tf.ConvolutionBlock(4, 3, strides=2, norm="instance", transpose=True), (1, 4, 4, 3)),
        (pnr_tf.ResidualBlock(4, norm="batch"), (1, 4, 4, 4)),
        (pnr_tf.AppearanceEncoder(4, 2, norm="instance"), (1, 16, 8, 3)),
        (pnr_tf.PoseEncoder(4, 1, pose_dim=3), (1, 16, 8, 18)),
        (pnr_tf.ImageDecoder(4, 2), (1, 4, 2, 16)),
    ],
    ids=lambda value: type(value).__name__ if not isinstance(value, tuple) else None,
)
def test_layers_roundtrip_through_config_and_keras_file(layer, input_shape):
    inputs = np.random.default_rng(3).normal(size=input_shape).astype("float32")
    rebuilt = assert_config_roundtrip(layer)
    assert rebuilt(inputs).shape == layer(inputs).shape
    assert_keras_file_roundtrip(layer, lambda loaded: loaded(inputs), input_shape=input_shape)


def test_discriminator_roundtrips_through_config_and_keras_file():
    discriminator = pnr_tf.PatchDiscriminator(4, 2, norm="instance")
    inputs = np.random.default_rng(4).normal(size=(2, 16, 8, 6)).astype("float32")
    assert_config_roundtrip(discriminator)
    assert_keras_file_roundtrip(discriminator, lambda loaded: loaded(inputs))


@pytest.mark.parametrize("p", [1, 2])
def test_generator_roundtrips_through_keras_file(p):
    generator = tiny_generator(p=p)
    inputs = random_generator_inputs(num_sources=2)
    config = generator.get_config()
    assert pnr_tf.PNRGenerator.from_config(config).get_config() == config
    assert_keras_file_roundtrip(generator, lambda loaded: loaded(inputs))


@pytest.mark.parametrize("num_sources", [1, 3, 5])
def test_generator_output_shape_and_range_for_any_number_of_sources(num_sources):
    generator = tiny_generator()
    images = generator(random_generator_inputs(num_sources=num_sources)).numpy()
    assert images.shape == (2, 16, 8, 3)
    assert images.dtype == np.float32
    assert np.abs(images).max() <= 1.0


def test_one_traced_function_serves_every_number_of_sources():
    generator = tiny_generator()
    function = tf.function(
        lambda inputs: generator(inputs),
        input_signature=[
            {
                "source_image": tf.TensorSpec([None, None, 16, 8, 3]),
                "source_pose": tf.TensorSpec([None, None, 16, 8, 18]),
                "target_pose": tf.TensorSpec([None, 16, 8, 18]),
            }
        ],
    )
    for num_sources in (1, 3, 5):
        inputs = random_generator_inputs(num_sources=num_sources, seed=num_sources)
        np.testing.assert_allclose(function(inputs).numpy(), generator(inputs).numpy(), atol=1e-5)


def test_four_dimensional_sources_mean_one_source():
    generator = tiny_generator()
    inputs = random_generator_inputs(num_sources=1)
    single = {
        "source_image": inputs["source_image"][:, 0],
        "source_pose": inputs["source_pose"][:, 0],
        "target_pose": inputs["target_pose"],
    }
    np.testing.assert_array_equal(generator(single).numpy(), generator(inputs).numpy())


def test_two_source_input_is_one_regression_on_the_stacked_rows():
    generator = tiny_generator(p=1)
    inputs = random_generator_inputs(num_sources=2, seed=5)
    rows = []
    for source in range(2):
        rows.append(
            (
                generator.appearance_encoder(inputs["source_image"][:, source]),
                generator.pose_encoder(inputs["source_pose"][:, source]),
            )
        )
    appearance = tf.concat([rows[0][0], rows[1][0]], axis=1)
    pose = tf.concat([rows[0][1], rows[1][1]], axis=1)
    target_appearance = generator.regression(appearance, pose, generator.pose_encoder(inputs["target_pose"]))
    expected = generator.decoder(tf.reshape(target_appearance, (2, 4, 2, 16))).numpy()
    np.testing.assert_allclose(generator(inputs).numpy(), expected, atol=1e-5)


def test_row_dropout_is_seeded_and_only_in_training():
    inputs = random_generator_inputs(num_sources=1, seed=6)
    # Instance norm: training and inference differ only by the row dropout.
    dropped = [tiny_generator(row_keep_probability=0.5, seed=11, norm="instance") for _ in range(2)]
    kept = tiny_generator(row_keep_probability=1.0, seed=11, norm="instance")
    for model in (*dropped, kept):
        model(inputs)  # builds the variables; inference draws no rows
    for name in ("appearance_encoder", "pose_encoder", "decoder"):
        getattr(dropped[1], name).set_weights(getattr(dropped[0], name).get_weights())
    first, second = (model(inputs, training=True).numpy() for model in dropped)
    np.testing.assert_array_equal(first, second)  # same seed, same draws
    assert not np.allclose(first, dropped[0](inputs, training=True).numpy())  # the next draw differs
    for name in ("appearance_encoder", "pose_encoder", "decoder"):
        getattr(kept, name).set_weights(getattr(dropped[0], name).get_weights())
    np.testing.assert_allclose(dropped[0](inputs, training=False).numpy(), kept(inputs, training=False).numpy(), atol=1e-6)
    assert not np.allclose(first, kept(inputs, training=True).numpy(), atol=1e-4)


def test_generator_runs_under_mixed_precision_with_a_float32_regression():
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        generator = tiny_generator()
        images = generator(random_generator_inputs())
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert images.dtype == tf.float32
    assert generator.appearance_encoder.compute_dtype == "float16"
    assert generator.regression.compute_dtype == "float32"
    assert np.isfinite(images.numpy()).all()


@pytest.mark.parametrize(
    "change, error, message",
    [
        (lambda inputs: inputs.pop("target_pose"), KeyError, "missing"),
        (lambda inputs: inputs.update(source_image=inputs["source_image"][..., :2]), ValueError, "3 channels"),
        (lambda inputs: inputs.update(target_pose=inputs["target_pose"][:, :15]), ValueError, "multiple of 4"),
        (lambda inputs: inputs.update(source_pose=inputs["source_pose"][:, 0]), ValueError, "both"),
    ],
)
def test_bad_inputs_fail_with_a_message_naming_the_input(change, error, message):
    inputs = random_generator_inputs(num_sources=2)
    change(inputs)
    with pytest.raises(error, match=message):
        tiny_generator()(inputs)


def test_constructor_rejects_mismatched_feature_sizes():
    with pytest.raises(ValueError, match="decoder"):
        pnr_tf.PNRGenerator(appearance_encoder=pnr_tf.AppearanceEncoder(8, 1), decoder=pnr_tf.ImageDecoder(4, 1))


def test_load_model_in_a_fresh_process_gives_identical_outputs(tmp_path):
    generator = tiny_generator()
    inputs = random_generator_inputs(num_sources=3, seed=7)
    expected = generator(inputs).numpy()
    model_path = tmp_path / "generator.keras"
    generator.save(model_path)
    np.savez(tmp_path / "inputs.npz", **inputs)
    script = textwrap.dedent(
        f"""
        import keras, numpy as np
        import pnr_tf  # registers the layers for deserialization
        inputs = dict(np.load({str(tmp_path / 'inputs.npz')!r}))
        model = keras.models.load_model({str(model_path)!r})
        np.save({str(tmp_path / 'output.npy')!r}, np.asarray(model(inputs)))
        """
    )
    environment = dict(os.environ, PYTHONPATH=str(REPOSITORY), TF_CPP_MIN_LOG_LEVEL="2")
    subprocess.run([sys.executable, "-c", script], check=True, env=environment, cwd=tmp_path, timeout=300)
    np.testing.assert_array_equal(np.load(tmp_path / "output.npy"), expected)


