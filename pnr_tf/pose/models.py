"""The BlazePose models (Apache-2.0): where they are cached, and their one fetch from PyPI, hash-checked.

The detector and full landmark models ship inside the ``mediapipe==0.10.21`` wheel. That wheel pins
protobuf < 5, which TensorFlow 2.21 cannot share, so it is never installed: pip's download command
fetches it into a temporary folder, the two model files are extracted and checked against the
SHA-256 below, and the wheel is deleted. This is the one network access of pnr_tf, and it happens
only through ``python -m pnr_tf.pose.fetch``, or when a photo's keypoints are estimated and the
models are absent (then with a notice). On a machine without network, copy the two files into the
cache folder by hand.
"""

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from pnr_tf import files

WHEEL = "mediapipe==0.10.21"
MODELS_VARIABLE = "PNR_TF_POSE_MODELS"
# name in the cache -> (path inside the wheel, SHA-256 of the file)
MODELS = {
    "pose_detection.tflite": (
        "mediapipe/modules/pose_detection/pose_detection.tflite",
        "9ba9dd3d42efaaba86b4ff0122b06f29c4122e756b329d89dca1e297fd8f866c",
    ),
    "pose_landmark_full.tflite": (
        "mediapipe/modules/pose_landmark/pose_landmark_full.tflite",
        "e9a5c5cb17f736fafd4c2ec1da3b3d331d6edbe8a0d32395855aeb2cdfd64b9f",
    ),
}


class PoseModelsUnavailableError(RuntimeError):
    """The pose models are not in the cache and could not be fetched; the message says what to do."""


def models_dir():
    if os.environ.get(MODELS_VARIABLE):
        return Path(os.environ[MODELS_VARIABLE])
    return files.cache_root() / "pose"


def _sha256(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def cached_models(directory=None):
    """{name: path} when every model is in the cache with the right hash, else None."""
    directory = Path(directory or models_dir())
    paths = {name: directory / name for name in MODELS}
    if all(path.is_file() and _sha256(path) == digest for path, (_, digest) in zip(paths.values(), MODELS.values())):
        return paths
    return None


def fetch_models(directory=None, quiet=False, timeout=600):
    """Downloads the wheel with pip, extracts and checks the models; returns {name: path}."""
    directory = Path(directory or models_dir())
    found = cached_models(directory)
    if found:
        return found
    directory.mkdir(parents=True, exist_ok=True)
    if not quiet:
        print(f"fetching the BlazePose models: pip download {WHEEL} (35 MB, once) -> {directory}", file=sys.stderr)
    with tempfile.TemporaryDirectory() as download:
        command = [sys.executable, "-m", "pip", "download", WHEEL, "--no-deps", "--only-binary=:all:", "--quiet",
                   "--platform", "manylinux_2_28_x86_64", "--python-version", "3.11", "--dest", download]  # fmt: skip
        try:
            result = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        except (OSError, subprocess.TimeoutExpired) as error:
            raise PoseModelsUnavailableError(f"could not run pip to fetch {WHEEL}: {error}") from None
        wheels = list(Path(download).glob("mediapipe-*.whl"))
        if result.returncode != 0 or not wheels:
            reason = (result.stderr.strip().splitlines() or ["no wheel downloaded"])[-1]
            raise PoseModelsUnavailableError(
                f"could not fetch {WHEEL} from PyPI ({reason}). Without network, copy {' and '.join(MODELS)} "
                f"(from that wheel's {Path(MODELS['pose_detection.tflite'][0]).parent.parent}) into {directory}"
            )
        with zipfile.ZipFile(wheels[0]) as wheel:
            for name, (member, digest) in MODELS.items():
                data = wheel.read(member)
                if hashlib.sha256(data).hexdigest() != digest:
                    raise PoseModelsUnavailableError(f"{member} in {wheels[0].name} does not have the expected SHA-256 {digest}")
                partial = directory / f"{name}.partial"
                partial.write_bytes(data)
                partial.replace(directory / name)
    return cached_models(directory)
