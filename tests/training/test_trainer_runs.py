"""Whole runs of the Trainer: checkpoints, resuming, signals, a stopped run (split from test_trainer.py so
pytest-xdist can balance the two files between its workers)."""

import os
import signal
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import keras
import numpy as np
import pytest
import tensorflow as tf

import pnr_tf  # noqa: F401  (registers the layers for load_model)
from pnr_tf.training.trainer import Trainer
from tests.helpers import RECONSTRUCTION_ONLY
from tests.helpers import tiny_training_config
from tests.training.test_trainer import weights

REPOSITORY = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def four_step_run(synthetic_root, tmp_path_factory):
    """One uninterrupted run that several tests read (each trace of the step costs ~10 s): supervised with
    row dropout on, so both discriminators and optimizers, batch-norm statistics and the dropout RNG
    state are in its checkpoints (steps 2 and 4)."""
    import contextlib
    import io

    output = tmp_path_factory.mktemp("four_steps")
    train = {"num_steps": 4, "row_keep_probability": 0.5, "checkpoint_every": 2, "sample_every": 2}
    config = tiny_training_config(synthetic_root, train=train)
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        trainer = Trainer(config, output)
        model_path = trainer.fit()
    return SimpleNamespace(config=config, output=output, trainer=trainer, model_path=model_path, stderr=stderr.getvalue())


def test_fit_writes_checkpoints_samples_logs_and_a_loadable_generator(four_step_run):
    output = four_step_run.output
    assert four_step_run.model_path == str(output / "generator.keras")  # a string: run directories may be URIs
    loaded = keras.models.load_model(four_step_run.model_path)
    assert loaded.regression.p == 1
    assert sorted(path.name for path in (output / "samples").iterdir()) == ["step_000002.png", "step_000004.png"]
    assert list((output / "logs").iterdir())
    assert (output / "config.yaml").is_file()
    assert tf.train.latest_checkpoint(str(output / "checkpoints")).endswith("ckpt-4")


def test_the_resolved_solver_is_logged_and_recorded_with_the_run(four_step_run):
    import json

    record = json.loads((four_step_run.output / "sessions.jsonl").read_text().splitlines()[-1])
    assert record["solver_requested"] == "auto" and record["solver"] in ("fused", "cholesky")
    assert record["start_step"] == 0 and record["num_replicas"] == 1
    assert f"regression solver: {record['solver_detail']}" in four_step_run.stderr


def test_a_checkpoint_and_a_run_stopped_midway_load_as_the_saved_generator(four_step_run, tmp_path):
    import shutil

    from pnr_tf.models.loading import load_generator
    from tests.helpers import random_generator_inputs

    run = tmp_path / "run"
    shutil.copytree(four_step_run.output, run)
    inputs = random_generator_inputs(batch_size=2, height=128, width=64)
    expected = np.asarray(load_generator(run / "generator.keras")(inputs, training=False))
    for source in (run / "checkpoints" / "ckpt-4", run / "checkpoints"):
        np.testing.assert_allclose(np.asarray(load_generator(source)(inputs, training=False)), expected, atol=1e-6)
    (run / "generator.keras").unlink()  # as if stopped before it was written: the run directory still loads
    np.testing.assert_allclose(np.asarray(load_generator(run)(inputs, training=False)), expected, atol=1e-6)


def test_two_plus_two_steps_equal_four_steps(four_step_run, tmp_path):
    # A new run directory holding only the uninterrupted run's step-2 checkpoint: resuming it and going
    # on to step 4 must land on the same weights, optimizer moments included (through the next step's update).
    import shutil

    checkpoints = tmp_path / "checkpoints"
    checkpoints.mkdir()
    for path in (four_step_run.output / "checkpoints").glob("ckpt-2.*"):
        shutil.copy(path, checkpoints)
    tf.compat.v1.train.update_checkpoint_state(str(checkpoints), str(checkpoints / "ckpt-2"))
    resumed = Trainer(four_step_run.config, tmp_path)
    assert resumed.step == 2
    resumed.fit()
    assert resumed.step == 4
    straight = four_step_run.trainer
    for model in ("generator", "appearance_discriminator", "pose_discriminator"):
        for expected, actual in zip(weights(getattr(straight.task.models, model)), weights(getattr(resumed.task.models, model))):
            np.testing.assert_allclose(actual, expected, atol=1e-5, rtol=1e-4)
    for expected, actual in zip(straight.task.models.generator.non_trainable_variables, resumed.task.models.generator.non_trainable_variables):
        np.testing.assert_allclose(np.array(actual), np.array(expected), atol=1e-5, rtol=1e-4)


