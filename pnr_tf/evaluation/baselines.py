"""Trivial baselines every quality number is reported beside, on the same pairs.

A pose-transfer score means little alone: a blurry grey figure, or the source photo unchanged,
already earns some SSIM. ``copy-source`` outputs the first source image as it is (it scores what
pose transfer adds over doing nothing); ``mean-image`` outputs, for every pair, the mean of the
set's target images (what knowing only the dataset's average person and background earns).
"""

import numpy as np

BASELINES = ("copy-source", "mean-image")


def baseline_images(name, sources, targets):
    """The baseline's "generated" images for (N, H, W, 3) uint8 sources and targets."""
    if name == "copy-source":
        return np.asarray(sources, np.uint8).copy()
    if name == "mean-image":
        mean = np.round(np.mean(np.asarray(targets, np.float64), axis=0)).astype(np.uint8)
        return np.repeat(mean[np.newaxis], len(targets), axis=0)
    raise ValueError(f"baseline must be one of {BASELINES}, got {name!r}")
