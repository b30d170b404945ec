"""The GAN step and the driver on tiny models: each mode, outputs, resume equivalence, SIGTERM."""

import dataclasses
from pathlib import Path
from types import SimpleNamespace

import keras
import numpy as np
import pytest
import tensorflow as tf

import pnr_tf  # noqa: F401  (registers the layers for load_model)
from pnr_tf.config import ConfigError
from pnr_tf.training import schedule
from pnr_tf.training.run_splits import load_samples
from pnr_tf.training.trainer import Trainer
from tests.helpers import RECONSTRUCTION_ONLY
from tests.helpers import tiny_training_config

REPOSITORY = Path(__file__).resolve().parents[2]


def weights(model):
    return [np.array(variable) for variable in model.trainable_variables]


def one_step(trainer):
    samples = load_samples(trainer.config)
    return trainer.train_step(next(iter(trainer.dataset(samples, 0))))


def changed(before, after):
    return any(not np.array_equal(a, b) for a, b in zip(before, after))


def test_unsupervised_step_reconstructs_the_source_without_the_appearance_discriminator(synthetic_root, tmp_path):
    config = tiny_training_config(
        synthetic_root, train={"mode": "unsupervised", "row_keep_probability": 0.5}, loss={"gan_appearance_weight": 0.0}
    )
    trainer = Trainer(config, tmp_path)
    appearance_before = weights(trainer.task.models.appearance_discriminator)
    generator_before = weights(trainer.task.models.generator)
    metrics = one_step(trainer)
    assert set(metrics) == {"l1", "gan_pose", "generator_total", "discriminator_pose"}
    assert all(np.isfinite(value) for value in metrics.values())
    assert not changed(appearance_before, weights(trainer.task.models.appearance_discriminator))
    assert changed(generator_before, weights(trainer.task.models.generator))


def test_perceptual_term_with_a_randomly_initialised_vgg19(synthetic_root, tmp_path):
    config = tiny_training_config(synthetic_root, loss={**RECONSTRUCTION_ONLY, "perceptual_weight": 10.0})
    metrics = one_step(Trainer(config, tmp_path, random_vgg=True))
    assert np.isfinite(metrics["perceptual"]) and metrics["perceptual"] > 0


def test_missing_vgg19_weights_say_where_to_put_them(synthetic_root, tmp_path):
    config = tiny_training_config(synthetic_root, loss={"perceptual_weight": 10.0, "vgg19_weights": str(tmp_path / "absent.h5")})
    with pytest.raises(FileNotFoundError, match=r"absent\.h5.*never downloads.*perceptual_weight: 0"):
        Trainer(config, tmp_path)


def test_mixed_precision_step_keeps_the_regression_in_float32(synthetic_root, tmp_path):
    trainer = Trainer(tiny_training_config(synthetic_root, train={"mixed_precision": True, "precision": "auto"}), tmp_path)
    metrics = one_step(trainer)
    assert all(np.isfinite(value) for value in metrics.values())
    assert trainer.task.precision.policy == "mixed_float16"  # the older switch
    assert trainer.task.models.generator.appearance_encoder.compute_dtype == "float16"
    assert trainer.task.models.generator.regression.compute_dtype == "float32"
    assert isinstance(trainer.task.optimizers.generator, keras.optimizers.LossScaleOptimizer)
    assert keras.config.dtype_policy().name == "float32"  # nothing global was changed


