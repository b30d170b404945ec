"""`python -m pnr_tf.generate`: draw the person of one or more photos in another pose.

    # any photos: keypoints estimated (BlazePose, fetched from PyPI once: python -m pnr_tf.pose.fetch)
    python -m pnr_tf.generate --source my_photo.jpg --target-pose-of other_photo.jpg --out out.png   # the pretrained generator
    # keypoints of the photos and of the target pose from an annotation file, by image name
    python -m pnr_tf.generate --model runs/quickstart --annotations data/synthetic/annotations.csv \\
        --source data/synthetic/images/0033_c1s1_000000_00.jpg --target-pose-of 0033_c2s1_000001_00.jpg --out out.png
    # one person in many poses: encoded once, rendered per pose; numbered PNGs, or an animation
    python -m pnr_tf.generate --model runs/quickstart --source me.jpg --pose-sequence walk.json --out walk.gif
    # multi-shot: several --source; keypoints from JSON files (18 [y, x] pairs, -1 = missing) instead
    python -m pnr_tf.generate --model runs/quickstart --source a.jpg --source-keypoints a.json \\
        --source b.jpg --source-keypoints b.json --target-keypoints pose.json --out out.png --grid grid.png

Keypoints a photo has (a JSON file, or its name in --annotations) are used as given; a photo without
them has them estimated. The person is framed as the training crops were (a dataset-shaped photo the
person fills is resized, any other cut out like a Market-1501 crop). --framed also writes the result
pasted back into the first source photo. JSON target keypoints are in the pixels of the first source
photo, framed with it. A joint that is -1, NaN or
outside the photo is missing; every source photo and the target pose need at least one visible joint.
"""

import argparse
import sys

from pnr_tf.data.annotations import DataFormatError
from pnr_tf.generation import GenerationJob
from pnr_tf.generation import describe_written
from pnr_tf.generation import run_generation
from pnr_tf.pose.models import PoseModelsUnavailableError
from pnr_tf.pretrained import MODEL_HELP
from pnr_tf.pretrained import chosen_model


def build_parser():
    parser = argparse.ArgumentParser(
        prog="python -m pnr_tf.generate", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default=None, help=MODEL_HELP)
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


def main(argv=None):
    parser = build_parser()
    arguments = parser.parse_args(argv)
    job = GenerationJob(
        model=chosen_model(arguments.model), sources=arguments.source, out=arguments.out, source_keypoints=arguments.source_keypoints,
        annotations=arguments.annotations, target_keypoints=arguments.target_keypoints, target_pose_of=arguments.target_pose_of,
        pose_sequence=arguments.pose_sequence, fps=arguments.fps, grid=arguments.grid, framed=arguments.framed,
    )  # fmt: skip
    try:
        written = run_generation(job)
    except (FileNotFoundError, ValueError, DataFormatError, OSError, PoseModelsUnavailableError) as error:
        parser.exit(2, f"error: {error}\n")
    print(f"wrote {describe_written(written, extra=bool(job.grid) + bool(job.framed))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
