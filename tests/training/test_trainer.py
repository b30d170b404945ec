"""The GAN step and the driver on tiny models: each mode, outputs, resume equivalence, SIGTERM."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

import pnr_tf  # noqa: F401  (registers the layers for load_model)
from pnr_tf.training.trainer import Trainer
from pnr_tf.training.trainer import load_samples
from tests.helpers import tiny_training_config

REPOSITORY = Path(__file__).resolve().parents[2]


def weights(model):
    return [np.array(variable) for variable in model.trainable_variables]


def one_step(trainer):
    samples = load_samples(trainer.config)
    batch = next(iter(trainer._dataset(samples, 0)))
    return {name: float(value) for name, value in trainer._distributed_step_function()(batch).items()}


def changed(before, after):
    return any(not np.array_equal(a, b) for a, b in zip(before, after))


def test_supervised_step_updates_generator_and_both_discriminators(synthetic_root, tmp_path):
    trainer = Trainer(tiny_training_config(synthetic_root), tmp_path)
    before = [weights(model) for model in (trainer.models.generator, trainer.models.appearance_discriminator, trainer.models.pose_discriminator)]
    metrics = one_step(trainer)
    after = [weights(model) for model in (trainer.models.generator, trainer.models.appearance_discriminator, trainer.models.pose_discriminator)]
    assert set(metrics) == {"l1", "gan_appearance", "gan_pose", "generator_total", "discriminator_appearance", "discriminator_pose"}
    assert all(np.isfinite(value) for value in metrics.values())
    assert all(changed(b, a) for b, a in zip(before, after))
    # generator_total is the weighted sum of its terms (SPEC: l1 10, gan 5 + 5).
    assert metrics["generator_total"] == pytest.approx(10 * metrics["l1"] + 5 * metrics["gan_appearance"] + 5 * metrics["gan_pose"], rel=1e-5)
    assert trainer.step == 1


def test_unsupervised_step_reconstructs_the_source_without_the_appearance_discriminator(synthetic_root, tmp_path):
    config = tiny_training_config(
        synthetic_root, train={"mode": "unsupervised", "row_keep_probability": 0.5}, loss={"gan_appearance_weight": 0.0}
    )
    trainer = Trainer(config, tmp_path)
    appearance_before = weights(trainer.models.appearance_discriminator)
    generator_before = weights(trainer.models.generator)
    metrics = one_step(trainer)
    assert set(metrics) == {"l1", "gan_pose", "generator_total", "discriminator_pose"}
    assert all(np.isfinite(value) for value in metrics.values())
    assert not changed(appearance_before, weights(trainer.models.appearance_discriminator))
    assert changed(generator_before, weights(trainer.models.generator))


def test_perceptual_term_with_a_randomly_initialised_vgg19(synthetic_root, tmp_path):
    config = tiny_training_config(synthetic_root, loss={"perceptual_weight": 10.0})
    metrics = one_step(Trainer(config, tmp_path, random_vgg=True))
    assert np.isfinite(metrics["perceptual"]) and metrics["perceptual"] > 0


def test_missing_vgg19_weights_say_where_to_put_them(synthetic_root, tmp_path):
    config = tiny_training_config(synthetic_root, loss={"perceptual_weight": 10.0, "vgg19_weights": str(tmp_path / "absent.h5")})
    with pytest.raises(FileNotFoundError, match=r"absent\.h5.*never downloads.*perceptual_weight: 0"):
        Trainer(config, tmp_path)


def test_mixed_precision_step_keeps_the_regression_in_float32(synthetic_root, tmp_path):
    try:
        trainer = Trainer(tiny_training_config(synthetic_root, train={"mixed_precision": True}), tmp_path)
        metrics = one_step(trainer)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert all(np.isfinite(value) for value in metrics.values())
    assert trainer.models.generator.appearance_encoder.compute_dtype == "float16"
    assert trainer.models.generator.regression.compute_dtype == "float32"


def test_fit_writes_checkpoints_samples_logs_and_a_loadable_generator(synthetic_root, tmp_path):
    model_path = Trainer(tiny_training_config(synthetic_root), tmp_path).fit()
    assert model_path == tmp_path / "generator.keras"
    loaded = keras.models.load_model(model_path)
    assert loaded.regression.p == 1
    assert sorted(path.name for path in (tmp_path / "samples").iterdir()) == ["step_000001.png", "step_000002.png"]
    assert list((tmp_path / "logs").iterdir())
    assert (tmp_path / "config.yaml").is_file()
    assert (tmp_path / "checkpoints" / "checkpoint").is_file()


def test_two_plus_two_steps_equal_four_steps(synthetic_root, tmp_path):
    # Supervised with row dropout on: both discriminators and optimizers, batch-norm statistics and
    # the dropout RNG state must all come back from the checkpoint.
    train = {"row_keep_probability": 0.5, "checkpoint_every": 100, "sample_every": 100}
    straight = Trainer(tiny_training_config(synthetic_root, train={**train, "num_steps": 4}), tmp_path / "straight")
    straight.fit()
    Trainer(tiny_training_config(synthetic_root, train={**train, "num_steps": 2}), tmp_path / "resumed").fit()
    resumed = Trainer(tiny_training_config(synthetic_root, train={**train, "num_steps": 4}), tmp_path / "resumed")
    assert resumed.step == 2
    resumed.fit()
    assert resumed.step == 4
    for model in ("generator", "appearance_discriminator", "pose_discriminator"):
        for expected, actual in zip(weights(getattr(straight.models, model)), weights(getattr(resumed.models, model))):
            np.testing.assert_allclose(actual, expected, atol=1e-5, rtol=1e-4)
    for expected, actual in zip(straight.models.generator.non_trainable_variables, resumed.models.generator.non_trainable_variables):
        np.testing.assert_allclose(np.array(actual), np.array(expected), atol=1e-5, rtol=1e-4)


def test_sigterm_mid_run_leaves_a_checkpoint_that_resumes(synthetic_root, tmp_path):
    output = tmp_path / "run"
    command = [
        sys.executable, "-m", "pnr_tf.train", "--output-dir", str(output),
        "--set", f"data.root={synthetic_root}", "--set", "model.base_filters=4", "--set", "model.num_encoder_blocks=1",
        "--set", "model.num_decoder_blocks=1", "--set", "model.pose_dim=4", "--set", "model.discriminator_filters=4",
        "--set", "model.discriminator_blocks=1", "--set", "loss.perceptual_weight=0", "--set", "train.batch_size=2",
        "--set", "train.log_every=1", "--set", "train.checkpoint_every=1000", "--set", "train.sample_every=1000",
    ]  # fmt: skip
    environment = dict(os.environ, PYTHONPATH=str(REPOSITORY))
    process = subprocess.Popen(command + ["--set", "train.num_steps=100000"], env=environment, stderr=subprocess.PIPE, text=True)
    seen = []
    for line in process.stderr:  # wait until training is under way
        seen.append(line)
        if line.startswith("step 3/"):
            break
    else:
        pytest.fail("training never started:\n" + "".join(seen[-20:]))
    process.send_signal(signal.SIGTERM)
    remaining = process.communicate(timeout=120)[1]
    assert process.returncode == 1, remaining
    assert "checkpoint saved" in remaining
    latest = tf.train.latest_checkpoint(str(output / "checkpoints"))
    stopped_at = int(latest.rsplit("-", 1)[1])
    assert stopped_at >= 3
    finish = subprocess.run(command + ["--set", f"train.num_steps={stopped_at + 2}"], env=environment, capture_output=True, text=True, timeout=300)
    assert finish.returncode == 0, finish.stderr[-2000:]
    assert "resumed from" in finish.stderr and f"at step {stopped_at}" in finish.stderr
    assert (output / "generator.keras").is_file()


def test_sigkill_during_checkpointing_leaves_the_latest_checkpoint_restorable(synthetic_root, tmp_path):
    # The log line of a step is printed just before that step's checkpoint is written, so killing
    # (no handler can run) as soon as it appears lands in or next to the write.
    output = tmp_path / "run"
    overrides = {
        "data.root": synthetic_root, "model.base_filters": 4, "model.num_encoder_blocks": 1, "model.num_decoder_blocks": 1,
        "model.pose_dim": 4, "model.num_iterations": 2, "model.discriminator_filters": 4, "model.discriminator_blocks": 1,
        "loss.perceptual_weight": 0, "train.batch_size": 4, "train.num_steps": 100000, "train.log_every": 1,
        "train.checkpoint_every": 1, "train.sample_every": 1000,
    }  # fmt: skip
    command = [sys.executable, "-m", "pnr_tf.train", "--output-dir", str(output)]
    for key, value in overrides.items():
        command += ["--set", f"{key}={value}"]
    process = subprocess.Popen(command, env=dict(os.environ, PYTHONPATH=str(REPOSITORY)), stderr=subprocess.PIPE, text=True)
    for line in process.stderr:
        if line.startswith("step 3/"):
            process.kill()
            break
    process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL
    latest = tf.train.latest_checkpoint(str(output / "checkpoints"))
    assert latest is not None and int(latest.rsplit("-", 1)[1]) in (2, 3)
    config = tiny_training_config(synthetic_root, train={"num_steps": 100000})
    trainer = Trainer(config, output)  # restores with assert_existing_objects_matched
    assert trainer.step == int(latest.rsplit("-", 1)[1])


def test_a_non_finite_loss_stops_training_naming_the_step_and_saves_nothing_of_it(synthetic_root, tmp_path):
    config = tiny_training_config(synthetic_root, train={"num_steps": 5, "checkpoint_every": 1, "sample_every": 100})
    trainer = Trainer(config, tmp_path)
    decoder_kernel = trainer.models.generator.decoder.to_image.kernel
    decoder_kernel.assign(np.full(decoder_kernel.shape, np.nan, np.float32))  # every generated pixel NaN
    with pytest.raises(FloatingPointError, match=r"non-finite loss at step 1 \(.*l1=nan.*\); nothing of this step was saved"):
        trainer.fit()
    assert tf.train.latest_checkpoint(str(tmp_path / "checkpoints")) is None
    assert not (tmp_path / "generator.keras").exists()


def test_the_resolved_solver_is_logged_and_recorded_with_the_run(synthetic_root, tmp_path, capsys):
    import json

    Trainer(tiny_training_config(synthetic_root, train={"num_steps": 1}), tmp_path).fit()
    record = json.loads((tmp_path / "sessions.jsonl").read_text().splitlines()[-1])
    assert record["solver_requested"] == "auto" and record["solver"] in ("fused", "cholesky")
    assert record["start_step"] == 0 and record["num_replicas"] == 1
    assert f"regression solver: {record['solver_detail']}" in capsys.readouterr().err
