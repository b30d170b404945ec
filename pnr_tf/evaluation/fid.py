"""Fréchet Inception Distance (Heusel et al. 2017) with real-image statistics cached per dataset."""

import hashlib
import json
from pathlib import Path

import numpy as np
import tensorflow as tf


def feature_statistics(features):
    """Mean and covariance (unbiased, as the reference implementation) of (N, D) features."""
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2 or len(features) < 2:
        raise ValueError(f"need (N >= 2, D) features, got shape {features.shape}")
    return features.mean(axis=0), np.cov(features, rowvar=False)


def _symmetric_square_root(matrix):
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
    return (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T


def frechet_distance(mean_a, covariance_a, mean_b, covariance_b):
    """||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2)).

    Tr((S_a S_b)^(1/2)) is computed as the sum of square roots of the eigenvalues of
    S_a^(1/2) S_b S_a^(1/2), which is symmetric positive semi-definite and has the same spectrum,
    so no complex square root (scipy.linalg.sqrtm) is needed.
    """
    root_a = _symmetric_square_root(np.asarray(covariance_a, np.float64))
    middle = root_a @ np.asarray(covariance_b, np.float64) @ root_a
    trace_root = np.sqrt(np.clip(np.linalg.eigvalsh((middle + middle.T) / 2), 0, None)).sum()
    difference = np.asarray(mean_a, np.float64) - np.asarray(mean_b, np.float64)
    return float(difference @ difference + np.trace(covariance_a) + np.trace(covariance_b) - 2 * trace_root)


def cached_statistics(cache_dir, image_paths, weights_key, compute_features):
    """Real-image statistics, computed once per (image list, Inception weights) and kept as .npz.

    The key hashes the sorted paths, their sizes and modification times, so a changed dataset is
    recomputed rather than silently reused.
    """
    paths = sorted(str(path) for path in image_paths)
    stats = [tf.io.gfile.stat(path) for path in paths]  # local files and URIs alike
    description = [(path, stat.length, int(stat.mtime_nsec // 1_000_000_000)) for path, stat in zip(paths, stats)]
    key = hashlib.sha256(json.dumps([description, weights_key]).encode()).hexdigest()[:16]
    cache_file = Path(cache_dir) / f"fid_real_{key}.npz"
    if cache_file.is_file():
        with np.load(cache_file) as stored:
            return stored["mean"], stored["covariance"], True
    mean, covariance = feature_statistics(compute_features(paths))
    cache_file.parent.mkdir(parents=True, exist_ok=True)
    temporary = cache_file.with_name(cache_file.stem + ".partial.npz")
    np.savez(temporary, mean=mean, covariance=covariance)
    temporary.replace(cache_file)
    return mean, covariance, False
