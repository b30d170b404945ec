"""Colour error: how far the person's mean colour in a generated image is from the real target's.

SSIM compares structure and L1 every pixel; neither says plainly that a yellow shirt came out dark
grey. This does, in one number: per pair, the mean RGB inside the target's body mask (PATN's mask,
the one mask-SSIM uses) of the generated image and of the target, and the Euclidean distance between
the two, in uint8 levels (0: the same mean colour; a grey figure for a saturated shirt is 100 or more).
A small-sample number like the others: report it beside the baselines on the same pairs.
"""

import numpy as np


def mean_colours(images, masks):
    """(N, H, W, 3) uint8 images, (N, H, W, 1) 0/1 masks -> (N, 3) mean RGB inside each mask (NaN where a mask is empty)."""
    images = np.asarray(images, np.float64)
    masks = np.asarray(masks, np.float64)
    area = masks.sum(axis=(1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        return (images * masks).sum(axis=(1, 2)) / area


def colour_errors(targets, generated, masks):
    """Per pair: |mean RGB of generated - mean RGB of target| inside the target's body mask, uint8 levels."""
    return np.linalg.norm(mean_colours(generated, masks) - mean_colours(targets, masks), axis=-1)
