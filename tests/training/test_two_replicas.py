"""Two logical CPU devices apply the same update as one (split from test_distributed.py so pytest-xdist
can balance the slow distribution tests between its workers)."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

REPOSITORY = Path(__file__).resolve().parents[2]


def test_two_replicas_apply_the_same_update_as_one_device(synthetic_root, tmp_path):
    environment = dict(os.environ, PYTHONPATH=str(REPOSITORY))
    script = Path(__file__).with_name("two_device_step.py")
    result = subprocess.run([sys.executable, str(script), str(synthetic_root), str(tmp_path)], env=environment, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    arrays = np.load(tmp_path / "result.npz")
    assert (int(arrays["one_num_replicas"]), int(arrays["two_num_replicas"])) == (1, 2)
    names = sorted(name[len("one_"):] for name in arrays.files if name.startswith("one_") and "num_replicas" not in name)
    beta_1, beta_2 = arrays["one_beta"]
    # After an optimizer's first update Adam's moments are m = (1 - beta_1) g and v = (1 - beta_2) g^2:
    # the applied (all-reduced) gradient g, with its scale and sign everywhere (unlike the update itself,
    # about lr * sign(g)).
    momenta = [name for name in names if name.startswith("momentum")]
    assert any(name.startswith("momentum_generator") for name in momenta) and any(name.startswith("momentum_discriminator") for name in momenta)
    assert {name for name in names if name.startswith("metric")} >= {"metric_generator_total", "metric_gan_pose", "metric_discriminator_pose"}
    applied = {f"{setting}_{name}": arrays[f"{setting}_{name}"].astype(np.float64) / (1 - beta_1) for setting in ("one", "two") for name in momenta}
    for key, gradient in applied.items():
        # v holds the square of the same g: the slots come from one update of one gradient.
        velocity = arrays[key.replace("momentum", "velocity")]
        scale = np.abs(gradient).max()
        assert scale > 0, key
        np.testing.assert_allclose(velocity, (1 - beta_2) * gradient**2, rtol=1e-3, atol=1e-5 * (1 - beta_2) * scale**2, err_msg=key)
    # The same inputs and weights: losses and the all-reduced gradients of two half batches equal one
    # device's to rounding (measured 7e-7 and 2e-5 of the largest entry); a doubled or a missing
    # reduction is off by 50-100 %.
    for name in (name for name in names if name.startswith("metric")):
        np.testing.assert_allclose(arrays[f"two_{name}"], arrays[f"one_{name}"], rtol=1e-5, err_msg=name)
    for name in momenta:
        one, two = applied[f"one_{name}"], applied[f"two_{name}"]
        np.testing.assert_allclose(two, one, rtol=0, atol=1e-3 * np.abs(one).max(), err_msg=name)
    # Batch norm on two replicas normalises each half with the whole batch's moments (float64 NumPy;
    # epsilon 1e-5, moving averages at momentum 0.9 from 0 and 1), as one device would.
    batch = arrays["batch_norm_input"].astype(np.float64)
    mean, variance = batch.mean(axis=(0, 1, 2)), batch.var(axis=(0, 1, 2))
    np.testing.assert_allclose(arrays["batch_norm_output"], (batch - mean) / np.sqrt(variance + 1e-5), atol=1e-5)
    np.testing.assert_allclose(arrays["batch_norm_moving_mean"], 0.1 * mean, rtol=1e-5)
    np.testing.assert_allclose(arrays["batch_norm_moving_variance"], 0.9 + 0.1 * variance, rtol=1e-5)
