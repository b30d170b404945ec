"""The field's two benchmarks and their conventions: Market-1501 (128 x 64) and DeepFashion In-shop (256 x 176).

Each convention says how an image's identity is read from its name (pairs are drawn within one
identity, held-out splits never share one), the image size of the published setting, and what the
evaluation protocol scores (PATN's scripts: mask-SSIM is Market-only) with the published numbers.
"""

import dataclasses

import numpy as np

from pnr_tf.conventions import crop_keypoints


@dataclasses.dataclass(frozen=True)
class DatasetConvention:
    name: str
    image_size: tuple  # (height, width) of the published setting
    mask_ssim: bool  # PATN scores mask-SSIM / mask-IS on Market only
    published: dict  # method -> {metric: value}, printed beside ours by evaluate

    def identity_of(self, name):
        if self.name == "deepfashion":
            return name.rsplit("_", 1)[0]  # the item: fashionWOMENDressesid0000262902_3back.jpg -> ...id0000262902
        return name.split("_", 1)[0]  # Market: the 4-digit person id

    def is_distractor(self, name):
        return self.name == "market" and self.identity_of(name) in ("-1", "0000")


MARKET = DatasetConvention(
    name="market",
    image_size=(128, 64),
    mask_ssim=True,
    published={  # SPEC.md: the paper's Table 1 / Table 2
        "paper: pNR (LAD)": {"is": 3.631, "ssim": 0.305, "mask_is": 3.796, "mask_ssim": 0.807},
        "paper: pNR* (unsupervised, LAD)": {"is": 3.681, "ssim": 0.248, "mask_is": 3.610, "mask_ssim": 0.789},
        "paper: pNR multi-shot M = 5": {"ssim": 0.313, "mask_ssim": 0.818},
    },
)
DEEPFASHION = DatasetConvention(
    name="deepfashion",
    image_size=(256, 176),
    mask_ssim=False,
    published={  # IS / SSIM at 256 x 176 as published: PATN (CVPR 2019, Table 1, with PG2 and Def-GAN), XingGAN (ECCV 2020)
        "published: PG2": {"is": 3.090, "ssim": 0.762},
        "published: Def-GAN": {"is": 3.439, "ssim": 0.756},
        "published: PATN": {"is": 3.209, "ssim": 0.773},
        "published: XingGAN": {"is": 3.476, "ssim": 0.778},
    },
)
DATASETS = {convention.name: convention for convention in (MARKET, DEEPFASHION)}


def convention(name):
    if name not in DATASETS:
        raise ValueError(f"dataset must be one of {tuple(DATASETS)}, got {name!r}")
    return DATASETS[name]


def guess_convention(names, image_size=None):
    """DeepFashion when its names (fashion...) or its image size say so, else Market."""
    names = list(names)
    if names and sum(name.startswith("fashion") for name in names) > len(names) / 2:
        return DEEPFASHION
    if image_size is not None and tuple(image_size) == DEEPFASHION.image_size:
        return DEEPFASHION
    return MARKET


# PATN's DeepFashion images are the central 176 columns of the 256 x 256 originals.
DEEPFASHION_ORIGINAL_SIZE = (256, 256)
DEEPFASHION_CROP_LEFT = (DEEPFASHION_ORIGINAL_SIZE[1] - DEEPFASHION.image_size[1]) // 2


def crop_deepfashion(image, keypoints=None):
    """A 256 x 256 DeepFashion original -> PATN's 256 x 176 crop; keypoints shifted alike (outside -> -1)."""
    if image.shape[:2] != DEEPFASHION_ORIGINAL_SIZE:
        raise ValueError(f"a DeepFashion original is {DEEPFASHION_ORIGINAL_SIZE[0]} x {DEEPFASHION_ORIGINAL_SIZE[1]}, got {image.shape[:2]}")
    height, width = DEEPFASHION.image_size
    cropped = image[:, DEEPFASHION_CROP_LEFT : DEEPFASHION_CROP_LEFT + width]
    if keypoints is None:
        return cropped
    box = (0, DEEPFASHION_CROP_LEFT, height, width)
    return cropped, crop_keypoints(keypoints, box, DEEPFASHION.image_size).astype(np.asarray(keypoints).dtype)
