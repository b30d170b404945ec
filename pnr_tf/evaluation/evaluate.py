"""The evaluation driver: images to score (from our generator or another method's folder), scores, report.

A ``ScoredSet`` holds, per pair, the names, the first source, the target and the generated image
(uint8 RGB) and the target keypoints (for the body mask). ``score`` computes the paper's metrics on
it; ``write_report`` writes metrics.json, per_pair.csv and best_worst.png.
"""

import csv
import dataclasses
import functools
import io
import json
import re

import numpy as np

from pnr_tf import files
from pnr_tf.conventions import from_pixels
from pnr_tf.data.pipeline import decoded_batches
from pnr_tf.evaluation.baselines import BASELINES
from pnr_tf.evaluation.baselines import baseline_images
from pnr_tf.evaluation.colour import colour_errors
from pnr_tf.evaluation.fid import cached_statistics
from pnr_tf.evaluation.fid import feature_statistics
from pnr_tf.evaluation.fid import frechet_distance
from pnr_tf.evaluation.inception import inception_outputs
from pnr_tf.evaluation.inception_score import NUM_SPLITS
from pnr_tf.evaluation.inception_score import inception_score
from pnr_tf.evaluation.sharpness import sharpness_ratio
from pnr_tf.evaluation.ssim import body_masks
from pnr_tf.evaluation.ssim import mask_ssim_scores
from pnr_tf.evaluation.ssim import structural_similarity
from pnr_tf.progress import ProgressBar
from pnr_tf.visualize import labelled_rows
from pnr_tf.visualize import read_rgb
from pnr_tf.visualize import write_rgb

PATN_STRIP = re.compile(r"^(?P<source>.+)___(?P<target>.+)_vis\.(png|jpg|jpeg)$", re.IGNORECASE)
PLAIN_FILE = re.compile(r"^(?P<source>.+)___(?P<target>.+)\.(png|jpg|jpeg)$", re.IGNORECASE)


@dataclasses.dataclass
class ScoredSet:
    names: list  # [(source names tuple, target name)]
    sources: np.ndarray  # (N, H, W, 3) uint8, the first source
    targets: np.ndarray  # (N, H, W, 3) uint8
    generated: np.ndarray  # (N, H, W, 3) uint8
    target_keypoints: np.ndarray  # (N, 18, 2)
    target_paths: list = dataclasses.field(default_factory=list)  # real images for FID, when known

    def __len__(self):
        return len(self.names)

    @functools.cached_property
    def masks(self):
        """(N, H, W, 1) 0/1 target body masks for mask-SSIM and mask-IS, computed once."""
        return body_masks(self.target_keypoints, *self.targets.shape[1:3])


def generate_set(model, samples, names, batch_size=16, num_sources=None, baseline=None):
    """Runs a ``pnr_tf.inference.PoseTransfer`` over a SampleSet; num_sources keeps the first M sources of each tuple.

    With ``model=None`` and a ``baseline`` name, the "generated" images are that baseline's
    (images of the sample set's own size).
    """
    image_size = model.image_size if model is not None else _image_size_of(samples)
    sources, targets, generated = [], [], []
    progress = ProgressBar(len(samples), unit="image")
    for batch in decoded_batches(samples, batch_size, image_size):
        if model is not None:
            count = num_sources or batch["source_images"].shape[1]
            generated.append(model.generate(batch["source_images"][:, :count], batch["source_keypoints"][:, :count], batch["target_keypoints"]))
        sources.append(batch["source_images"][:, 0])
        targets.append(batch["target_images"])
        progress.update(sum(len(part) for part in targets))
    progress.close()
    sources, targets = np.concatenate(sources), np.concatenate(targets)
    return ScoredSet(
        names=names,
        sources=sources,
        targets=targets,
        generated=np.concatenate(generated) if model is not None else baseline_images(baseline, sources, targets),
        target_keypoints=samples.target_keypoints,
        target_paths=list(samples.target_paths),
    )


def _image_size_of(samples):
    image = read_rgb(samples.target_paths[0])
    return image.shape[:2]


class MissingOutputsError(ValueError):
    """A folder of another method's outputs lacks some of the pairs it is scored on."""