def test_sigterm_mid_run_leaves_a_checkpoint_that_resumes(synthetic_root, tmp_path):
    output = tmp_path / "run"
    command = [
        sys.executable, "-m", "pnr_tf.train", "--output-dir", str(output),
        "--set", f"data.root={synthetic_root}", "--set", "model.base_filters=4", "--set", "model.num_encoder_blocks=1",
        "--set", "model.num_decoder_blocks=1", "--set", "model.pose_dim=4", "--set", "model.num_iterations=2",
        "--set", "model.discriminator_filters=4", "--set", "model.discriminator_blocks=1", "--set", "loss.perceptual_weight=0",
        "--set", "train.batch_size=2", "--set", "loss.adversarial=false",
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
    # The same run restores it (every object matched); going on from a restored checkpoint is
    # test_two_plus_two_steps_equal_four_steps, and the command's "resumed from" line the two-worker test.
    config = tiny_training_config(synthetic_root, train={"batch_size": 2, "num_steps": 100000})
    assert Trainer(config, output).step == stopped_at


def test_sigkill_during_checkpointing_leaves_the_latest_checkpoint_restorable(synthetic_root, tmp_path):
    # The log line of a step is printed just before that step's checkpoint is written, so killing
    # (no handler can run) as soon as it appears lands in or next to the write.
    output = tmp_path / "run"
    overrides = {
        "data.root": synthetic_root, "model.base_filters": 4, "model.num_encoder_blocks": 1, "model.num_decoder_blocks": 1,
        "model.pose_dim": 4, "model.num_iterations": 2, "model.discriminator_filters": 4, "model.discriminator_blocks": 1,
        "loss.perceptual_weight": 0, **{f"loss.{key}": value for key, value in RECONSTRUCTION_ONLY.items()},
        "train.batch_size": 4, "train.num_steps": 100000, "train.log_every": 1,
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
    config = tiny_training_config(synthetic_root, loss=RECONSTRUCTION_ONLY, train={"num_steps": 5, "checkpoint_every": 1, "sample_every": 100})
    trainer = Trainer(config, tmp_path)
    decoder_kernel = trainer.task.models.generator.decoder.to_image.kernel
    decoder_kernel.assign(np.full(decoder_kernel.shape, np.nan, np.float32))  # every generated pixel NaN
    with pytest.raises(FloatingPointError, match=r"non-finite loss at step 1 \(.*l1=nan.*\); nothing of this step was saved"):
        trainer.fit()
    assert tf.train.latest_checkpoint(str(tmp_path / "checkpoints")) is None
    assert not (tmp_path / "generator.keras").exists()


def test_resuming_with_another_model_or_data_is_refused_and_other_changes_are_recorded(four_step_run, tmp_path, capsys):
    import json
    import shutil

    from pnr_tf.config import load_config
    from pnr_tf.train import main as train_main

    run = tmp_path / "run"
    shutil.copytree(four_step_run.output, run)
    config_path = str(run / "config.yaml")  # the run's own resolved config: resuming with it changes nothing
    cases = [
        (["model.p=2"], ["model.p: 1 in the run, 2 now"]),
        (["model.base_filters=8", "model.norm=instance"], ["model.base_filters: 4 in the run, 8 now", "model.norm: 'batch' in the run, 'instance' now"]),
        (["data.image_height=64"], ["data.image_height: 128 in the run, 64 now"]),
        (["data.heatmap_sigma=3"], ["data.heatmap_sigma: 6.0 in the run, 3.0 now"]),
        (["train.precision=mixed_float16"], ["train.precision: 'float32' in the run, 'mixed_float16' now"]),
    ]  # fmt: skip
    before = (run / "config.yaml").read_text()
    for overrides, messages in cases:
        with pytest.raises(SystemExit) as exit_info:
            train_main(["--config", config_path, "--output-dir", str(run), *[f"--set={value}" for value in overrides]])
        error = capsys.readouterr().err
        assert exit_info.value.code == 2 and error.startswith("error: ") and error.count("\n") == 1, error
        assert all(message in error for message in messages) and "new --output-dir" in error, error
    assert (run / "config.yaml").read_text() == before  # nothing rewritten
    # train.* (and loss.*) may change: the resumed run says so and records it with its start.
    # model.test_time_mirror only changes how the trained generator draws: a resume may turn it on.
    changed = load_config(config_path, ["train.num_steps=6", "train.learning_rate=0.001", "model.test_time_mirror=true"])
    resumed = Trainer(changed, run)
    assert resumed.step == 4
    assert resumed.config_changes == {"train.num_steps": (4, 6), "train.learning_rate": (four_step_run.config.train.learning_rate, 0.001),
                                      "model.test_time_mirror": (False, True)}  # fmt: skip
    assert resumed.task.inference_generator.contract.test_time_mirror is True
    record = json.loads(json.dumps(resumed.session_record()))
    assert record["config_changes"] == {"train.num_steps": [4, 6], "train.learning_rate": [four_step_run.config.train.learning_rate, 0.001],
                                        "model.test_time_mirror": [False, True]}  # fmt: skip


def test_a_new_run_starts_from_initial_weights_and_a_resume_ignores_them(four_step_run, tmp_path, capsys):
    import dataclasses
    import shutil

    from pnr_tf.models.loading import load_generator

    def with_initial_weights(path):
        return dataclasses.replace(four_step_run.config, train=dataclasses.replace(four_step_run.config.train, initial_weights=str(path)))

    trained = load_generator(four_step_run.model_path)  # the weight average the run saved
    fresh = Trainer(four_step_run.config, tmp_path / "fresh")
    started = Trainer(with_initial_weights(four_step_run.output), tmp_path / "started")
    assert started.step == 0 and started.restored_from is None
    floats = [index for index, variable in enumerate(trained.variables) if "float" in str(variable.dtype)]
    integers = [index for index in range(len(trained.variables)) if index not in floats]
    assert floats and integers  # weights and batch-norm statistics; the row-dropout RNG state
    for model in (started.task.models.generator, started.task.average_generator):
        for index in floats:
            np.testing.assert_array_equal(np.array(model.variables[index]), np.array(trained.variables[index]))
        for index in integers:  # this run's seeded state, not the trained run's
            np.testing.assert_array_equal(np.array(model.variables[index]), np.array(fresh.task.models.generator.variables[index]))
    # The discriminators start as a new run's would.
    for expected, actual in zip(weights(fresh.task.models.pose_discriminator), weights(started.task.models.pose_discriminator)):
        np.testing.assert_array_equal(actual, expected)
    assert not np.allclose(weights(fresh.task.models.generator)[0], weights(started.task.models.generator)[0])

    # A resume continues its checkpoint and never reads initial_weights.
    resumed_run = tmp_path / "resumed"
    shutil.copytree(four_step_run.output, resumed_run)
    resumed = Trainer(with_initial_weights(tmp_path / "no such model"), resumed_run)
    assert resumed.step == 4
    for expected, actual in zip(weights(four_step_run.trainer.task.models.generator), weights(resumed.task.models.generator)):
        np.testing.assert_array_equal(actual, expected)
    capsys.readouterr()
    resumed._start(None)
    said = capsys.readouterr().err
    assert "changed since the last start: train.initial_weights '' -> " in said and "is not read on a resume" in said, said


def test_initial_weights_of_another_model_are_refused_naming_a_variable(four_step_run, tmp_path):
    from pnr_tf.config import ConfigError

    config = tiny_training_config(four_step_run.config.data.root, model={"base_filters": 8},
                                  train={"initial_weights": str(four_step_run.model_path)})  # fmt: skip
    with pytest.raises(ConfigError, match=r"train.initial_weights .* is another model: .* has shape \(.*\) there, \(.*\) here.*model\.\* settings"):
        Trainer(config, tmp_path)
