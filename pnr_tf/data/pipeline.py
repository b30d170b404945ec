"""tf.data pipelines: supervised pairs, unsupervised single images, multi-shot tuples.

Samples are validated in Python before any tf.data work (names in the annotations, files present,
decodable, of the expected size), so a bad sample either stops the run with an error naming the
file and row (``on_bad_sample="error"``, the default) or is skipped and counted
(``on_bad_sample="skip"``), never turned silently into a wrong example.
"""

import dataclasses
import logging

import numpy as np
import tensorflow as tf

from pnr_tf import files
from pnr_tf import images
from pnr_tf.conventions import NUM_JOINTS
from pnr_tf.conventions import from_pixels
from pnr_tf.conventions import has_visible_joint
from pnr_tf.data.annotations import read_annotations
from pnr_tf.data.annotations import read_pairs
from pnr_tf.data.annotations import read_tuples
from pnr_tf.data.augment import augment
from pnr_tf.data.augment import mirror
from pnr_tf.data.keypoints import HEATMAP_SIGMA
from pnr_tf.data.keypoints import keypoints_to_heatmaps
from pnr_tf.data.keypoints import pose_mask_tensor
from pnr_tf.data.pairs import has_torso

ON_BAD_SAMPLE = ("error", "skip")
logger = logging.getLogger(__name__)


class BadSampleError(ValueError):
    """A sample that cannot be used; the message names the file and row."""


@dataclasses.dataclass
class SampleSet:
    """Validated samples: per row, the image paths and keypoints of its sources and target."""

    source_paths: list  # [row][source] path strings
    source_keypoints: np.ndarray  # (rows, M, 18, 2) float32
    target_paths: list  # [row] path strings
    target_keypoints: np.ndarray  # (rows, 18, 2) float32
    num_skipped: int = 0
    skipped_reasons: list = dataclasses.field(default_factory=list)
    image_size: tuple = None  # (height, width) every image has
    # (rows,) bool: rows whose target is drawn mirrored left-right (mirror pairs); None = none is
    target_mirrored: np.ndarray = None

    def __len__(self):
        return len(self.target_paths)

    def spread(self, count):
        """At most ``count`` rows, evenly spaced over the set (pair files are ordered by identity: the
        first rows would be a few people only)."""
        if count >= len(self):
            return self
        return self.rows(np.unique(np.linspace(0, len(self) - 1, count).round().astype(int)))

    def shard(self, count, index):
        """Rows index, index + count, ...: one input pipeline's share, taken before anything is decoded."""
        return self if count == 1 else self.rows(np.arange(index, len(self), count))

    def rows(self, indices):
        """The rows at ``indices``, as a SampleSet."""
        return dataclasses.replace(
            self, source_paths=[self.source_paths[index] for index in indices], source_keypoints=self.source_keypoints[indices],
            target_paths=[self.target_paths[index] for index in indices], target_keypoints=self.target_keypoints[indices],
            target_mirrored=None if self.target_mirrored is None else self.target_mirrored[indices],
        )  # fmt: skip

    def mirrored_targets(self):
        """(rows,) bool: which rows' targets are mirrored."""
        return np.zeros(len(self), bool) if self.target_mirrored is None else self.target_mirrored

    def joined(self, other):
        """This set's rows, then other's (both of one image size and number of sources)."""
        if other.image_size != self.image_size or other.source_keypoints.shape[1:] != self.source_keypoints.shape[1:]:
            raise ValueError(f"cannot join samples of {other.image_size} with {other.source_keypoints.shape[1]} sources to "
                             f"samples of {self.image_size} with {self.source_keypoints.shape[1]}")  # fmt: skip
        return SampleSet(
            source_paths=self.source_paths + other.source_paths,
            source_keypoints=np.concatenate([self.source_keypoints, other.source_keypoints]),
            target_paths=self.target_paths + other.target_paths,
            target_keypoints=np.concatenate([self.target_keypoints, other.target_keypoints]),
            num_skipped=self.num_skipped + other.num_skipped, skipped_reasons=self.skipped_reasons + other.skipped_reasons,
            image_size=self.image_size, target_mirrored=np.concatenate([self.mirrored_targets(), other.mirrored_targets()]),
        )  # fmt: skip


