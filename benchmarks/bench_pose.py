"""Keypoint accuracy of pnr_tf.pose against the field's OpenPose annotations, and its speed, printed.

    python -m benchmarks.bench_pose [--data ../shared/data/market_subset] [--limit N]

PCK@0.5: a joint is right when it lies within half the torso size (the distance from the neck to
the midpoint of the hips, in the reference) of the reference joint. Every joint the reference has is
counted; one we call missing counts as wrong. Images whose reference lacks the neck or a hip are left
out (no torso size). Also printed: how often we report a joint the reference lacks, and ms per photo.
"""

import argparse
import sys
import time
from pathlib import Path

import pnr_tf  # noqa: F401, I001  (first: quiet TensorFlow start-up)  # isort: skip
import numpy as np

from pnr_tf.conventions import JOINT_NAMES
from pnr_tf.data.annotations import read_annotations
from pnr_tf.pose import PoseEstimationError
from pnr_tf.pose import PoseEstimator
from pnr_tf.visualize import read_rgb

REPOSITORY = Path(__file__).resolve().parents[1]


def pck(predicted, reference, threshold=0.5):
    """(correct, counted) per joint of one image, or None when the reference has no torso size."""
    present = (reference >= 0).all(axis=1)
    if not (present[1] and present[8] and present[11]):
        return None
    torso = np.linalg.norm(reference[1] - (reference[8] + reference[11]) / 2)
    found = (predicted >= 0).all(axis=1)
    distance = np.linalg.norm(predicted - reference, axis=1)
    return (present & found & (distance <= threshold * torso)), present


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(REPOSITORY.parent / "shared" / "data" / "market_subset"))
    parser.add_argument("--limit", type=int, default=None)
    arguments = parser.parse_args()
    data = Path(arguments.data)
    annotations = read_annotations(data / "annotations.csv")
    names = sorted(annotations)[: arguments.limit]
    estimator = PoseEstimator()
    correct, counted, extra, absent, failures, seconds = np.zeros(18), np.zeros(18), 0, 0, 0, []
    for name in names:
        photo = read_rgb(data / "images" / name)
        start = time.perf_counter()
        try:
            predicted = estimator.estimate(photo, name).keypoints
        except PoseEstimationError:
            failures += 1
            predicted = np.full((18, 2), -1.0)
        seconds.append(time.perf_counter() - start)
        reference = annotations[name].astype(np.float64)
        result = pck(predicted, reference)
        missing_in_reference = ~(reference >= 0).all(axis=1)
        extra += int(((predicted >= 0).all(axis=1) & missing_in_reference).sum())
        absent += int(missing_in_reference.sum())
        if result is not None:
            correct += result[0]
            counted += result[1]
    print(f"data: {data} ({len(names)} photos, {photo.shape[0]} x {photo.shape[1]}); no person found in {failures}")
    print(f"median {1e3 * np.median(seconds):.1f} ms per photo (detector + landmark model)")
    for index, name in enumerate(JOINT_NAMES):
        print(f"  {name:15s} PCK@0.5 {correct[index] / max(counted[index], 1):.3f}  ({int(counted[index])} reference joints)")
    print(f"joints reported where the reference has none: {extra} of {absent}")
    print(f"pck_overall: {correct.sum() / counted.sum():.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
