"""pnr_tf.precision: train.precision resolved against the machine, and the regression kept float32 under bfloat16."""

import numpy as np
import pytest
import tensorflow as tf

from pnr_tf.config import ConfigError
from pnr_tf.config import load_config
from pnr_tf.config import requested_precision
from pnr_tf.config import resume_changes
from pnr_tf.layers.regression import PNormRegression
from pnr_tf.precision import cpu_flags
from pnr_tf.precision import resolve_precision

AVX2 = {"fpu", "sse4_2", "avx", "avx2", "fma"}


@pytest.mark.parametrize(
    "flags, gpus, policy",
    [
        (AVX2, [], "float32"),  # bfloat16 would be emulated
        (AVX2 | {"avx512f", "avx512_bf16"}, [], "mixed_bfloat16"),  # AMD Zen 4 / 5, Intel Cooper Lake
        (AVX2 | {"avx512f", "avx512_bf16", "amx_bf16", "amx_tile"}, [], "mixed_bfloat16"),  # Intel Sapphire Rapids
        (AVX2, [(8, 6)], "mixed_bfloat16"),  # Ampere
        (AVX2, [(7, 5)], "mixed_float16"),  # Turing: no bfloat16
        (AVX2, [(9, 0), (6, 1)], "float32"),  # the oldest GPU decides
    ],
)
def test_auto_picks_bfloat16_where_the_hardware_has_it(flags, gpus, policy):
    resolved = resolve_precision("auto", flags=flags, gpus=gpus)
    assert resolved.policy == policy and resolved.reason
    assert resolved.loss_scaling == (policy == "mixed_float16")


def test_an_explicit_precision_is_taken_as_it_is():
    for requested in ("float32", "mixed_bfloat16", "mixed_float16"):
        assert resolve_precision(requested, flags=AVX2, gpus=[]).policy == requested
    with pytest.raises(ValueError, match="precision must be one of"):
        resolve_precision("bfloat16")


def test_cpu_flags_are_read_from_cpuinfo(tmp_path):
    (tmp_path / "cpuinfo").write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512_bf16\n\nprocessor\t: 1\nflags\t\t: fpu avx2 avx512_bf16\n")
    assert cpu_flags(tmp_path / "cpuinfo") == {"fpu", "avx2", "avx512_bf16"}
    assert cpu_flags(tmp_path / "absent") == set()


def test_the_older_mixed_precision_switch_means_float16_and_may_not_contradict_precision():
    assert requested_precision(load_config(overrides=["train.mixed_precision=true"]).train) == "mixed_float16"
    assert requested_precision(load_config().train) == "auto"
    with pytest.raises(ConfigError, match="train.mixed_precision: true means train.precision: mixed_float16"):
        load_config(overrides=["train.mixed_precision=true", "train.precision=mixed_bfloat16"])
    with pytest.raises(ConfigError, match="train.precision must be one of"):
        load_config(overrides=["train.precision=bfloat16"])


def test_a_resume_may_move_between_float32_and_bfloat16_but_not_to_float16():
    run = load_config(overrides=["train.precision=float32"])
    assert resume_changes(run, load_config(overrides=["train.precision=mixed_bfloat16"])) == {"train.precision": ("float32", "mixed_bfloat16")}
    assert resume_changes(run, load_config(overrides=["train.precision=auto"])) == {"train.precision": ("float32", "auto")}
    with pytest.raises(ConfigError, match="train.precision: 'float32' in the run, 'mixed_float16' now"):
        resume_changes(run, load_config(overrides=["train.precision=mixed_float16"]))


def test_the_regression_under_a_bfloat16_policy_solves_in_float32_as_the_float32_layer_does():
    """The same W to float32 rounding (tests/layers/test_regression.py checks the float32 layer against float64 references)."""
    rng = np.random.default_rng(0)
    appearance = tf.constant(rng.normal(size=(2, 48, 8)), tf.bfloat16)  # what a bfloat16 encoder hands it
    pose = tf.constant(rng.normal(size=(2, 48, 5)), tf.bfloat16)
    mixed = PNormRegression(p=1, num_iterations=4, solver="cholesky", dtype="mixed_bfloat16")
    plain = PNormRegression(p=1, num_iterations=4, solver="cholesky")
    assert mixed.compute_dtype == "float32"
    coefficients = mixed.estimate(appearance, pose)
    expected = plain.estimate(tf.cast(appearance, tf.float32), tf.cast(pose, tf.float32))
    assert coefficients.dtype == tf.float32
    np.testing.assert_allclose(coefficients.numpy(), expected.numpy(), rtol=1e-5, atol=1e-6)
