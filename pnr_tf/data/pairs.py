"""Same-identity pairs, multi-shot tuples and identity splits: the field's rules (PATN, Lathuilière et al.).

Pairs are drawn within one identity (Market: the 4-digit prefix, distractors -1 / 0000 dropped;
DeepFashion: the item, the name up to its last '_'), among images with both shoulders and both hips
detected. Splits hold whole identities out, so nobody in a held-out split is seen in training.
Every sample is seeded. ``python -m pnr_tf.data.make_pairs`` writes these as the field's files.
"""

from collections import defaultdict

import numpy as np

from pnr_tf.conventions import SHOULDERS_AND_HIPS
from pnr_tf.conventions import visible_joints
from pnr_tf.data.datasets import MARKET


def has_torso(keypoints):
    """Both shoulders and both hips detected: PATN's filter for the images a pair may use, on both datasets
    (DeepFashion's full-body shots pass it, back views included)."""
    return bool(np.all(visible_joints(np.asarray(keypoints)[list(SHOULDERS_AND_HIPS)])))


def images_by_identity(annotations, dataset=MARKET):
    """identity -> sorted names of its usable images (not distractors, torso detected)."""
    groups = defaultdict(list)
    for name, keypoints in annotations.items():
        if not dataset.is_distractor(name) and has_torso(keypoints):
            groups[dataset.identity_of(name)].append(name)
    return {identity: sorted(names) for identity, names in sorted(groups.items())}


def make_pairs(annotations, num_pairs=None, seed=0, dataset=MARKET):
    """Ordered same-identity pairs (a, b), a != b; all of them, or a seeded sample of num_pairs."""
    pairs = [
        (source, target)
        for names in images_by_identity(annotations, dataset).values()
        for source in names
        for target in names
        if source != target
    ]
    if num_pairs is None or num_pairs >= len(pairs):
        return pairs
    chosen = np.random.default_rng(seed).choice(len(pairs), size=num_pairs, replace=False)
    return [pairs[index] for index in sorted(chosen)]


SPLITS = ("train", "validation", "test")


def split_identities(identities, validation_fraction, test_fraction, seed=0):
    """{split: set of identities}: a seeded shuffle of the sorted identities, cut by the fractions.

    Held-out splits get at least one identity when their fraction is positive, so pairs of people
    the model never saw exist even in a small set.
    """
    identities = sorted(set(identities))
    order = [identities[index] for index in np.random.default_rng(seed).permutation(len(identities))]
    counts = [max(1, round(fraction * len(order))) if fraction > 0 else 0 for fraction in (test_fraction, validation_fraction)]
    if sum(counts) >= len(order):
        raise ValueError(f"{len(order)} identities cannot be split into {counts[1]} validation, {counts[0]} test and >= 1 training")
    test, validation = set(order[: counts[0]]), set(order[counts[0] : sum(counts)])
    return {"train": set(order[sum(counts) :]), "validation": validation, "test": test}


def split_rows_by_identity(rows, validation_fraction, test_fraction, seed=0, dataset=MARKET):
    """Pair or tuple rows (names...) -> {split: rows}, every name of a row in one split (by its target's identity)."""
    splits = split_identities([dataset.identity_of(row[-1]) for row in rows], validation_fraction, test_fraction, seed)
    return {name: [row for row in rows if dataset.identity_of(row[-1]) in splits[name]] for name in SPLITS}


def make_tuples(annotations, num_sources, num_tuples, seed=0, dataset=MARKET):
    """Seeded tuples of num_sources distinct sources and one target, all one identity.

    Identities need at least num_sources + 1 usable images. Each tuple draws an identity
    uniformly among those, then num_sources + 1 distinct images of it.
    """
    groups = [names for names in images_by_identity(annotations, dataset).values() if len(names) >= num_sources + 1]
    if not groups:
        raise ValueError(f"no identity has {num_sources + 1} or more usable images")
    rng = np.random.default_rng(seed)
    tuples = []
    for _ in range(num_tuples):
        names = groups[rng.integers(len(groups))]
        chosen = rng.choice(len(names), size=num_sources + 1, replace=False)
        tuples.append((tuple(names[index] for index in chosen[:-1]), names[chosen[-1]]))
    return tuples


def with_more_sources(pairs, num_sources, seed=0, dataset=MARKET):
    """Pair rows (source, target) -> tuple rows ((source, ...), target) of num_sources sources each.

    The extra sources are other photos of the target's person among the rows' images (seeded), never
    the target; a person with too few photos repeats the pair's source, and a repeated source adds
    the same rows to the regression, which leaves its solution as it was (M = 1 in effect).
    """
    photos = defaultdict(set)
    for row in pairs:
        photos[dataset.identity_of(row[-1])].update(row)
    rng = np.random.default_rng(seed)
    rows = []
    for source, target in pairs:
        others = sorted(photos[dataset.identity_of(target)] - {source, target})
        chosen = [others[index] for index in rng.permutation(len(others))[: num_sources - 1]]
        rows.append(((source, *chosen, *[source] * (num_sources - 1 - len(chosen))), target))
    return rows
