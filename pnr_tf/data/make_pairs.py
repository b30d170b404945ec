"""`python -m pnr_tf.data.make_pairs`: pair and multi-shot tuple files from an annotation file.

The field's rules (PATN, Lathuilière et al.): same identity (Market: the 4-digit prefix, distractors
-1 / 0000 dropped; DeepFashion: the item, the name up to its last '_'), only images with both
shoulders and both hips detected; a seeded sample of N rows. Deterministic for a seed.
--dataset chooses the convention (default: guessed from the names).

    python -m pnr_tf.data.make_pairs --annotations market-annotation-test.csv --out pairs.csv --num-pairs 12000
    python -m pnr_tf.data.make_pairs --annotations market-annotation-test.csv --out tuples.csv \\
        --num-sources 5 --num-tuples 12000
"""

import argparse
from collections import defaultdict

import numpy as np

from pnr_tf.data.annotations import MISSING
from pnr_tf.data.annotations import SHOULDERS_AND_HIPS
from pnr_tf.data.annotations import read_annotations
from pnr_tf.data.annotations import write_pairs
from pnr_tf.data.annotations import write_tuples
from pnr_tf.data.datasets import DATASETS
from pnr_tf.data.datasets import MARKET
from pnr_tf.data.datasets import convention
from pnr_tf.data.datasets import guess_convention


def has_torso(keypoints):
    """Both shoulders and both hips detected (PATN's filter)."""
    return bool(np.all(np.asarray(keypoints)[list(SHOULDERS_AND_HIPS)] != MISSING))


def images_by_identity(annotations, dataset=MARKET):
    """identity -> sorted names of its usable images (not distractors, torso detected)."""
    groups = defaultdict(list)
    for name, keypoints in annotations.items():
        if not dataset.is_distractor(name) and dataset.usable(keypoints):
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


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--annotations", required=True, help="annotation file (name:keypoints_y:keypoints_x)")
    parser.add_argument("--out", required=True, help="output CSV")
    parser.add_argument("--num-pairs", type=int, default=None, help="sample size (default: every pair)")
    parser.add_argument("--num-sources", type=int, default=None, help="write M-source tuples instead of pairs")
    parser.add_argument("--num-tuples", type=int, default=12000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--split-by-identity", metavar="VALIDATION,TEST", default=None,
                        help="write <out>-train/-validation/-test.csv: identity fractions held out, e.g. 0.1,0.2")  # fmt: skip
    parser.add_argument("--dataset", choices=tuple(DATASETS), default=None, help="naming convention (default: guessed from the names)")
    arguments = parser.parse_args(argv)
    annotations = read_annotations(arguments.annotations)
    dataset = convention(arguments.dataset) if arguments.dataset else guess_convention(annotations)
    if arguments.split_by_identity:
        try:
            validation_fraction, test_fraction = (float(part) for part in arguments.split_by_identity.split(","))
        except ValueError:
            parser.error(f"--split-by-identity takes VALIDATION,TEST fractions such as 0.1,0.2, got {arguments.split_by_identity!r}")
        rows = make_pairs(annotations, arguments.num_pairs, arguments.seed, dataset)
        stem = arguments.out[:-4] if arguments.out.endswith(".csv") else arguments.out
        for name, split_rows in split_rows_by_identity(rows, validation_fraction, test_fraction, arguments.seed, dataset).items():
            write_pairs(f"{stem}-{name}.csv", split_rows)
            print(f"wrote {len(split_rows)} rows of {len({dataset.identity_of(row[-1]) for row in split_rows})} identities to {stem}-{name}.csv")
        return
    if arguments.num_sources is None:
        rows = make_pairs(annotations, arguments.num_pairs, arguments.seed, dataset)
        write_pairs(arguments.out, rows)
    else:
        rows = make_tuples(annotations, arguments.num_sources, arguments.num_tuples, arguments.seed, dataset)
        write_tuples(arguments.out, rows)
    print(f"wrote {len(rows)} rows to {arguments.out}")


if __name__ == "__main__":
    main()