def image_problem(path, image_size=None):
    """Why an image file cannot be used (None when it can), found with the decoder training uses.

    OpenCV decodes a truncated JPEG with only a warning; TensorFlow's decoder, the one tf.data
    runs, fails on it, so the check decodes exactly as the pipeline will.
    """
    if not files.is_file(path):
        return f"image file {path} does not exist"
    data = files.read_bytes(path)
    try:  # sized from its header first: a small file can decode to gigabytes
        declared = images.check_size(data, "it")
    except images.ImageFileError as error:
        return f"image file {path} cannot be decoded: {error}"
    if image_size is not None and tuple(declared) != tuple(image_size):
        return f"image file {path} is {declared[0]}x{declared[1]} (HxW), expected {image_size[0]}x{image_size[1]}"
    try:
        shape = decode_image_bytes(tf.constant(data)).shape
    except (tf.errors.OpError, ValueError) as error:
        reason = str(getattr(error, "message", error)).splitlines()[0]
        return f"image file {path} cannot be decoded (truncated or not an image: {reason})"
    if image_size is not None and tuple(shape[:2]) != tuple(image_size):
        return f"image file {path} is {shape[0]}x{shape[1]} (HxW), expected {image_size[0]}x{image_size[1]}"
    return None


def undecodable_files(paths):
    """The (path, problem) pairs among image files that do not decode: names the file behind a tf.data error."""
    found = []
    for path in dict.fromkeys(paths):
        problem = image_problem(path)
        if problem:
            found.append((path, problem))
    return found


class _ImageChecker:
    """Decodes each image once and remembers whether it is usable."""

    def __init__(self, image_dir, image_size):
        self.image_dir = str(image_dir)
        self.image_size = tuple(image_size)
        self._problems = {}

    def problem(self, name):
        if name not in self._problems:
            self._problems[name] = image_problem(files.join(self.image_dir, name), self.image_size)
        return self._problems[name]


def build_sample_set(rows, annotations, image_dir, image_size=None, on_bad_sample="error", row_file="rows"):
    """Validates rows of (source names tuple, target name) and returns a SampleSet.

    image_size (height, width) every image must have; None takes the first target image's. row_file
    names the file the rows came from, for the error messages (rows are numbered as lines of that
    file, the header being line 1).
    """
    if on_bad_sample not in ON_BAD_SAMPLE:
        raise ValueError(f"on_bad_sample must be one of {ON_BAD_SAMPLE}, got {on_bad_sample!r}")
    if image_size is None:
        image_size = _first_image_size(rows, image_dir)
        if image_size is None:
            first = rows[0] if rows else None
            reason = _first_row_problem(first, annotations, image_dir) if first else "the file has no rows"
            raise BadSampleError(f"{row_file}: no usable samples; all {len(rows)} rows were skipped, the first because "
                                 f"{reason} (no row's target image is readable in {image_dir}, so the image size is unknown)")
    checker = _ImageChecker(image_dir, image_size)
    kept_sources, kept_source_keypoints, kept_targets, kept_target_keypoints = [], [], [], []
    reasons = list(getattr(annotations, "skipped", []))  # annotation lines read_annotations skipped
    height, width = image_size
    for line_number, (sources, target) in enumerate(rows, start=2):
        problem = None
        for name in (*sources, target):
            if name not in annotations:
                problem = f"{name!r} is not in the annotation file"
            elif not has_visible_joint(annotations[name], (height, width)):
                problem = f"{name!r} has no keypoint inside the {height}x{width} image (an empty pose teaches nothing)"
            else:
                problem = checker.problem(name)
            if problem:
                break
        if problem:
            message = f"{row_file}:{line_number}: {problem}"
            if on_bad_sample == "error":
                raise BadSampleError(message + " (set on_bad_sample: skip to skip such rows)")
            reasons.append(message)
            continue
        kept_sources.append([files.join(image_dir, name) for name in sources])
        kept_source_keypoints.append([annotations[name] for name in sources])
        kept_targets.append(files.join(image_dir, target))
        kept_target_keypoints.append(annotations[target])
    if reasons:
        logger.warning("skipped %d bad samples of %d; first: %s", len(reasons), len(rows), reasons[0])
    if not kept_targets:
        detail = f"; all {len(rows)} rows were skipped, the first because {reasons[0]}" if reasons else ""
        raise BadSampleError(f"{row_file}: no usable samples{detail}")
    num_sources = len(rows[0][0]) if rows else 1
    return SampleSet(
        source_paths=kept_sources,
        source_keypoints=np.asarray(kept_source_keypoints, np.float32).reshape(-1, num_sources, NUM_JOINTS, 2),
        target_paths=kept_targets,
        target_keypoints=np.asarray(kept_target_keypoints, np.float32).reshape(-1, NUM_JOINTS, 2),
        num_skipped=len(reasons),
        skipped_reasons=reasons,
        image_size=tuple(image_size),
    )


def _first_image_size(rows, image_dir):
    for _, target in rows:
        path = files.join(image_dir, target)
        if files.is_file(path) and image_problem(path) is None:
            return images.image_size(files.read_bytes(path))
    return None


