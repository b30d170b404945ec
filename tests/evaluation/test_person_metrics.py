"""The person's colour error and sharpness against hand-computed values and SciPy's Sobel filter."""

import numpy as np
import pytest
from scipy import ndimage

from pnr_tf.evaluation.colour import colour_errors
from pnr_tf.evaluation.evaluate import comparison_table
from pnr_tf.evaluation.sharpness import person_gradients
from pnr_tf.evaluation.sharpness import sharpness_ratio


def test_colour_error_is_the_distance_between_mean_colours_inside_the_mask():
    target = np.zeros((2, 4, 4, 3), np.uint8)
    generated = np.zeros((2, 4, 4, 3), np.uint8)
    masks = np.zeros((2, 4, 4, 1), np.uint8)
    masks[:, 1:3, 1:3] = 1  # four pixels
    target[0, 1:3, 1:3] = (200, 180, 40)  # a yellow shirt
    generated[0, 1:3, 1:3] = (90, 90, 90)  # drawn grey
    generated[0, 0, 0] = (255, 0, 0)  # outside the mask: not counted
    target[1, 1:3, 1:3] = (10, 20, 30)
    generated[1, 1:3, 1:3] = (10, 20, 30)
    generated[1, 1, 2] = (14, 20, 30)  # one of four pixels 4 levels redder: the mean is 1 level off
    errors = colour_errors(target, generated, masks)
    np.testing.assert_allclose(errors, [np.sqrt(110**2 + 90**2 + 50**2), 1.0])


def test_person_gradients_equal_scipys_sobel_inside_the_mask():
    rng = np.random.default_rng(4)
    grey = rng.integers(0, 256, (3, 20, 12), dtype=np.uint8)
    images = np.repeat(grey[..., None], 3, axis=-1)  # R = G = B: the grey image is exact
    masks = (rng.uniform(size=(3, 20, 12, 1)) > 0.5).astype(np.uint8)
    expected = []
    for image, mask in zip(grey.astype(np.float64), masks):
        magnitude = np.hypot(ndimage.sobel(image, axis=1, mode="mirror"), ndimage.sobel(image, axis=0, mode="mirror"))
        expected.append(magnitude[mask[..., 0] > 0].mean())
    np.testing.assert_allclose(person_gradients(images, masks), expected, rtol=1e-12)


def test_sharpness_is_one_for_the_photos_themselves_and_zero_for_a_flat_figure():
    rng = np.random.default_rng(5)
    targets = rng.integers(0, 256, (4, 16, 8, 3), dtype=np.uint8)
    masks = np.ones((4, 16, 8, 1), np.uint8)
    assert sharpness_ratio(targets, targets, masks) == pytest.approx(1.0)
    assert sharpness_ratio(targets, np.full_like(targets, 128), masks) == 0.0
    blurred = np.stack([ndimage.uniform_filter(image.astype(float), size=(3, 3, 1)).round().astype(np.uint8) for image in targets])
    assert 0.0 < sharpness_ratio(targets, blurred, masks) < 0.6


def test_the_report_table_names_the_person_columns():
    table = comparison_table({"pairs": {"ssim": 0.2, "mask_ssim": 0.75, "l1": 0.3, "colour_error": 31.5, "sharpness": 0.42}})
    header, row = table.splitlines()
    assert header.split()[:5] == ["ssim", "mask_ssim", "l1", "colour", "sharp"] and "31.500" in row and "0.420" in row
