"""Losses on fixed inputs with values computed by hand."""

import numpy as np
import pytest

from pnr_tf import losses


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
