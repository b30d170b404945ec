"""A training run's data: the built-in dataset written when asked for, people held out by identity, samples.

``run_samples`` is what a run trains and validates on: the pair file (or, unsupervised, single
images) minus the identities ``data.validation_identities`` / ``test_identities`` hold out, and the
validation pairs (``data.validation_pairs``, else the held-out validation people), at most
``train.validation_size`` of them, spread evenly over the file.
"""

import sys

from pnr_tf import files
from pnr_tf import run_files
from pnr_tf.config import check_data_paths
from pnr_tf.data.annotations import read_annotations
from pnr_tf.data.annotations import read_pairs
from pnr_tf.data.annotations import write_pairs
from pnr_tf.data.datasets import convention
from pnr_tf.data.pairs import has_torso
from pnr_tf.data.pairs import images_by_identity
from pnr_tf.data.pairs import split_rows_by_identity
from pnr_tf.data.pairs import with_more_sources
from pnr_tf.data.pipeline import build_sample_set
from pnr_tf.data.pipeline import mirror_pair_samples
from pnr_tf.data.pipeline import pair_samples
from pnr_tf.data.pipeline import single_image_samples
from pnr_tf.data.real_people import assemble_real_people
from pnr_tf.data.synthetic import write_synthetic_dataset


def write_missing_data(config):
    """Writes the data a config asks for when it is absent (the built-in synthetic people, the real people of
    data.real_people_from); checks the data paths."""
    data = config.data
    missing_split = data.validation_pairs and not files.is_file(data.path(data.validation_pairs))
    if data.synthetic and (not files.is_file(data.path(data.annotation_file)) or missing_split):
        write_synthetic_dataset(data.root, data.synthetic_identities, data.synthetic_images_per_identity, seed=config.train.seed,
                                dataset=data.dataset)  # fmt: skip
        print(f"wrote the built-in synthetic dataset to {data.root}", file=sys.stderr)
    if data.real_people_from and not files.is_file(data.path(data.annotation_file)):
        assemble_real_people(data.real_people_from, data.root, (data.image_height, data.image_width), seed=config.train.seed)
        print(f"wrote the real people of {data.real_people_from}, framed, to {data.root}", file=sys.stderr)
    check_data_paths(config)


def load_samples(config, pairs_file=None, identities=None):
    """Training samples: pairs (supervised, or any explicit pairs_file; train.num_sources photos of the
    person each) or single images (unsupervised).

    pairs_file is a path (not resolved against data.root; default data.pairs_file under it);
    identities restricts unsupervised single images to those people (the training split).
    """
    data = config.data
    size = (data.image_height, data.image_width)
    if config.train.mode == "unsupervised" and pairs_file is None:
        names = None
        if identities is not None:
            annotations = read_annotations(data.path(data.annotation_file))
            identity_of = convention(data.dataset).identity_of
            names = sorted(name for name, points in annotations.items() if identity_of(name) in identities and has_torso(points))
        return single_image_samples(data.path(data.annotation_file), data.path(data.image_dir), size, data.on_bad_sample, names)
    pairs_file = pairs_file or data.path(data.pairs_file)
    if config.train.num_sources == 1:
        return pair_samples(pairs_file, data.path(data.annotation_file), data.path(data.image_dir), size, data.on_bad_sample)
    rows = with_more_sources(read_pairs(pairs_file), config.train.num_sources, config.train.seed, convention(data.dataset))
    annotations = read_annotations(data.path(data.annotation_file), data.on_bad_sample)
    return build_sample_set(rows, annotations, data.path(data.image_dir), size, data.on_bad_sample, pairs_file)


def split_pair_files(config, output_dir, write=True):
    """{split: pair file path} after holding identities out (data.validation_identities / test_identities).

    Without held-out identities: {"train": data.pairs_file}. The split is seeded by train.seed, so
    every worker and every resumed run computes the same one; only the chief writes the files
    (``write``), under <output_dir>/split/.
    """
    data = config.data
    if not (data.validation_identities or data.test_identities):
        return {"train": data.path(data.pairs_file)}
    rows = read_pairs(data.path(data.pairs_file))
    splits = split_rows_by_identity(rows, data.validation_identities, data.test_identities, config.train.seed, convention(data.dataset))
    paths = {name: files.join(output_dir, run_files.SPLIT, f"pairs-{name}.csv") for name, split_rows in splits.items() if split_rows}
    if write:
        for name, path in paths.items():
            write_pairs(path, splits[name])
    return paths


def mirror_pair_names(config, training_pair_file, held_out_pair_files):
    """The photos data.mirror_pairs pairs with their mirror images: the usable photos (torso detected,
    no distractor) of the training pairs' people, and of people with a single usable photo (who can be
    in no pair file); never of a person in a held-out pair file."""
    data = config.data
    dataset = convention(data.dataset)
    people_in = lambda paths: {dataset.identity_of(name) for path in paths for row in read_pairs(path) for name in row}  # noqa: E731
    trained, held_out = people_in([training_pair_file]), people_in(held_out_pair_files)
    photos = images_by_identity(read_annotations(data.path(data.annotation_file), data.on_bad_sample), dataset)
    return sorted(name for identity, names in photos.items()
                  if (identity in trained or len(names) == 1) and identity not in held_out for name in names)  # fmt: skip


def run_samples(config, output_dir, write_splits=True):
    """(training SampleSet, validation SampleSet or None) of a run, its data prepared and split first."""
    data = config.data
    write_missing_data(config)
    split_paths = split_pair_files(config, output_dir, write=write_splits)
    unsupervised = config.train.mode == "unsupervised"
    identities = None
    if unsupervised and ("validation" in split_paths or "test" in split_paths):
        identities = {convention(data.dataset).identity_of(row[-1]) for row in read_pairs(split_paths["train"])}
    samples = load_samples(config, None if unsupervised else split_paths["train"], identities)
    path = data.path(data.validation_pairs) if data.validation_pairs else split_paths.get("validation")
    if data.mirror_pairs:
        held_out = [split_paths[name] for name in ("validation", "test") if name in split_paths] + ([path] if path else [])
        names = mirror_pair_names(config, split_paths["train"], held_out)
        samples = samples.joined(mirror_pair_samples(names, data.path(data.annotation_file), data.path(data.image_dir), samples.image_size,
                                                     data.on_bad_sample, config.train.num_sources))  # fmt: skip
    if path is None:
        return samples, None
    validation = pair_samples(path, data.path(data.annotation_file), data.path(data.image_dir), (data.image_height, data.image_width),
                              data.on_bad_sample)  # fmt: skip
    return samples, validation.spread(config.train.validation_size) if config.train.validation_size else validation