def read_generated_folder(folder, annotations, image_dir=None, limit=None, expected_pairs=None, allow_missing=False):
    """Another method's outputs: PATN's ``{from}___{to}_vis.png`` five-panel strips or plain ``{from}___{to}.png``.

    Strips give source (panel 1), target (panel 3) and generated (panel 5) as PATN's script reads
    them; plain files are the generated image, with source and target read from image_dir.
    ``expected_pairs`` (the pair file's rows, first ``limit``) are the pairs scored: one without an
    output raises MissingOutputsError (a method that skips its hard pairs would score better)
    unless ``allow_missing``. Returns the ScoredSet and the list of missing pairs.
    """
    folder = str(folder)
    if not files.is_dir(folder):
        raise FileNotFoundError(f"no folder of generated images at {folder}")
    outputs = {}
    for name in files.listdir(folder):
        match = PATN_STRIP.match(name) or PLAIN_FILE.match(name)
        if match:
            outputs.setdefault(match.group("source", "target"), files.join(folder, name))
    if not outputs:
        raise ValueError(f"{folder} holds no images named {{from}}___{{to}}.png or {{from}}___{{to}}_vis.png")
    missing = []
    if expected_pairs is None:
        chosen = list(outputs.values())[:limit] if limit else list(outputs.values())
    else:
        expected_pairs = [tuple(pair) for pair in expected_pairs][:limit] if limit else [tuple(pair) for pair in expected_pairs]
        missing = [pair for pair in expected_pairs if pair not in outputs]
        if missing and not allow_missing:
            shown = ", ".join(f"{source}___{target}" for source, target in missing[:5])
            raise MissingOutputsError(
                f"{len(missing)} of the {len(expected_pairs)} pairs have no output in {folder} (first: {shown}); scoring the "
                f"others would flatter the method. Pass --allow-missing to score the {len(expected_pairs) - len(missing)} present "
                "(the report then says how many are missing)"
            )
        chosen = [outputs[pair] for pair in expected_pairs if pair in outputs]
        if not chosen:
            raise MissingOutputsError(f"none of the {len(expected_pairs)} pairs has an output in {folder}")
    names, sources, targets, generated, keypoints, target_paths = [], [], [], [], [], []
    for path in chosen:
        file_name = files.name_of(path)
        strip = PATN_STRIP.match(file_name)
        source_name, target_name = (strip or PLAIN_FILE.match(file_name)).group("source", "target")
        if target_name not in annotations:
            raise ValueError(f"{file_name}: target {target_name!r} is not in the annotation file (its keypoints give the mask)")
        image = read_rgb(path)
        if strip:
            width = image.shape[1] // 5
            if image.shape[1] != 5 * width:
                raise ValueError(f"{file_name}: a PATN strip has five panels of equal width, got width {image.shape[1]}")
            source, target, output = image[:, :width], image[:, 2 * width : 3 * width], image[:, 4 * width :]
        else:
            if image_dir is None:
                raise ValueError(f"{file_name} is a plain generated image: pass the dataset's image folder for its target")
            output = image
            target = read_rgb(files.join(image_dir, target_name))
            source_path = files.join(image_dir, source_name)
            source = read_rgb(source_path) if files.is_file(source_path) else np.zeros_like(target)
            if target.shape != output.shape:
                raise ValueError(f"{file_name} is {output.shape[:2]} but its target {target_name} is {target.shape[:2]}")
        if image_dir is not None and files.is_file(files.join(image_dir, target_name)):
            target_paths.append(files.join(image_dir, target_name))
        names.append(((source_name,), target_name))
        sources.append(source)
        targets.append(target)
        generated.append(output)
        keypoints.append(annotations[target_name])
    target_paths = target_paths if len(target_paths) == len(names) else []  # FID's cache needs every real file
    scored = ScoredSet(names, np.stack(sources), np.stack(targets), np.stack(generated), np.asarray(keypoints, np.float32), target_paths)
    return scored, missing


def l1_distance(targets, generated):
    """Per-image mean absolute difference on [-1, 1] (uint8 levels / 127.5), the training loss's scale."""
    difference = np.abs(from_pixels(targets).astype(np.float64) - from_pixels(generated))
    return difference.reshape(len(difference), -1).mean(axis=1)


def pair_scores(targets, generated, masks=None, show_progress=False):
    """Per-pair SSIM and L1, and mask-SSIM when (N, H, W, 1) body masks are given."""
    ssim, mask_ssim = [], []
    progress = ProgressBar(len(targets), unit="pair") if show_progress else None
    for index, (target, image) in enumerate(zip(targets, generated)):
        ssim.append(structural_similarity(target, image))
        if masks is not None:
            mask_ssim.append(mask_ssim_scores(target[np.newaxis], image[np.newaxis], masks[index][np.newaxis])[0])
        if progress and ((index + 1) % 200 == 0 or index + 1 == len(targets)):
            progress.update(index + 1, {"ssim": float(np.mean(ssim))})
    if progress:
        progress.close()
    scores = {"ssim": np.array(ssim), "l1": l1_distance(targets, generated)}
    if masks is not None:
        scores["mask_ssim"] = np.array(mask_ssim)
    return scores


def person_scores(targets, generated, masks):
    """({"colour_error": mean, "sharpness": ratio}, per-pair colour errors) inside the targets' body masks."""
    colour = colour_errors(targets, generated, masks)
    return {"colour_error": float(np.nanmean(colour)), "sharpness": sharpness_ratio(targets, generated, masks)}, colour


def baseline_metrics(scored_set, with_masks=True):
    """{baseline name: {ssim, l1[, mask_ssim], colour_error, sharpness}} on a scored set's pairs (pnr_tf.evaluation.baselines)."""
    results = {}
    for name in BASELINES:
        images = baseline_images(name, scored_set.sources, scored_set.targets)
        scores = pair_scores(scored_set.targets, images, scored_set.masks if with_masks else None)
        results[name] = {metric: float(np.mean(values)) for metric, values in scores.items()}
        results[name].update(person_scores(scored_set.targets, images, scored_set.masks)[0])
    return results


