"""Sharpness: how much detail the generated person has, relative to real photos of people.

Per image, the mean gradient magnitude (Sobel, 3 x 3, on the grey image in uint8 levels) inside the
target's body mask; the figure is the mean over the generated images divided by the mean over the
real targets: 1.0 is as sharp as the photos, a blurry figure scores well below (a flat grey one 0).
Noise also has gradients, so read it beside SSIM and the samples, never alone.
"""

import cv2
import numpy as np


def person_gradients(images, masks):
    """(N, H, W, 3) uint8 images, (N, H, W, 1) 0/1 masks -> (N,) mean gradient magnitude inside each mask."""
    values = []
    for image, mask in zip(np.asarray(images), np.asarray(masks)):
        grey = cv2.cvtColor(np.asarray(image, np.uint8), cv2.COLOR_RGB2GRAY).astype(np.float64)
        magnitude = np.hypot(cv2.Sobel(grey, cv2.CV_64F, 1, 0, ksize=3), cv2.Sobel(grey, cv2.CV_64F, 0, 1, ksize=3))
        inside = mask[..., 0] > 0
        values.append(magnitude[inside].mean() if inside.any() else np.nan)
    return np.asarray(values)


def sharpness_ratio(targets, generated, masks):
    """Mean person gradient of the generated images over the real targets' (1.0: as sharp as the photos)."""
    return float(np.nanmean(person_gradients(generated, masks)) / np.nanmean(person_gradients(targets, masks)))
