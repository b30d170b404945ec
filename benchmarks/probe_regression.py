"""What a trained generator's regression carries, printed: the figures behind BENCHMARKS.md's "why".

    python -m benchmarks.probe_regression --model runs/market_cpu [--data-root ../shared/data/market_subset] [--limit 256]

On the run's training images (its split/pairs-train.csv, each image once), with the weight average:

- the pose rows P: singular values of each image's P (n x k) over its largest, averaged, and how
  many directions the ridge leaves to W (s^2 above ridge * mean diag of P^T P, what the solve adds);
- the fit: |A - P W| / |A - mean row| per image, median (1.0 = the pose explains nothing of A);
- colour in A: how much of each person's mean colour (RGB minus its grey, inside the body mask) a
  ridge regression on the mean appearance row inside the mask recovers on held-back images (R^2);
- self-reconstruction: the image drawn in its own pose (source = target), SSIM and mask-SSIM, and the
  colourfulness inside the mask (mean |RGB - grey| in uint8 levels), ours against the photos'.
"""

import argparse

import pnr_tf  # noqa: F401, I001  (first: quiet TensorFlow start-up)  # isort: skip
import cv2
import numpy as np

from pnr_tf import files
from pnr_tf.config import load_config
from pnr_tf.conventions import from_pixels
from pnr_tf.conventions import to_pixels
from pnr_tf.data.annotations import read_annotations
from pnr_tf.data.annotations import read_pairs
from pnr_tf.data.pipeline import build_sample_set
from pnr_tf.data.pipeline import decoded_batches
from pnr_tf.evaluation.ssim import body_masks
from pnr_tf.evaluation.ssim import mask_ssim_scores
from pnr_tf.evaluation.ssim import ssim_scores
from pnr_tf.inference import PoseTransfer


def colourfulness(images, masks):
    """Mean |RGB - grey| inside the (N, H, W, 1) masks, uint8 levels."""
    pixels = np.asarray(images, np.float64)
    chroma = np.abs(pixels - pixels.mean(-1, keepdims=True)).mean(-1)
    return float((chroma * masks[..., 0]).sum() / masks.sum())


def held_back_r2(features, targets, seed=0):
    """R^2 of a ridge regression (with intercept) fitted on two thirds of the rows, scored on the rest."""
    order = np.random.default_rng(seed).permutation(len(features))
    fit, held = order[: len(order) * 2 // 3], order[len(order) * 2 // 3 :]
    design = np.c_[features, np.ones(len(features))]
    gram = design[fit].T @ design[fit]
    coefficients = np.linalg.solve(gram + 1e-2 * np.trace(gram) / len(gram) * np.eye(len(gram)), design[fit].T @ targets[fit])
    residual = targets[held] - design[held] @ coefficients
    return 1.0 - (residual**2).sum() / ((targets[held] - targets[fit].mean(0)) ** 2).sum()


def probe(model_path, data_root, limit):
    config = load_config(files.join(model_path, "config.yaml"))
    root = data_root or config.data.root
    annotations = read_annotations(files.join(root, config.data.annotation_file))
    names = sorted({source for source, _ in read_pairs(files.join(model_path, "split", "pairs-train.csv"))})[:limit]
    samples = build_sample_set([((name,), name) for name in names], annotations, files.join(root, config.data.image_dir),
                               (config.data.image_height, config.data.image_width), "error", "training images")  # fmt: skip
    model = PoseTransfer.load(model_path)
    generator = model.generator
    rows_height, rows_width = -(-model.image_size[0] // 4), -(-model.image_size[1] // 4)  # the stride-4 rows
    spectra, kept, residuals, mean_rows, colours, photos, drawn, masks = [], [], [], [], [], [], [], []
    for batch in decoded_batches(samples, 32, model.image_size):
        images, keypoints = batch["source_images"][:, 0], batch["source_keypoints"][:, 0]
        appearance = generator.appearance_encoder(from_pixels(images)).numpy()
        heatmaps = model.heatmaps(keypoints)
        pose = generator.pose_encoder(heatmaps).numpy()
        coefficients = generator.regression.estimate(appearance, pose).numpy()
        fitted = pose @ coefficients
        singular = np.linalg.svd(pose, compute_uv=False)
        spectra.append(singular / singular[:, :1])
        kept.append((singular**2 > config.model.ridge * (singular**2).sum(1, keepdims=True) / pose.shape[-1]).sum(1))
        centred = appearance - appearance.mean(1, keepdims=True)
        residuals.append(np.linalg.norm(appearance - fitted, axis=(1, 2)) / np.linalg.norm(centred, axis=(1, 2)))
        mask = body_masks(keypoints, *model.image_size).astype(np.float32)
        row_mask = np.stack([cv2.resize(m[..., 0], (rows_width, rows_height), interpolation=cv2.INTER_AREA).reshape(-1) for m in mask])
        mean_rows.append(np.einsum("bn,bnd->bd", row_mask / row_mask.sum(1, keepdims=True), appearance))
        person = (images * mask).sum((1, 2)) / mask.sum((1, 2))
        colours.append(person - person.mean(1, keepdims=True))
        drawn.append(to_pixels(generator.render(coefficients, heatmaps)).numpy())
        photos.append(images)
        masks.append(mask)
    spectra, photos, drawn, masks = map(np.concatenate, (spectra, photos, drawn, masks))
    print(f"{model_path}: {len(photos)} training images, weight average")
    print("P singular values / largest (mean):", " ".join(f"{value:.3f}" for value in spectra.mean(0)))
    print(f"P directions above the ridge: {np.mean(np.concatenate(kept)):.1f} of {spectra.shape[1]}")
    print(f"|A - P W| / |A - mean row|, median: {np.median(np.concatenate(residuals)):.3f}")
    print(f"person colour recovered from A (held-back R^2): {held_back_r2(np.concatenate(mean_rows), np.concatenate(colours)):.3f}")
    print(f"self-reconstruction: SSIM {ssim_scores(photos, drawn).mean():.3f}, mask-SSIM {mask_ssim_scores(photos, drawn, masks).mean():.3f}, "
          f"colourfulness {colourfulness(drawn, masks):.1f} (photos {colourfulness(photos, masks):.1f})")  # fmt: skip


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="a run directory (its config.yaml and split/ are read)")
    parser.add_argument("--data-root", default=None, help="the data folder (default: the run's data.root)")
    parser.add_argument("--limit", type=int, default=256, help="training images probed")
    arguments = parser.parse_args()
    probe(arguments.model, arguments.data_root, arguments.limit)


if __name__ == "__main__":
    main()
