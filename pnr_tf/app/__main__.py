"""`python -m pnr_tf.app`: serve the pose-transfer page on this machine.

    python -m pnr_tf.app                      # the pretrained generator
    python -m pnr_tf.app --model runs/quickstart
    python -m pnr_tf.app --model runs/lad --poses /data/market/market-annotation-test.csv --port 8080

Open the printed address: drop in photos of a person (several make a multi-shot input), pick a pose
from the gallery or drag the skeleton's joints, and generate. Keypoints of the photos are estimated
(BlazePose: its models are fetched from PyPI once, see python -m pnr_tf.pose.fetch).
"""

import argparse
import sys

import uvicorn

from pnr_tf.app import allowed_hosts
from pnr_tf.app import create_app
from pnr_tf.app.service import PageService
from pnr_tf.app.service import annotated_poses
from pnr_tf.data.annotations import DataFormatError
from pnr_tf.inference import PoseTransfer
from pnr_tf.pose import PoseEstimator
from pnr_tf.pose.models import PoseModelsUnavailableError
from pnr_tf.pretrained import MODEL_HELP
from pnr_tf.pretrained import chosen_model


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m pnr_tf.app", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help=MODEL_HELP)
    parser.add_argument("--poses", default=None, help="annotation file of images of the model's size, for the pose gallery")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1: this machine only). 0.0.0.0 exposes the page, which has "
                             "no login, to every network this machine is on; name the hosts it is reached by with --allowed-host")
    parser.add_argument("--allowed-host", action="append", default=[], metavar="NAME",
                        help="a host name the page may be reached by, besides localhost, 127.0.0.1, [::1] and --host "
                             "(repeatable; requests naming any other host get 400, which stops DNS rebinding)")  # fmt: skip
    parser.add_argument("--port", type=int, default=8000)
    arguments = parser.parse_args(argv)

    try:
        model = PoseTransfer.load(chosen_model(arguments.model))
        poses = annotated_poses(arguments.poses, model.image_size) if arguments.poses else None
        if arguments.poses and not poses:
            raise ValueError(f"{arguments.poses} holds no pose with a torso inside a {model.image_size[0]} x {model.image_size[1]} image")
        service = PageService(model, PoseEstimator(), poses)
    except (FileNotFoundError, ValueError, DataFormatError, PoseModelsUnavailableError) as error:
        parser.exit(2, f"error: {error}\n")
    hosts = allowed_hosts(arguments.host, arguments.allowed_host)
    shown = "localhost" if arguments.host in ("0.0.0.0", "::", "[::]") else hosts[-1 - len(arguments.allowed_host)]
    print(f"serving the pose-transfer page on http://{shown}:{arguments.port}/ (host names accepted: {', '.join(hosts)}; Ctrl-C stops)",
          flush=True)  # fmt: skip
    uvicorn.run(create_app(service, hosts), host=arguments.host, port=arguments.port, log_level="warning")
    return 0


if __name__ == "__main__":
    sys.exit(main())
