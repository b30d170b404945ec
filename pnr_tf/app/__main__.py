"""`python -m pnr_tf.app`: serve the pose-transfer page on this machine.

    python -m pnr_tf.app --model runs/quickstart
    python -m pnr_tf.app --model runs/lad --poses /data/market/market-annotation-test.csv --port 8080

Open the printed address: drop in photos of a person (several make a multi-shot input), pick a pose
from the gallery or drag the skeleton's joints, and generate. Keypoints of the photos are estimated
(BlazePose: its models are fetched from PyPI once, see python -m pnr_tf.pose.fetch).
"""

import argparse
import sys


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m pnr_tf.app", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="generator .keras file, training run directory or checkpoint")
    parser.add_argument("--poses", default=None, help="annotation file of images of the model's size, for the pose gallery")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: this machine only)")
    parser.add_argument("--port", type=int, default=8000)
    arguments = parser.parse_args(argv)

    import uvicorn

    from pnr_tf.app import create_app
    from pnr_tf.app.service import PageService
    from pnr_tf.app.service import annotated_poses
    from pnr_tf.data.annotations import DataFormatError
    from pnr_tf.inference import PoseTransfer
    from pnr_tf.pose import PoseEstimator
    from pnr_tf.pose.fetch import PoseModelsUnavailableError

    try:
        model = PoseTransfer.load(arguments.model)
        poses = annotated_poses(arguments.poses, model.image_size) if arguments.poses else None
        if arguments.poses and not poses:
            raise ValueError(f"{arguments.poses} holds no pose with a torso inside a {model.image_size[0]} x {model.image_size[1]} image")
        service = PageService(model, PoseEstimator(), poses)
    except (FileNotFoundError, ValueError, DataFormatError, PoseModelsUnavailableError) as error:
        parser.exit(2, f"error: {error}\n")
    print(f"serving the pose-transfer page on http://{arguments.host}:{arguments.port}/ (Ctrl-C stops)", flush=True)
    uvicorn.run(create_app(service), host=arguments.host, port=arguments.port, log_level="warning")
    return 0


if __name__ == "__main__":
    sys.exit(main())