def _first_row_problem(row, annotations, image_dir):
    sources, target = row
    for name in (*sources, target):
        if name not in annotations:
            return f"{name!r} is not in the annotation file"
        problem = image_problem(files.join(image_dir, name))
        if problem:
            return problem
    return "its images cannot be read"


def pair_samples(pairs_file, annotation_file, image_dir, image_size=None, on_bad_sample="error"):
    """Supervised pairs (from,to) -> SampleSet with M = 1."""
    rows = [((source,), target) for source, target in read_pairs(pairs_file)]
    annotations = read_annotations(annotation_file, on_bad_sample)
    return build_sample_set(rows, annotations, image_dir, image_size, on_bad_sample, pairs_file)


def tuple_samples(tuples_file, annotation_file, image_dir, image_size=None, on_bad_sample="error"):
    """Multi-shot tuples (from_0..from_{M-1},to) -> SampleSet with M sources."""
    rows = read_tuples(tuples_file)
    return build_sample_set(rows, read_annotations(annotation_file, on_bad_sample), image_dir, image_size, on_bad_sample, tuples_file)


def single_image_samples(annotation_file, image_dir, image_size=None, on_bad_sample="error", names=None):
    """Unsupervised: each image is its own target. Default names: every annotated image with a torso."""
    annotations = read_annotations(annotation_file, on_bad_sample)
    if names is None:
        names = sorted(name for name, keypoints in annotations.items() if has_torso(keypoints))
    rows = [((name,), name) for name in names]
    return build_sample_set(rows, annotations, image_dir, image_size, on_bad_sample, annotation_file)


def mirror_pair_samples(names, annotation_file, image_dir, image_size=None, on_bad_sample="error", num_sources=1):
    """Each photo as the source (num_sources times) of a pair whose target is the same photo mirrored.

    The mirrored target is drawn by the pipeline (image flipped, keypoints mirrored, left and right
    joints swapped), so the SampleSet keeps the photo's own keypoints and marks the row.
    """
    rows = [((name,) * num_sources, name) for name in names]
    samples = build_sample_set(rows, read_annotations(annotation_file, on_bad_sample), image_dir, image_size, on_bad_sample, annotation_file)
    return dataclasses.replace(samples, target_mirrored=np.ones(len(samples), bool))


def decode_pixels(path, image_size):
    """JPEG/PNG file -> (H, W, 3) uint8.

    JPEGs use the accurate integer DCT, as OpenCV and PIL do; TensorFlow's default fast DCT is off
    by several levels on Market's small crops.
    """
    return tf.ensure_shape(decode_image_bytes(tf.io.read_file(path)), (*image_size, 3))


def decode_image(path, image_size):
    """JPEG/PNG file -> (H, W, 3) float32 in [-1, 1]."""
    return from_pixels(decode_pixels(path, image_size))


def decode_image_bytes(contents):
    """JPEG/PNG bytes -> (H, W, 3) uint8, JPEG with the accurate integer DCT (what image_problem checks with)."""
    return tf.cond(
        tf.io.is_jpeg(contents),
        lambda: tf.io.decode_jpeg(contents, channels=3, dct_method="INTEGER_ACCURATE"),
        lambda: tf.io.decode_image(contents, channels=3, expand_animations=False),
    )


@dataclasses.dataclass(frozen=True)
class InputOptions:
    """How ``make_dataset`` orders, changes and batches a SampleSet's examples."""

    shuffle: bool = True  # seeded by ``seed``, reshuffled each epoch
    repeat: bool = True  # an infinite stream
    seed: int = 0  # the order and the augmentation draws
    skip_examples: int = 0  # examples of the stream dropped before decoding: a resumed run continues the order
    drop_remainder: bool = True
    augmentation: object = None  # a pnr_tf.data.augment.Augmentation: each example's sources and target alike
    target_masks: bool = False  # add target_mask (b, H, W, 1): PATN's body mask of the target pose, after augmentation
    include_paths: bool = False  # add target_path: which files this pipeline read
    sigma: float = HEATMAP_SIGMA  # the heatmaps' Gaussian width in pixels


