"""`python -m pnr_tf.generate`: draw the person of one or more photos in another pose.

    # keypoints of the photos and of the target pose from an annotation file, by image name
    python -m pnr_tf.generate --model runs/quickstart --annotations data/synthetic/annotations.csv \\
        --source data/synthetic/images/0033_c1s1_000000_00.jpg --target-pose-of 0033_c2s1_000001_00.jpg --out out.png
    # multi-shot: several --source; keypoints from JSON files (18 [y, x] pairs, -1 = missing) instead
    python -m pnr_tf.generate --model runs/quickstart --source a.jpg --source-keypoints a.json \\
        --source b.jpg --source-keypoints b.json --target-keypoints pose.json --out out.png --grid grid.png

Photos of another size are resized to the model's, with their keypoints scaled alike. JSON target
keypoints are in the pixels of the first source photo. A joint that is -1, NaN or outside the photo
is missing; every source photo and the target pose need at least one visible joint. --grid writes sources with their skeletons |
the target skeleton | the result.
"""

import argparse
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
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--target-keypoints", help="JSON file: the target pose, 18 [y, x] pairs")
    target.add_argument("--target-pose-of", help="image name (or path) whose annotated pose is the target")
    parser.add_argument("--out", required=True, help="output image (.png or .jpg)")
    parser.add_argument("--grid", default=None, help="also write sources | target pose | result with skeletons")
    return parser


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def main(argv=None):
    parser = build_parser()
    arguments = parser.parse_args(argv)
    if arguments.source_keypoints and len(arguments.source_keypoints) != len(arguments.source):
        parser.error(f"give one --source-keypoints per --source ({len(arguments.source)}), or none and --annotations")
    if not arguments.source_keypoints and not arguments.annotations:
        parser.error("the sources' keypoints come from --source-keypoints or --annotations")
    if arguments.target_pose_of and not arguments.annotations:
        parser.error("--target-pose-of looks the pose up in --annotations")
    for option, path in (("--out", arguments.out), ("--grid", arguments.grid)):
        if path is not None and Path(path).suffix.lower() not in IMAGE_SUFFIXES:
            parser.error(f"{option} {path}: the file name must end in {', '.join(IMAGE_SUFFIXES)}")

    import numpy as np

    from pnr_tf.data.annotations import DataFormatError
    from pnr_tf.data.annotations import read_annotations
    from pnr_tf.data.annotations import read_keypoints_json
    from pnr_tf.inference import PoseTransfer
    from pnr_tf.inference import fit_photo
    from pnr_tf.visualize import draw_pose
    from pnr_tf.visualize import labelled_rows
    from pnr_tf.visualize import read_rgb
    from pnr_tf.visualize import write_rgb

    try:
        annotations = read_annotations(arguments.annotations) if arguments.annotations else {}

        def annotated(name, role):
            key = Path(name).name
            if key not in annotations:
                raise KeyError(f"{role} {key!r} has no keypoints in {arguments.annotations}")
            return annotations[key].astype(np.float32)

        photos, photo_keypoints = [], []
        for index, source in enumerate(arguments.source):
            photos.append(read_rgb(source))
            if arguments.source_keypoints:
                photo_keypoints.append(read_keypoints_json(arguments.source_keypoints[index]))
            else:
                photo_keypoints.append(annotated(source, "source image"))
        if arguments.target_keypoints:
            target_keypoints, target_frame = read_keypoints_json(arguments.target_keypoints), photos[0]
        else:
            target_keypoints = annotated(arguments.target_pose_of, "target image")
            target_path = Path(arguments.target_pose_of)
            target_frame = read_rgb(target_path) if target_path.is_file() else photos[0]

        model = PoseTransfer.load(arguments.model)
        fitted = [fit_photo(photo, keypoints, model.image_size) for photo, keypoints in zip(photos, photo_keypoints)]
        source_images = np.stack([image for image, _ in fitted])
        source_keypoints = np.stack([keypoints for _, keypoints in fitted])
        _, target_keypoints = fit_photo(target_frame, target_keypoints, model.image_size)
        image = model.generate(source_images[np.newaxis], source_keypoints[np.newaxis], target_keypoints[np.newaxis])[0]

        Path(arguments.out).parent.mkdir(parents=True, exist_ok=True)
        write_rgb(arguments.out, image)
        if arguments.grid:
            blank = np.full_like(image, 255)
            row = [draw_pose(photo, keypoints) for photo, keypoints in zip(source_images, source_keypoints)]
            row += [draw_pose(blank, target_keypoints), image]
            write_rgb(arguments.grid, labelled_rows([row]))
    except (FileNotFoundError, KeyError, ValueError, DataFormatError, OSError) as error:
        message = error.args[0] if isinstance(error, KeyError) else error
        parser.exit(2, f"error: {message}\n")
    print(f"wrote {arguments.out}" + (f" and {arguments.grid}" if arguments.grid else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
