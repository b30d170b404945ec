"""Whole runs of the Trainer: checkpoints, resuming, signals, a stopped run (split from test_trainer.py so
pytest-xdist can balance the two files between its workers)."""

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
from tests.helpers import tiny_training_config
from tests.training.test_trainer import weights

REPOSITORY = Path(__file__).resolve().parents[2]


def test_fit_writes_checkpoints_samples_logs_and_a_loadable_generator(synthetic_root, tmp_path):
    model_path = Trainer(tiny_training_config(synthetic_root), tmp_path).fit()
    assert model_path == str(tmp_path / "generator.keras")  # a string: run directories may be URIs
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
    assert "checkpoint and generator.keras saved" in remaining
    assert (output / "generator.keras").is_file()  # usable before the run finishes
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
