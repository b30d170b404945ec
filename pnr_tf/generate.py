"""`python -m pnr_tf.generate`: draw the person of one or more photos in another pose.

    # any photos: keypoints estimated (BlazePose, fetched from PyPI once: python -m pnr_tf.pose.fetch)
    python -m pnr_tf.generate --model runs/quickstart --source my_photo.jpg --target-pose-of other_photo.jpg --out out.png
    # keypoints of the photos and of the target pose from an annotation file, by image name
    python -m pnr_tf.generate --model runs/quickstart --annotations data/synthetic/annotations.csv \\
        --source data/synthetic/images/0033_c1s1_000000_00.jpg --target-pose-of 0033_c2s1_000001_00.jpg --out out.png
    # one person in many poses: encoded once, rendered per pose; numbered PNGs, or an animation
    python -m pnr_tf.generate --model runs/quickstart --source me.jpg --pose-sequence walk.json --out walk.gif
    # multi-shot: several --source; keypoints from JSON files (18 [y, x] pairs, -1 = missing) instead
    python -m pnr_tf.generate --model runs/quickstart --source a.jpg --source-keypoints a.json \\
        --source b.jpg --source-keypoints b.json --target-keypoints pose.json --out out.png --grid grid.png

Keypoints a photo has (a JSON file, or its name in --annotations) are used as given and the photo
is resized to the model's size; a photo without them has them estimated, and the person is cut out
framed like a Market-1501 crop. --framed also writes the result pasted back into the first source
photo. JSON target keypoints are in the pixels of the first source photo. A joint that is -1, NaN or
outside the photo is missing; every source photo and the target pose need at least one visible joint.
"""

import argparse
import os
import sys
from pathlib import Path


def build_parser():
    parser = argparse.ArgumentParser(
        prog="python -m pnr_tf.generate", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", required=True, help="generator .keras file, training run directory (even one stopped midway) or checkpoint")
    parser.add_argument("--source", action="append", required=True, help="a photo of the person (repeat for multi-shot)")
    parser.add_argument("--source-keypoints", action="append", default=[], help="JSON keypoints of each --source, in order")
    parser.add_argument("--annotations", default=None, help="annotation file giving keypoints by image name")
    parser.add_argument("--target-keypoints", action="append", default=[], help="JSON file: a target pose, 18 [y, x] pairs (repeatable)")
    parser.add_argument("--target-pose-of", action="append", default=[],
                        help="image (a path, or a name in --annotations) whose pose is a target (repeatable)")
    parser.add_argument("--pose-sequence", default=None,
                        help="many target poses: a JSON list of poses (source photo pixels) or an annotation CSV (model pixels, file order)")
    parser.add_argument("--out", required=True,
                        help="output image (.png/.jpg); with several poses numbered files (out_000.png, ...) or an animation (.gif, .mp4)")
    parser.add_argument("--fps", type=float, default=8.0, help="frames per second of a .gif or .mp4 (default 8)")
    parser.add_argument("--grid", default=None, help="also write sources | target pose | result with skeletons")
    parser.add_argument("--framed", default=None, help="also write the result pasted back into the first source photo")
    return parser


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
ANIMATION_SUFFIXES = (".gif", ".mp4")


def frame_paths(path, count):
    """Where write_frames puts ``count`` frames: the animation itself, or numbered files beside ``path``."""
    path = Path(path)
    if path.suffix.lower() in ANIMATION_SUFFIXES:
        return [path]
    return [path.with_name(f"{path.stem}_{index:03d}{path.suffix}") for index in range(count)]


def write_frames(path, frames, fps):
    """Several images: numbered files beside ``path`` (out_000.png, ...), or one animation (.gif, .mp4); returns the paths."""
    import cv2

    from pnr_tf.visualize import write_rgb

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


def check_outputs(outputs, inputs):
    """ValueError when an output path is an input (it would be overwritten) or another output; outputs: {option: path}."""
    from pnr_tf.files import same_file

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


def input_files(arguments):
    """(option, path) of every file generate reads."""
    inputs = [("--model", arguments.model), ("--annotations", arguments.annotations), ("--pose-sequence", arguments.pose_sequence)]
    for option in ("source", "source_keypoints", "target_keypoints", "target_pose_of"):
        inputs += [(f"--{option.replace('_', '-')}", path) for path in getattr(arguments, option)]
    return [(option, path) for option, path in inputs if path is not None]


def pose_sequence(path, first_photo, image_size):
    """Target poses from a JSON list (the first source photo's pixels) or an annotation CSV (the model's pixels)."""
    import json

    import numpy as np

    from pnr_tf.data.annotations import DataFormatError
    from pnr_tf.data.annotations import read_annotations
    from pnr_tf.inference import fit_photo

    path = Path(path)
    if path.suffix.lower() == ".csv":
        return [keypoints.astype(np.float32) for keypoints in read_annotations(path).values()]
    try:
        values = json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"pose sequence {path} does not exist") from None
    except json.JSONDecodeError as error:
        raise DataFormatError(f"{path}: not JSON ({error})") from None
    poses = np.asarray(values, dtype=np.float32) if isinstance(values, list) else None
    if poses is None or poses.ndim != 3 or poses.shape[1:] != (18, 2) or not len(poses):
        raise DataFormatError(f"{path}: expected a JSON list of poses, each 18 [y, x] pairs (-1 for a missing joint)")
    return [fit_photo(first_photo, pose, image_size)[1] for pose in poses]