def make_dataset(samples, batch_size, image_size=None, options=InputOptions()):
    """Batches of {source_image (b, M, H, W, 3), source_pose (b, M, H, W, 18), target_image, target_pose}.

    Decoding runs in parallel per example; heatmaps are built per batch (vectorised). ``options``
    (``InputOptions``) say how examples are ordered, augmented and what a batch adds. Works under
    strategy.experimental_distribute_dataset.
    """
    if len(samples) == 0:
        raise BadSampleError("no usable samples")
    image_size = tuple(image_size or samples.image_size)
    height, width = image_size
    dataset = tf.data.Dataset.from_tensor_slices(
        {
            "source_path": tf.constant(samples.source_paths),
            "source_keypoints": samples.source_keypoints,
            "target_path": tf.constant(samples.target_paths),
            "target_keypoints": samples.target_keypoints,
            "target_mirrored": samples.mirrored_targets(),
        }
    )
    if options.shuffle:
        dataset = dataset.shuffle(len(samples), seed=options.seed, reshuffle_each_iteration=True)
    if options.repeat:
        dataset = dataset.repeat()
    dataset = dataset.enumerate()  # each example's position in the stream seeds its augmentation
    if options.skip_examples:
        dataset = dataset.skip(options.skip_examples)

    def load(position, example):
        loaded = {
            "target_path": example["target_path"],
            "source_image": tf.map_fn(
                lambda path: decode_image(path, image_size), example["source_path"], fn_output_signature=tf.float32
            ),
            "source_keypoints": example["source_keypoints"],
            "target_image": decode_image(example["target_path"], image_size),
            "target_keypoints": example["target_keypoints"],
        }
        if samples.target_mirrored is not None and samples.target_mirrored.any():
            target_image, target_keypoints = tf.cond(
                example["target_mirrored"], lambda: mirror(loaded["target_image"][None], loaded["target_keypoints"][None]),
                lambda: (loaded["target_image"][None], loaded["target_keypoints"][None]),
            )  # fmt: skip
            loaded.update(target_image=target_image[0], target_keypoints=target_keypoints[0])
        if options.augmentation is not None and options.augmentation.active:
            images = tf.concat([loaded["source_image"], loaded["target_image"][None]], axis=0)
            keypoints = tf.concat([loaded["source_keypoints"], loaded["target_keypoints"][None]], axis=0)
            images, keypoints = augment(images, keypoints, options.augmentation, tf.stack([tf.cast(options.seed, tf.int64), position]))
            loaded.update(source_image=images[:-1], source_keypoints=keypoints[:-1], target_image=images[-1], target_keypoints=keypoints[-1])
        if options.target_masks:
            loaded["target_mask"] = pose_mask_tensor(loaded["target_keypoints"], height, width)[..., None]
        return loaded

    def add_heatmaps(batch):
        result = {
            "source_image": batch["source_image"],
            "source_pose": keypoints_to_heatmaps(batch["source_keypoints"], height, width, options.sigma),
            "target_image": batch["target_image"],
            "target_pose": keypoints_to_heatmaps(batch["target_keypoints"], height, width, options.sigma),
        }
        if options.target_masks:
            result["target_mask"] = batch["target_mask"]
        if options.include_paths:  # which files this pipeline read (multi-worker tests and reports)
            result["target_path"] = batch["target_path"]
        return result

    dataset = dataset.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    dataset = dataset.batch(batch_size, drop_remainder=options.drop_remainder)
    dataset = dataset.map(add_heatmaps, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return dataset.prefetch(tf.data.AUTOTUNE)


def decoded_batches(samples, batch_size, image_size=None):
    """Batches of a SampleSet as the inference path takes them, in order, unshuffled: dicts of NumPy
    ``source_images`` (b, M, H, W, 3) uint8, ``source_keypoints`` (b, M, 18, 2), ``target_images``
    (b, H, W, 3) uint8 and ``target_keypoints`` (b, 18, 2). Decoding is the training pipeline's.
    """
    if len(samples) == 0:
        raise ValueError("no usable samples")
    image_size = tuple(image_size or samples.image_size)

    def load(source_paths, target_path):
        sources = tf.map_fn(lambda path: decode_pixels(path, image_size), source_paths, fn_output_signature=tf.uint8)
        return sources, decode_pixels(target_path, image_size)

    dataset = tf.data.Dataset.from_tensor_slices((tf.constant(samples.source_paths), tf.constant(samples.target_paths)))
    dataset = dataset.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).batch(batch_size).prefetch(2)
    start, iterator = 0, iter(dataset)
    while True:
        try:
            source_images, target_images = next(iterator)
        except StopIteration:
            return
        except (tf.errors.InvalidArgumentError, tf.errors.DataLossError, tf.errors.NotFoundError) as error:
            raise BadSampleError(decode_failure_message(samples, error)) from None
        stop = start + len(target_images)
        yield {
            "source_images": source_images.numpy(),
            "source_keypoints": samples.source_keypoints[start:stop],
            "target_images": target_images.numpy(),
            "target_keypoints": samples.target_keypoints[start:stop],
        }
        start = stop


def decode_failure_message(samples, error):
    """What to say when tf.data fails to read an image: which file(s), found by checking them again."""
    paths = [path for row in samples.source_paths for path in row] + list(samples.target_paths)
    found = undecodable_files(paths)
    if found:
        more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
        return f"{found[0][1]}{more}: it changed after the data check, or cannot be read now"
    return f"reading the images failed: {str(getattr(error, 'message', error)).splitlines()[0]}"
