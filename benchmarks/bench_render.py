"""One person in 16 poses: encode once (float), render the poses in float32 or in int8, per config.

    PYTHONPATH=. python benchmarks/bench_render.py [configs/market_supervised.yaml configs/market_fast.yaml]

Fresh weights (speed does not depend on them). The person is encoded by the SavedModel's `encode`
(float32, the regression needs it); the 16 poses are drawn in one call by the SavedModel's `render`,
the float32 TFLite `render` signature, or the int8 TFLite render model (`export --quantize int8
--int8-signature render`, calibrated on 32 synthetic pairs). images/s = 16 / (encode + render 16),
the median of 5 runs of each. Ends with `render16_int8_images_per_s: X` per config.
"""

import os
import sys
import tempfile
from pathlib import Path

import pnr_tf  # noqa: F401, I001  (first: quiet TensorFlow start-up)  # isort: skip
import tensorflow as tf
from ai_edge_litert.interpreter import Interpreter

from pnr_tf.config import load_config
from pnr_tf.export import export_saved_model
from pnr_tf.export.tflite import calibration_requests
from pnr_tf.export.tflite import convert_to_tflite
from pnr_tf.export.tflite import render_calibration_requests
from pnr_tf.models.factory import built_generator

REPOSITORY = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPOSITORY / "benchmarks"))
from bench_inference import median_seconds  # noqa: E402
from bench_inference import requests  # noqa: E402
from bench_inference import synthetic_pairs  # noqa: E402


def main(argv=None):
    configs = (argv if argv is not None else sys.argv[1:]) or [str(REPOSITORY / "configs" / name) for name in ("market_supervised.yaml", "market_fast.yaml")]
    print(f"machine: {os.cpu_count()} cores, TF {tf.__version__}", flush=True)
    summary = {}
    for config in configs:
        generator = built_generator(load_config(config))
        height, width = generator.contract.image_size
        workspace = Path(tempfile.mkdtemp())
        export_saved_model(generator, workspace, "pnr")
        saved = tf.saved_model.load(str(workspace / "pnr" / "1")).signatures
        single = requests(1, height, width)
        poses = requests(16, height, width, seed=2)["target_keypoints"]
        person = {"source_images": single["source_image"][:, None], "source_keypoints": single["source_keypoints"][:, None]}
        coefficients = saved["encode"](**person)["coefficients"].numpy()
        encode_seconds = median_seconds(lambda _: saved["encode"](**person)["coefficients"].numpy(), None, 5)
        float_runner = Interpreter(model_content=convert_to_tflite(generator, "none", signatures=["render"]),
                                   num_threads=os.cpu_count()).get_signature_runner("render")  # fmt: skip
        calibration = render_calibration_requests(generator, calibration_requests(synthetic_pairs(generator), 32))
        int8_runner = Interpreter(model_content=convert_to_tflite(generator, "int8", calibration, signatures=["render"]),
                                  num_threads=os.cpu_count()).get_signature_runner("render")  # fmt: skip
        renders = {
            "SavedModel render": lambda _: saved["render"](coefficients=coefficients, target_keypoints=poses)["image"].numpy(),
            "TFLite float32 render": lambda _: float_runner(coefficients=coefficients, target_keypoints=poses)["image"],
            "TFLite int8 render": lambda _: int8_runner(coefficients=coefficients, target_keypoints=poses)["image"],
        }
        print(f"\n{config}: {generator.count_params():,} parameters; encode (SavedModel) {encode_seconds * 1e3:.0f} ms", flush=True)
        for name, call in renders.items():
            seconds = median_seconds(call, None, 5)
            images_per_second = 16 / (encode_seconds + seconds)
            print(f"  {name:22s} {seconds / 16 * 1e3:6.1f} ms a pose; 16 poses with the encoding: {images_per_second:5.1f} images/s", flush=True)
        summary[Path(config).stem] = images_per_second  # the last: int8
    for name, value in summary.items():
        print(f"render16_int8_images_per_s[{name}]: {value:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