def main(argv=None):
    parser = build_parser()
    arguments = parser.parse_args(argv)
    if arguments.source_keypoints and len(arguments.source_keypoints) != len(arguments.source):
        parser.error(f"give one --source-keypoints per --source ({len(arguments.source)}), or none (--annotations, or estimated)")
    if not (arguments.target_keypoints or arguments.target_pose_of or arguments.pose_sequence):
        parser.error("give the target pose: --target-pose-of, --target-keypoints or --pose-sequence")
    for option, path in (("--grid", arguments.grid), ("--framed", arguments.framed)):
        if path is not None and Path(path).suffix.lower() not in IMAGE_SUFFIXES:
            parser.error(f"{option} {path}: the file name must end in {', '.join(IMAGE_SUFFIXES)}")
    if Path(arguments.out).suffix.lower() not in IMAGE_SUFFIXES + ANIMATION_SUFFIXES:
        parser.error(f"--out {arguments.out}: the file name must end in {', '.join(IMAGE_SUFFIXES + ANIMATION_SUFFIXES)}")
    if arguments.fps <= 0:
        parser.error("--fps must be positive")
    try:
        check_outputs({"--out": arguments.out, "--grid": arguments.grid, "--framed": arguments.framed}, input_files(arguments))
    except ValueError as error:
        parser.exit(2, f"error: {error}\n")

    import numpy as np

    from pnr_tf.data.annotations import DataFormatError
    from pnr_tf.data.annotations import read_annotations
    from pnr_tf.data.annotations import read_keypoints_json
    from pnr_tf.inference import PoseTransfer
    from pnr_tf.inference import fit_photo
    from pnr_tf.inference import frame_person
    from pnr_tf.pose.fetch import PoseModelsUnavailableError
    from pnr_tf.visualize import draw_pose
    from pnr_tf.visualize import labelled_rows
    from pnr_tf.visualize import read_rgb
    from pnr_tf.visualize import write_rgb

    try:
        annotations = read_annotations(arguments.annotations) if arguments.annotations else {}
        estimators = []

        def estimator():
            if not estimators:
                from pnr_tf.pose import PoseEstimator

                estimators.append(PoseEstimator())
            return estimators[0]

        def known_keypoints(path, index=None):
            """The photo's own keypoints (JSON file, or its name in --annotations), else None: estimate them."""
            if index is not None and arguments.source_keypoints:
                return read_keypoints_json(arguments.source_keypoints[index])
            key = Path(path).name
            return annotations[key].astype(np.float32) if key in annotations else None

        model = PoseTransfer.load(arguments.model)
        photos = [read_rgb(source) for source in arguments.source]
        sources = []
        for index, (photo, path) in enumerate(zip(photos, arguments.source)):
            keypoints = known_keypoints(path, index)
            sources.append(frame_person(photo, model.image_size, keypoints, estimator() if keypoints is None else None, path))
        targets = [fit_photo(photos[0], read_keypoints_json(path), model.image_size)[1] for path in arguments.target_keypoints]
        for name in arguments.target_pose_of:
            target_path = Path(name)
            keypoints = known_keypoints(target_path)
            if keypoints is None and not target_path.is_file():
                where = f"is not in {arguments.annotations}" if arguments.annotations else "is not a file"
                raise KeyError(f"target image {target_path.name!r} {where}: no pose to take")
            target_photo = read_rgb(target_path) if target_path.is_file() else photos[0]
            targets.append(frame_person(target_photo, model.image_size, keypoints, estimator() if keypoints is None else None,
                                        str(target_path)).keypoints)  # fmt: skip
        if arguments.pose_sequence:
            targets += pose_sequence(arguments.pose_sequence, photos[0], model.image_size)
        source_images = np.stack([source.image for source in sources])
        source_keypoints = np.stack([source.keypoints for source in sources])
        # The person is encoded once, then drawn in every pose (pnr_tf.inference: encode / render).
        person = model.encode(source_images, source_keypoints)
        frames = model.render(person, np.stack(targets))

        if len(frames) > 1:  # numbered frames beside --out: none may be an input either
            check_outputs({f"frame {index}": path for index, path in enumerate(frame_paths(arguments.out, len(frames)))}, input_files(arguments))
        Path(arguments.out).parent.mkdir(parents=True, exist_ok=True)
        if len(frames) == 1 and Path(arguments.out).suffix.lower() in IMAGE_SUFFIXES:
            write_rgb(arguments.out, frames[0])
            written = [Path(arguments.out)]
        else:
            written = write_frames(arguments.out, list(frames), arguments.fps)
        image = frames[0]
        if arguments.grid:
            blank = np.full_like(image, 255)
            row = [draw_pose(photo, keypoints) for photo, keypoints in zip(source_images, source_keypoints)]
            row += [draw_pose(blank, keypoints) for keypoints in targets[:8]] + list(frames[:8])
            write_rgb(arguments.grid, labelled_rows([row]))
        if arguments.framed:
            from pnr_tf.pose import paste_back

            write_rgb(arguments.framed, paste_back(photos[0], sources[0], image))
    except (FileNotFoundError, KeyError, ValueError, DataFormatError, OSError, PoseModelsUnavailableError) as error:
        message = error.args[0] if isinstance(error, KeyError) else error
        parser.exit(2, f"error: {message}\n")
    shown = [str(path) for path in written[:3]] + ([f"... ({len(written)} files)"] if len(written) > 3 else [])
    print(f"wrote {', '.join(shown + [path for path in (arguments.grid, arguments.framed) if path])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