def test_a_bfloat16_step_computes_layers_in_bfloat16_and_keeps_regression_losses_and_average_in_float32(synthetic_root, tmp_path):
    config = tiny_training_config(synthetic_root, train={"precision": "mixed_bfloat16"}, loss={"ssim_weight": 1.0, "mask_ssim_weight": 1.0})
    trainer = Trainer(config, tmp_path)
    metrics = one_step(trainer)
    assert all(np.isfinite(value) for value in metrics.values()), metrics
    generator = trainer.task.models.generator
    assert [generator.appearance_encoder.compute_dtype, generator.pose_encoder.compute_dtype, generator.decoder.compute_dtype,
            trainer.task.models.appearance_discriminator.compute_dtype] == ["bfloat16"] * 4  # fmt: skip
    assert generator.regression.compute_dtype == "float32"
    assert all(variable.dtype == "float32" for variable in generator.trainable_variables)  # weights stay float32
    assert not isinstance(trainer.task.optimizers.generator, keras.optimizers.LossScaleOptimizer)  # bfloat16 has float32's range
    # The weight average, which samples, validation and generator.keras use, computes in float32.
    assert trainer.task.average_generator.appearance_encoder.compute_dtype == "float32"
    record = trainer.session_record()
    assert (record["precision_requested"], record["precision"], record["precision_reason"]) == ("mixed_bfloat16", "mixed_bfloat16", "as configured")


def snapshot(trainer, metrics=None):
    generator = trainer.task.models.generator
    return SimpleNamespace(
        metrics=metrics, step=trainer.step,
        weights=[weights(model) for model in (generator, trainer.task.models.appearance_discriminator, trainer.task.models.pose_discriminator)],
        average=weights(trainer.task.average_generator),
        statistics=[np.array(variable) for variable in generator.non_trainable_variables],
        average_statistics=[np.array(variable) for variable in trainer.task.average_generator.non_trainable_variables],
    )  # fmt: skip


@pytest.fixture(scope="module")
def five_steps(synthetic_root, tmp_path_factory):
    """One supervised trainer stepped five times, read by four tests (each traced phase costs ~10 s):
    a warm-up step without the discriminators, then the adversarial terms ramped in over 4 steps,
    full from step 5; weight average with decay 0.5; the learning rate falling from the first step
    (num_steps 5, decay_start 0), then a sixth step past the end, at rate 0.
    history[t]: the state after t steps."""
    config = tiny_training_config(
        synthetic_root,
        loss={"adversarial_warmup_steps": 1, "adversarial_ramp_steps": 4},
        train={"ema_decay": 0.5, "num_steps": 5, "decay_start": 0.0},
    )
    trainer = Trainer(config, tmp_path_factory.mktemp("five_steps"))
    history = [snapshot(trainer)]
    iterator = iter(trainer.dataset(load_samples(config), 0))
    for _ in range(6):
        history.append(snapshot(trainer, trainer.train_step(next(iterator))))
    return SimpleNamespace(trainer=trainer, history=history)