def score(scored_set, inception=None, fid_cache_dir=None, inception_key="imagenet", with_masks=True):
    """{metric: value} and {per-pair metric: array}. IS, mask-IS and FID need ``inception``.

    FID compares the generated images with the set's real target images (each distinct image once);
    their statistics are cached in fid_cache_dir when given. ``with_masks=False`` leaves out mask-SSIM
    and mask-IS (PATN's DeepFashion protocol has neither).
    """
    masks = scored_set.masks if with_masks else None
    per_pair = pair_scores(scored_set.targets, scored_set.generated, masks, show_progress=True)
    metrics = {"num_pairs": len(scored_set), **{name: float(np.mean(values)) for name, values in per_pair.items()}}
    person, per_pair["colour_error"] = person_scores(scored_set.targets, scored_set.generated, scored_set.masks)
    metrics.update(person)
    if inception is None:
        return metrics, per_pair
    if len(scored_set) < NUM_SPLITS:
        raise ValueError(f"IS uses {NUM_SPLITS} splits and needs at least {NUM_SPLITS} pairs, got {len(scored_set)}")
    probabilities, features = inception_outputs(inception, scored_set.generated)
    metrics["is"], metrics["is_std"] = inception_score(probabilities)
    if with_masks:
        masked_probabilities, _ = inception_outputs(inception, scored_set.generated * masks)
        metrics["mask_is"], metrics["mask_is_std"] = inception_score(masked_probabilities)
    unique_targets = {}
    for index, path in enumerate(scored_set.target_paths or [None] * len(scored_set)):
        unique_targets.setdefault(path if path is not None else index, index)
    real_images = scored_set.targets[sorted(unique_targets.values())]
    if len(real_images) >= 2:
        if fid_cache_dir is not None and scored_set.target_paths:
            real_mean, real_covariance, _ = cached_statistics(
                fid_cache_dir, sorted(unique_targets), inception_key,
                lambda paths: inception_outputs(inception, np.stack([read_rgb(path) for path in paths]))[1],
            )  # fmt: skip
        else:
            real_mean, real_covariance = feature_statistics(inception_outputs(inception, real_images)[1])
        metrics["fid"] = frechet_distance(*feature_statistics(features), real_mean, real_covariance)
    return metrics, per_pair


def best_and_worst_grid(scored_set, values, count=8):
    """Rows source | target | generated for the count best and count worst pairs by values."""
    order = np.argsort(values)
    count = min(count, len(order) // 2 or 1)
    chosen = [*order[::-1][:count], *order[:count]]
    labels = [f"best {rank + 1} {values[index]:.3f}" for rank, index in enumerate(order[::-1][:count])]
    labels += [f"worst {rank + 1} {values[index]:.3f}" for rank, index in enumerate(order[:count])]
    rows = [[scored_set.sources[index], scored_set.targets[index], scored_set.generated[index]] for index in chosen]
    return labelled_rows(rows, labels)


def write_report(out_dir, metrics, scored_set, per_pair, prefix=""):
    """metrics.json is written by the caller (it may hold several sets); this writes the per-pair files."""
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(["sources", "target", *per_pair])
    for index, (sources, target) in enumerate(scored_set.names):
        writer.writerow([";".join(sources), target, *(f"{values[index]:.6f}" for values in per_pair.values())])
    files.write_text(files.join(out_dir, f"{prefix}per_pair.csv"), text.getvalue())
    write_rgb(files.join(out_dir, f"{prefix}best_worst.png"), best_and_worst_grid(scored_set, per_pair["ssim"]))


def write_metrics(out_dir, metrics):
    return files.write_text(files.join(out_dir, "metrics.json"), json.dumps(metrics, indent=2, sort_keys=True) + "\n")


def comparison_table(metrics_by_set, published=None, baselines=None, with_masks=True):
    """Text table: our metrics per set, the trivial baselines on the same pairs, published rows (named).

    colour: colour_error in uint8 levels (lower is better); sharp: sharpness, 1.0 = as sharp as the real photos.
    """
    columns = ["ssim", "mask_ssim", "l1", "colour_error", "sharpness", "is", "mask_is", "fid"]
    columns = columns if with_masks else [column for column in columns if not column.startswith("mask_")]
    headers = {"colour_error": "colour", "sharpness": "sharp"}
    lines = [f"{'':30s}" + "".join(f"{headers.get(column, column):>11s}" for column in columns)]
    sections = [("", metrics_by_set), ("baseline: ", baselines or {}), ("", published or {})]
    for prefix, rows in sections:
        for name, metrics in rows.items():
            lines.append(f"{prefix + name:30s}" + "".join(f"{metrics[c]:11.3f}" if c in metrics else f"{'-':>11s}" for c in columns))
    return "\n".join(lines)
