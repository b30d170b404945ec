"""`python -m pnr_tf.pose.fetch`: fetch the BlazePose models (Apache-2.0) once, from PyPI, hash-checked.

    python -m pnr_tf.pose.fetch          # into ~/.cache/pnr_tf/pose (or $PNR_TF_POSE_MODELS)

The models ship inside the mediapipe==0.10.21 wheel, which pip downloads (never installs); the
two files are extracted, checked against their SHA-256 and cached (pnr_tf.pose.models). This is
pnr_tf's one network access. Without network, copy the two files into the cache folder by hand.
"""

import argparse
import sys

from pnr_tf.pose.models import MODELS
from pnr_tf.pose.models import MODELS_VARIABLE
from pnr_tf.pose.models import PoseModelsUnavailableError
from pnr_tf.pose.models import fetch_models


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m pnr_tf.pose.fetch", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", default=None, help=f"cache folder (default ${MODELS_VARIABLE} or ~/.cache/pnr_tf/pose)")
    arguments = parser.parse_args(argv)
    try:
        paths = fetch_models(arguments.dir)
    except PoseModelsUnavailableError as error:
        parser.exit(2, f"error: {error}\n")
    for name, path in paths.items():
        print(f"{path}  sha256 {MODELS[name][1]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