def test_adversarial_terms_wait_for_the_warm_up_then_ramp_in(five_steps):
    trainer, history = five_steps.trainer, five_steps.history
    loss = trainer.config.loss
    assert [schedule.adversarial_scale(loss, step) for step in range(7)] == [0.0, 0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    assert schedule.loss_weights(loss, 2) == {"l1": 10.0, "foreground": 0.0, "perceptual": 0.0, "gan_appearance": 2.5, "gan_pose": 2.5}
    warm_up, ramped = history[1].metrics, history[2].metrics
    assert set(warm_up) == {"l1", "generator_total"} and warm_up["generator_total"] == pytest.approx(10 * warm_up["l1"], rel=1e-6)
    assert changed(history[0].weights[0], history[1].weights[0])
    assert not any(changed(b, a) for b, a in zip(history[0].weights[1:], history[1].weights[1:]))  # no D step in the warm-up
    assert all(changed(b, a) for b, a in zip(history[1].weights[1:], history[2].weights[1:]))
    expected = 10 * ramped["l1"] + 1.25 * ramped["gan_appearance"] + 1.25 * ramped["gan_pose"]  # scale 0.25 of 5
    assert ramped["generator_total"] == pytest.approx(expected, rel=1e-5)


def test_a_supervised_step_updates_generator_and_both_discriminators(five_steps):
    before, after = five_steps.history[4], five_steps.history[5]  # the first step at the full adversarial weight
    metrics = after.metrics
    assert set(metrics) == {"l1", "gan_appearance", "gan_pose", "generator_total", "discriminator_appearance", "discriminator_pose"}
    assert all(np.isfinite(value) for value in metrics.values())
    assert all(changed(b, a) for b, a in zip(before.weights, after.weights))
    # generator_total is the weighted sum of its terms (SPEC: l1 10, gan 5 + 5).
    assert metrics["generator_total"] == pytest.approx(10 * metrics["l1"] + 5 * metrics["gan_appearance"] + 5 * metrics["gan_pose"], rel=1e-5)
    assert after.step == 5 and five_steps.trainer.step == 6


def test_the_weight_average_follows_its_formula(five_steps):
    history = five_steps.history
    initial = history[0].weights[0]
    assert all(np.array_equal(a, b) for a, b in zip(history[0].average, initial))
    # decay min(ema_decay, (1 + t) / (10 + t)) after step t.
    decay = min(0.5, 2 / 11)
    for average, start, now in zip(history[1].average, initial, history[1].weights[0]):
        np.testing.assert_allclose(average, decay * start.astype(np.float64) + (1 - decay) * now, rtol=1e-5, atol=1e-7)
    # Batch-norm statistics are averaged alike (they describe the weights they normalise); the dropout RNG state is copied.
    decay = min(0.5, 3 / 12)
    for average, before, now in zip(history[2].average_statistics, history[1].average_statistics, history[2].statistics):
        if np.issubdtype(now.dtype, np.floating):
            np.testing.assert_allclose(average, decay * before + (1 - decay) * now, rtol=1e-5, atol=1e-7)
        else:
            np.testing.assert_array_equal(average, now)
    assert any(not np.array_equal(a, b) for a, b in zip(history[1].statistics, history[2].statistics))
    assert five_steps.trainer.task.inference_generator is five_steps.trainer.task.average_generator


def test_validation_during_training_matches_evaluate_and_keeps_the_best_and_latest(synthetic_root, tmp_path):
    import json

    from pnr_tf.evaluate import main as evaluate_main

    config = tiny_training_config(
        synthetic_root, data={"validation_pairs": "pairs-validation.csv"}, loss=RECONSTRUCTION_ONLY,
        train={"num_steps": 3, "validate_every": 2, "checkpoint_every": 2, "sample_every": 100},
    )  # fmt: skip
    Trainer(config, tmp_path).fit()
    lines = [json.loads(line) for line in (tmp_path / "validation.jsonl").read_text().splitlines()]
    assert set(lines[0]["baselines"]) == {"copy-source", "mean-image"} and lines[0]["pairs"] > 0
    assert [line["step"] for line in lines[1:]] == [2, 3]
    assert (tmp_path / "generator_best.keras").is_file() and (tmp_path / "generator.keras").is_file()
    # The in-training numbers are evaluate's numbers for the saved generator on the same pairs (to 1e-4:
    # validation runs the generator traced, evaluate eagerly, and a few pixels round to the next uint8 level).
    report = tmp_path / "report"
    assert evaluate_main(["--model", str(tmp_path), "--pairs", "pairs-validation.csv", "--no-inception", "--out", str(report)]) == 0
    metrics = json.loads((report / "metrics.json").read_text())
    assert metrics["ssim"] == pytest.approx(lines[-1]["ssim"], abs=1e-4) and metrics["l1"] == pytest.approx(lines[-1]["l1"], abs=1e-4)
    assert metrics["mask_ssim"] == pytest.approx(lines[-1]["mask_ssim"], abs=1e-4)
    assert metrics["colour_error"] == pytest.approx(lines[-1]["colour_error"], abs=0.05)  # uint8 levels
    assert metrics["sharpness"] == pytest.approx(lines[-1]["sharpness"], rel=1e-3)
    assert metrics["baselines"]["copy-source"]["ssim"] == pytest.approx(lines[0]["baselines"]["copy-source"]["ssim"], abs=1e-9)
    event_tags = set()
    for event_file in (tmp_path / "logs").iterdir():
        for event in tf.compat.v1.train.summary_iterator(str(event_file)):
            event_tags |= {value.tag for value in event.summary.value}
    assert {"validation/ssim", "validation/l1", "validation_baseline/copy-source/ssim"} <= event_tags


def test_held_out_identities_are_split_and_never_trained_on(tmp_path):
    from pnr_tf.data.datasets import MARKET

    identity_of = MARKET.identity_of
    from pnr_tf.data.annotations import read_pairs
    from pnr_tf.data.synthetic import write_synthetic_dataset
    from pnr_tf.training.run_splits import split_pair_files

    write_synthetic_dataset(tmp_path / "data", num_identities=10, images_per_identity=3, seed=2)
    config = tiny_training_config(tmp_path / "data", data={"validation_identities": 0.2, "test_identities": 0.2})
    paths = split_pair_files(config, tmp_path / "run")
    identities = {name: {identity_of(name) for row in read_pairs(path) for name in row} for name, path in paths.items()}
    assert identities["train"] and identities["validation"] and identities["test"]
    assert not (identities["train"] & identities["validation"]) and not (identities["train"] & identities["test"])
    assert not (identities["validation"] & identities["test"])
    everything = {tuple(row) for row in read_pairs(tmp_path / "data" / "pairs.csv")}
    assert set().union(*({tuple(row) for row in read_pairs(path)} for path in paths.values())) == everything
    samples = load_samples(config, paths["train"])
    assert {identity_of(path.rsplit("/", 1)[1]) for path in samples.target_paths} == identities["train"]
    # train.validation_size: at most that many validation pairs, spread over every held-out person.
    from pnr_tf.training.run_splits import run_samples

    validation_rows = read_pairs(paths["validation"])
    _, every = run_samples(tiny_training_config(tmp_path / "data", data={"validation_identities": 0.2, "test_identities": 0.2},
                                                train={"validation_size": 0}), tmp_path / "run")  # fmt: skip
    _, some = run_samples(tiny_training_config(tmp_path / "data", data={"validation_identities": 0.2, "test_identities": 0.2},
                                               train={"validation_size": 4}), tmp_path / "run")  # fmt: skip
    assert len(every) == len(validation_rows) > 4 and len(some) == 4
    assert {identity_of(path.rsplit("/", 1)[1]) for path in some.target_paths} == identities["validation"]
    assert [path.rsplit("/", 1)[1] for path in some.target_paths] == [validation_rows[0][1], *[path.rsplit("/", 1)[1] for path in some.target_paths[1:-1]], validation_rows[-1][1]]


def test_the_learning_rate_is_constant_then_falls_linearly_to_zero():
    train = SimpleNamespace(learning_rate=0.002, num_steps=10, decay_start=0.6)
    # Steps 0..6 at the full rate, then (10 - step) / 4 of it; 0 once the run is over.
    expected = [0.002] * 7 + [0.0015, 0.001, 0.0005, 0.0, 0.0]
    np.testing.assert_allclose([schedule.learning_rate(train, step) for step in range(12)], expected, rtol=1e-12, atol=0)
    constant = SimpleNamespace(learning_rate=0.002, num_steps=10, decay_start=1.0)
    assert [schedule.learning_rate(constant, step) for step in range(10)] == [0.002] * 10


def largest_change(before, after):
    return max(float(np.max(np.abs(a.astype(np.float64) - b))) for a, b in zip(after, before))


def test_each_optimizer_steps_at_the_scheduled_rate(five_steps):
    history, rate = five_steps.history, five_steps.trainer.config.train.learning_rate
    # Adam's first update moves each weight by rate * g / (|g| + epsilon): the rate, where g is not tiny.
    # The generator's first update is step 0 (the full rate), the discriminators' step 1 (4/5 of it).
    assert largest_change(history[0].weights[0], history[1].weights[0]) == pytest.approx(rate, rel=1e-3)
    for before, after in zip(history[1].weights[1:], history[2].weights[1:]):
        assert largest_change(before, after) == pytest.approx(0.8 * rate, rel=1e-3)
    # The sixth step is past the end, at rate 0: a rate captured in the trace as a constant would move the weights.
    assert not any(changed(before, after) for before, after in zip(history[5].weights, history[6].weights))


def test_mirror_pairs_add_training_people_and_single_photo_people_never_held_out_ones(tmp_path):
    import shutil

    from pnr_tf.data.datasets import MARKET

    identity_of = MARKET.identity_of
    from pnr_tf.data.annotations import read_pairs
    from pnr_tf.data.synthetic import write_synthetic_dataset
    from pnr_tf.training.run_splits import run_samples

    root = tmp_path / "data"
    write_synthetic_dataset(root, num_identities=10, images_per_identity=3, seed=2)
    lines = (root / "annotations.csv").read_text().splitlines()
    first = lines[1].split(":", 1)
    for extra in ("0099_c1s1_000000_00.jpg", "0000_c1s1_000000_00.jpg"):  # one person with a single photo, one distractor
        shutil.copy(root / "images" / first[0], root / "images" / extra)
        lines.append(f"{extra}:{first[1]}")
    (root / "annotations.csv").write_text("\n".join(lines) + "\n")
    split = {"validation_identities": 0.2, "test_identities": 0.2}
    plain, _ = run_samples(tiny_training_config(root, data=split), tmp_path / "plain")
    samples, _ = run_samples(tiny_training_config(root, data={**split, "mirror_pairs": True}), tmp_path / "run")
    trained = {identity_of(row[-1]) for row in read_pairs(tmp_path / "run" / "split" / "pairs-train.csv")}
    mirrored = [path.rsplit("/", 1)[1] for path, flag in zip(samples.target_paths, samples.mirrored_targets()) if flag]
    assert samples.target_paths[: len(plain)] == plain.target_paths and not samples.mirrored_targets()[: len(plain)].any()
    assert {identity_of(name) for name in mirrored} == trained | {"0099"}
    assert len(mirrored) == 3 * len(trained) + 1
    assert [sources for sources, flag in zip(samples.source_paths, samples.mirrored_targets()) if flag] == [
        [path] for path, flag in zip(samples.target_paths, samples.mirrored_targets()) if flag
    ]
    with pytest.raises(Exception, match="mirror_pairs"):
        tiny_training_config(root, data={"mirror_pairs": True}, train={"mode": "unsupervised"})


def test_without_the_adversarial_terms_no_discriminator_is_built_or_checkpointed_and_a_resume_may_add_them(synthetic_root, tmp_path):
    config = tiny_training_config(synthetic_root, loss={"adversarial": False}, train={"num_steps": 1})
    trainer = Trainer(config, tmp_path)
    assert trainer.task.models.appearance_discriminator is None and trainer.task.optimizers.discriminator is None
    trainer.fit()
    stored = {name.split("/", 1)[0] for name, _ in tf.train.list_variables(str(tmp_path / "checkpoints"))}
    assert "generator" in stored and not stored & {"appearance_discriminator", "pose_discriminator", "discriminator_optimizer"}
    # Adding them on a resume starts the discriminators fresh and trains them from there.
    later = dataclasses.replace(config, loss=dataclasses.replace(config.loss, adversarial=True), train=dataclasses.replace(config.train, num_steps=2))
    resumed = Trainer(later, tmp_path)
    assert resumed.step == 1 and resumed.task.models.pose_discriminator is not None
    initial = weights(resumed.task.models.pose_discriminator)
    resumed.fit()
    assert resumed.step == 2 and changed(initial, weights(resumed.task.models.pose_discriminator))
    assert "pose_discriminator" in {name.split("/", 1)[0] for name, _ in tf.train.list_variables(str(tmp_path / "checkpoints"))}
    # Dropping them from a run that has them would lose their training: refused.
    with pytest.raises(ConfigError, match="loss.adversarial: True in the run, False now"):
        Trainer(dataclasses.replace(later, loss=config.loss), tmp_path)
