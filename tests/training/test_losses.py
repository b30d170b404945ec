"""Losses on fixed inputs with values computed by hand."""

from types import SimpleNamespace

import numpy as np
import pytest

from pnr_tf import losses
from pnr_tf.training.gan_step import generator_losses


def test_l1_is_the_mean_absolute_difference_per_example():
    generated = np.zeros((2, 2, 2, 3), np.float32)
    target = np.zeros((2, 2, 2, 3), np.float32)
    target[0] = 1.0  # every value off by 1
    target[1, 0, 0, 0] = 12.0  # one of 12 values off by 12
    np.testing.assert_allclose(losses.l1_loss(generated, target).numpy(), [1.0, 1.0])


def test_generator_loss_is_softplus_of_minus_logit_averaged_over_patches():
    logits = np.array([[0.0, 0.0], [2.0, -1.0]], np.float32).reshape(2, 1, 2, 1)
    expected = [np.log(2.0), (np.log1p(np.exp(-2.0)) + np.log1p(np.exp(1.0))) / 2]
    np.testing.assert_allclose(losses.gan_generator_loss(logits).numpy(), expected, rtol=1e-6)


def test_discriminator_loss_adds_real_and_fake_terms():
    real = np.array([3.0, 0.0], np.float32).reshape(2, 1, 1, 1)
    fake = np.array([-3.0, 0.0], np.float32).reshape(2, 1, 1, 1)
    # BCE(real=3, 1) = log(1 + e^-3); BCE(fake=-3, 0) = log(1 + e^-3); logits 0 give log 2 each.
    expected = [2 * np.log1p(np.exp(-3.0)), 2 * np.log(2.0)]
    np.testing.assert_allclose(losses.gan_discriminator_loss(real, fake).numpy(), expected, rtol=1e-6)


def test_perceptual_loss_compares_features_per_example():
    features = np.arange(16, dtype=np.float32).reshape(2, 2, 2, 2)
    assert losses.perceptual_loss(features, features + 0.5).numpy() == pytest.approx([0.5, 0.5])


def test_ssim_loss_is_one_minus_scikit_image_ssim_of_the_masked_images():
    rng = np.random.default_rng(3)
    target = rng.uniform(-1, 1, (2, 32, 16, 3))
    generated = np.clip(target + rng.normal(0, 0.3, target.shape), -1, 1)
    mask = np.zeros((2, 32, 16, 1))
    mask[:, 6:28, 3:13] = 1.0
    to_unit = lambda image: (image + 1.0) / 2.0  # noqa: E731
    expected_plain = [1.0 - ssim_reference(to_unit(t), to_unit(g)) for t, g in zip(target, generated)]
    expected_masked = [1.0 - ssim_reference(to_unit(t) * m, to_unit(g) * m) for t, g, m in zip(target, generated, mask)]
    # float32 against float64 sums over 11 x 11 windows: a few 1e-6
    np.testing.assert_allclose(losses.ssim_loss(generated, target).numpy(), expected_plain, atol=1e-5)
    np.testing.assert_allclose(losses.ssim_loss(generated, target, mask).numpy(), expected_masked, atol=1e-5)
    np.testing.assert_allclose(losses.ssim_loss(target, target, mask).numpy(), [0.0, 0.0], atol=1e-6)


def test_the_generator_total_adds_the_weighted_ssim_terms_to_the_foreground_weighted_l1():
    rng = np.random.default_rng(4)
    target = rng.uniform(-1, 1, (2, 32, 16, 3)).astype(np.float32)
    generated = np.clip(target + rng.normal(0, 0.5, target.shape), -1, 1).astype(np.float32)
    mask = np.zeros((2, 32, 16, 1), np.float32)
    mask[:, 4:30, 2:14] = 1.0
    weights = {"l1": 10.0, "foreground": 2.0, "mask_ssim": 3.0, "ssim": 5.0}
    no_adversary = SimpleNamespace(appearance=False, pose=False)
    total, metrics = generator_losses(SimpleNamespace(features=None), None, target, generated, weights, no_adversary, 2, mask)
    weighted_l1 = (np.abs(generated - target) * (1 + 2.0 * mask)).reshape(2, -1).mean(axis=1)
    structure = [1.0 - ssim_reference((t + 1) / 2 * m, (g + 1) / 2 * m) for t, g, m in zip(target, generated, mask)]
    whole = [1.0 - ssim_reference((t + 1) / 2, (g + 1) / 2) for t, g in zip(target, generated)]
    assert float(total) == pytest.approx(np.mean(10.0 * weighted_l1 + 3.0 * np.array(structure) + 5.0 * np.array(whole)), rel=1e-5)
    assert float(metrics["mask_ssim_loss"]) == pytest.approx(np.mean(structure), rel=1e-5)
    assert float(metrics["ssim_loss"]) == pytest.approx(np.mean(whole), rel=1e-5)
    assert float(metrics["l1"]) == pytest.approx(np.abs(generated - target).mean(), rel=1e-5)  # logged plain


def ssim_reference(reference, generated):
    """scikit-image's SSIM in float64 with tf.image.ssim's window (11 x 11 Gaussian, sigma 1.5) on [0, 1] images."""
    from skimage.metrics import structural_similarity

    return structural_similarity(
        np.float64(reference), np.float64(generated), gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
        channel_axis=-1, data_range=1.0,
    )  # fmt: skip


def test_the_ssim_terms_are_scheduled_only_when_they_have_a_weight():
    from pnr_tf.config import LossConfig
    from pnr_tf.training import schedule

    assert "mask_ssim" not in schedule.loss_weights(LossConfig(), 0) and "ssim" not in schedule.loss_weights(LossConfig(), 0)
    assert schedule.loss_weights(LossConfig(mask_ssim_weight=3.0), 0)["mask_ssim"] == 3.0
    assert schedule.loss_weights(LossConfig(ssim_weight=4.0), 0)["ssim"] == 4.0
