"""Photos and keypoint files in, pictures on disk out: what ``python -m pnr_tf.generate`` does, as a library.

    from pnr_tf.generation import GenerationJob, run_generation
    written = run_generation(GenerationJob(model="runs/quickstart", sources=["me.jpg"], target_pose_of=["walking.jpg"], out="out.png"))

Keypoints a photo has (a JSON file, or its name in ``annotations``) are used as given; a photo
without them has them estimated (BlazePose). Either way the person is framed as the training crops
were (``pnr_tf.pose.frame_photo``: a dataset-shaped photo the person fills is resized, any other cut
out like a Market-1501 crop). JSON target keypoints are in the pixels of the first source photo and
are framed with it; a pose sequence is a JSON list of such poses, or an annotation CSV in the model's pixels.
The person is encoded once and drawn in every target pose. No output may be an input: nothing the
user gave is overwritten.
"""

import dataclasses
import os
import sys
from pathlib import Path

import cv2
import numpy as np

from pnr_tf.conventions import NUM_JOINTS
from pnr_tf.conventions import crop_keypoints
from pnr_tf.data.annotations import DataFormatError
from pnr_tf.data.annotations import parse_json
from pnr_tf.data.annotations import read_annotations
from pnr_tf.data.annotations import read_keypoints_json
from pnr_tf.files import same_file
from pnr_tf.inference import PoseTransfer
from pnr_tf.inference import frame_person
from pnr_tf.inference import unseen_body_parts
from pnr_tf.inference import unseen_parts_warning
from pnr_tf.pose import PoseEstimator
from pnr_tf.pose import paste_back
from pnr_tf.visualize import draw_pose
from pnr_tf.visualize import labelled_rows
from pnr_tf.visualize import read_rgb
from pnr_tf.visualize import write_rgb

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
ANIMATION_SUFFIXES = (".gif", ".mp4")


@dataclasses.dataclass
class GenerationJob:
    """One ``generate`` command: paths, as the command line gives them."""

    model: str  # a .keras file, a run directory or a checkpoint
    sources: list  # photos of one person
    out: str  # .png / .jpg, or .gif / .mp4 (or numbered images) for several poses
    source_keypoints: list = dataclasses.field(default_factory=list)  # one JSON file per source, or none
    annotations: str = None  # keypoints by image name
    target_keypoints: list = dataclasses.field(default_factory=list)  # JSON files, one pose each
    target_pose_of: list = dataclasses.field(default_factory=list)  # images (paths or names in annotations) whose pose is a target
    pose_sequence: str = None
    fps: float = 8.0
    grid: str = None  # sources | target poses | results, with skeletons
    framed: str = None  # the result pasted back into the first source photo

    def check(self):
        """ValueError for a job that cannot run as given (before any file is read)."""
        if not self.sources:
            raise ValueError("give at least one --source photo")
        if self.source_keypoints and len(self.source_keypoints) != len(self.sources):
            raise ValueError(f"give one --source-keypoints per --source ({len(self.sources)}), or none (--annotations, or estimated)")
        if not (self.target_keypoints or self.target_pose_of or self.pose_sequence):
            raise ValueError("give the target pose: --target-pose-of, --target-keypoints or --pose-sequence")
        for option, path in (("--grid", self.grid), ("--framed", self.framed)):
            if path is not None and Path(path).suffix.lower() not in IMAGE_SUFFIXES:
                raise ValueError(f"{option} {path}: the file name must end in {', '.join(IMAGE_SUFFIXES)}")
        if Path(self.out).suffix.lower() not in IMAGE_SUFFIXES + ANIMATION_SUFFIXES:
            raise ValueError(f"--out {self.out}: the file name must end in {', '.join(IMAGE_SUFFIXES + ANIMATION_SUFFIXES)}")
        if not self.fps > 0:
            raise ValueError("--fps must be positive")
        check_outputs({"--out": self.out, "--grid": self.grid, "--framed": self.framed}, self.inputs())

    def inputs(self):
        """(option, path) of every file the job reads."""
        inputs = [("--model", self.model), ("--annotations", self.annotations), ("--pose-sequence", self.pose_sequence)]
        for option, paths in (("--source", self.sources), ("--source-keypoints", self.source_keypoints),
                              ("--target-keypoints", self.target_keypoints), ("--target-pose-of", self.target_pose_of)):  # fmt: skip
            inputs += [(option, path) for path in paths]
        return [(option, path) for option, path in inputs if path is not None]


def check_outputs(outputs, inputs):
    """ValueError when an output path is an input (it would be overwritten) or another output; outputs: {option: path}."""
    named = [(option, path) for option, path in outputs.items() if path is not None]
    for index, (option, path) in enumerate(named):
        if os.path.isdir(path):
            raise ValueError(f"{option} {path} is a folder: give an image file name")
        for input_option, input_path in inputs:
            if same_file(path, input_path):
                raise ValueError(f"{option} {path} is the {input_option} file: it would be overwritten; choose another output name")
        for other_option, other in named[:index]:
            if same_file(path, other):
                raise ValueError(f"{option} and {other_option} are the same file ({path})")


def frame_paths(path, count):
    """Where ``write_frames`` puts ``count`` frames: the animation itself, or numbered files beside ``path``."""
    path = Path(path)
    if path.suffix.lower() in ANIMATION_SUFFIXES:
        return [path]
    return [path.with_name(f"{path.stem}_{index:03d}{path.suffix}") for index in range(count)]


