"""`python -m pnr_tf.generate`: draw the person of one or more photos in another pose.

    # any photos: keypoints estimated (BlazePose, fetched from PyPI once: python -m pnr_tf.pose.fetch)
    python -m pnr_tf.generate --model runs/quickstart --source my_photo.jpg --target-pose-of other_photo.jpg --out out.png
    # keypoints of the photos and of the target pose from an annotation file, by image name
    python -m pnr_tf.generate --model runs/quickstart --annotations data/synthetic/annotations.csv \\
        --source data/synthetic/images/0033_c1s1_000000_00.jpg --target-pose-of 0033_c2s1_000001_00.jpg --out out.png
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
    target.add_argument("--target-pose-of", help="image (a path, or a name in --annotations) whose pose is the target")
    parser.add_argument("--out", required=True, help="output image (.png or .jpg)")
    parser.add_argument("--grid", default=None, help="also write sources | target pose | result with skeletons")
    parser.add_argument("--framed", default=None, help="also write the result pasted back into the first source photo")
    return parser


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def main(argv=None):
    parser = build_parser()
    arguments = parser.parse_args(argv)
    if arguments.source_keypoints and len(arguments.source_keypoints) != len(arguments.source):
        parser.error(f"give one --source-keypoints per --source ({len(arguments.source)}), or none (--annotations, or estimated)")
    for option, path in (("--out", arguments.out), ("--grid", arguments.grid), ("--framed", arguments.framed)):
        if path is not None and Path(path).suffix.lower() not in IMAGE_SUFFIXES:
            parser.error(f"{option} {path}: the file name must end in {', '.join(IMAGE_SUFFIXES)}")

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
        if arguments.target_keypoints:
            target_keypoints = fit_photo(photos[0], read_keypoints_json(arguments.target_keypoints), model.image_size)[1]
        else:
            target_path = Path(arguments.target_pose_of)
            keypoints = known_keypoints(target_path)
            if keypoints is None and not target_path.is_file():
                where = f"is not in {arguments.annotations}" if arguments.annotations else "is not a file"
                raise KeyError(f"target image {target_path.name!r} {where}: no pose to take")
            target_photo = read_rgb(target_path) if target_path.is_file() else photos[0]
            target_keypoints = frame_person(target_photo, model.image_size, keypoints, estimator() if keypoints is None else None,
                                            str(target_path)).keypoints  # fmt: skip
        source_images = np.stack([source.image for source in sources])
        source_keypoints = np.stack([source.keypoints for source in sources])
        image = model.generate(source_images[np.newaxis], source_keypoints[np.newaxis], target_keypoints[np.newaxis])[0]

        Path(arguments.out).parent.mkdir(parents=True, exist_ok=True)
        write_rgb(arguments.out, image)
        if arguments.grid:
            blank = np.full_like(image, 255)
            row = [draw_pose(photo, keypoints) for photo, keypoints in zip(source_images, source_keypoints)]
            row += [draw_pose(blank, target_keypoints), image]
            write_rgb(arguments.grid, labelled_rows([row]))
        if arguments.framed:
            from pnr_tf.pose import paste_back

            write_rgb(arguments.framed, paste_back(photos[0], sources[0], image))
    except (FileNotFoundError, KeyError, ValueError, DataFormatError, OSError, PoseModelsUnavailableError) as error:
        message = error.args[0] if isinstance(error, KeyError) else error
        parser.exit(2, f"error: {message}\n")
    print(f"wrote {', '.join(path for path in (arguments.out, arguments.grid, arguments.framed) if path)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