def write_frames(path, frames, fps):
    """Several images: numbered files beside ``path`` (out_000.png, ...), or one animation (.gif, .mp4); returns the paths."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".gif":
        animation = cv2.Animation()
        animation.frames = [cv2.cvtColor(frame, cv2.COLOR_RGB2BGR) for frame in frames]
        animation.durations = [int(round(1000 / fps))] * len(frames)
        if not cv2.imwriteanimation(str(path), animation):
            raise OSError(f"could not write {path}")
        return [path]
    if suffix == ".mp4":
        height, width = frames[0].shape[:2]
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
        if not writer.isOpened():
            raise OSError(f"could not write {path} (this OpenCV has no MPEG-4 encoder: use .gif)")
        for frame in frames:
            writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        writer.release()
        return [path]
    paths = frame_paths(path, len(frames))
    for frame, frame_path in zip(frames, paths):
        write_rgb(frame_path, frame)
    return paths


def pose_sequence(path, first_source, image_size):
    """Target poses from a JSON list (the first source photo's pixels, framed as that photo: ``first_source`` is its
    PersonCrop) or an annotation CSV (the model's pixels)."""
    path = Path(path)
    if path.suffix.lower() == ".csv":
        return [keypoints.astype(np.float32) for keypoints in read_annotations(path).values()]
    try:
        values = parse_json(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"pose sequence {path} does not exist") from None
    except ValueError as error:
        raise DataFormatError(f"{path}: not JSON ({error})") from None
    try:
        poses = np.asarray(values, dtype=np.float32) if isinstance(values, list) else None
    except (TypeError, ValueError, OverflowError):
        poses = None
    if poses is None or poses.ndim != 3 or poses.shape[1:] != (NUM_JOINTS, 2) or not len(poses):
        raise DataFormatError(f"{path}: expected a JSON list of poses, each {NUM_JOINTS} [y, x] pairs (-1 for a missing joint)")
    return [crop_keypoints(pose, first_source.box, image_size) for pose in poses]


class _Keypoints:
    """Where a photo's keypoints come from: its JSON file, its name in the annotations, else the estimator (made once)."""

    def __init__(self, job):
        self.job = job
        self.annotations = read_annotations(job.annotations) if job.annotations else {}
        self._estimator = None

    def known(self, path, index=None):
        """The photo's own keypoints, or None: estimate them."""
        if index is not None and self.job.source_keypoints:
            return read_keypoints_json(self.job.source_keypoints[index])
        name = Path(path).name
        return self.annotations[name].astype(np.float32) if name in self.annotations else None

    def framed(self, photo, path, image_size, index=None):
        """The photo as the model takes it (``pnr_tf.inference.frame_person``)."""
        keypoints = self.known(path, index)
        if keypoints is None and self._estimator is None:
            self._estimator = PoseEstimator()
        return frame_person(photo, image_size, keypoints, self._estimator if keypoints is None else None, str(path))


def run_generation(job):
    """Runs a checked job; returns the paths written (results, then grid and framed picture when asked for)."""
    job.check()
    keypoints = _Keypoints(job)
    model = PoseTransfer.load(job.model)
    photos = [read_rgb(source) for source in job.sources]
    sources = [keypoints.framed(photo, path, model.image_size, index) for index, (photo, path) in enumerate(zip(photos, job.sources))]
    # Target keypoints in the first photo's pixels are framed as that photo is.
    targets = [crop_keypoints(read_keypoints_json(path), sources[0].box, model.image_size) for path in job.target_keypoints]
    for name in job.target_pose_of:
        target_path = Path(name)
        if keypoints.known(target_path) is None and not target_path.is_file():
            where = f"is not in {job.annotations}" if job.annotations else "is not a file"
            raise ValueError(f"target image {target_path.name!r} {where}: no pose to take")
        target_photo = read_rgb(target_path) if target_path.is_file() else photos[0]
        targets.append(keypoints.framed(target_photo, target_path, model.image_size).keypoints)
    if job.pose_sequence:
        targets += pose_sequence(job.pose_sequence, sources[0], model.image_size)
    source_images = np.stack([source.image for source in sources])
    source_keypoints = np.stack([source.keypoints for source in sources])
    unseen = sorted({part for target in targets for part in unseen_body_parts(source_keypoints, target, model.image_size)})
    if unseen:
        print(f"warning: {unseen_parts_warning(unseen)}", file=sys.stderr)
    # The person is encoded once, then drawn in every pose (pnr_tf.inference: encode / render).
    frames = model.render(model.encode(source_images, source_keypoints), np.stack(targets))

    if len(frames) > 1:  # numbered frames beside --out: none may be an input either
        check_outputs({f"frame {index}": path for index, path in enumerate(frame_paths(job.out, len(frames)))}, job.inputs())
    Path(job.out).parent.mkdir(parents=True, exist_ok=True)
    if len(frames) == 1 and Path(job.out).suffix.lower() in IMAGE_SUFFIXES:
        write_rgb(job.out, frames[0])
        written = [Path(job.out)]
    else:
        written = write_frames(job.out, list(frames), job.fps)
    if job.grid:
        blank = np.full_like(frames[0], 255)
        row = [draw_pose(photo, points) for photo, points in zip(source_images, source_keypoints)]
        row += [draw_pose(blank, points) for points in targets[:8]] + list(frames[:8])
        write_rgb(job.grid, labelled_rows([row]))
        written.append(Path(job.grid))
    if job.framed:
        write_rgb(job.framed, paste_back(photos[0], sources[0], frames[0]))
        written.append(Path(job.framed))
    return written


def describe_written(paths, extra=0):
    """'a.png, b.png, c.png, ... (N files)' for the command's last line; the last ``extra`` paths are always shown."""
    results, others = paths[: len(paths) - extra], paths[len(paths) - extra :]
    shown = [str(path) for path in results[:3]] + ([f"... ({len(results)} files)"] if len(results) > 3 else [])
    return ", ".join(shown + [str(path) for path in others])

