"""One person in 16 poses: encode once (float, or int8 appearance encoder), render the poses in float32 or int8.

    python -m benchmarks.bench_render [configs/market_supervised.yaml configs/market_fast.yaml]

Fresh weights (speed does not depend on them). The person is encoded by the SavedModel's `encode`
(float32, the regression needs it); the 16 poses are drawn in one call by the SavedModel's `render`,
the float32 TFLite `render` signature, or the int8 TFLite render model (`export --quantize int8
--int8-signature render`, calibrated on 32 synthetic pairs), dynamic or with its batch fixed to the 16
poses (`--batch-size 16`). images/s = 16 / (encode + render 16),
the median of 5 runs of each. Then the same int8 render after the int8 encode model (`--int8-signature
encode`: the appearance encoder in int8, the pose encoder and the solves float). Ends with
`render16_int8_images_per_s[config]: X` (float encode, fixed-batch int8 render),
`render16_int8_dynamic_batch_images_per_s[config]: X` and `render16_int8_encode_images_per_s[config]: X`.
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
from pnr_tf.export.tflite import encode_calibration_requests
from pnr_tf.export.tflite import render_calibration_requests
from pnr_tf.models.factory import generator_from_config

from benchmarks.common import REPOSITORY
from benchmarks.common import median_seconds
from benchmarks.common import requests
from benchmarks.common import synthetic_pairs


def main(argv=None):
    configs = (argv if argv is not None else sys.argv[1:]) or [str(REPOSITORY / "configs" / name) for name in ("market_supervised.yaml", "market_fast.yaml")]
    print(f"machine: {os.cpu_count()} cores, TF {tf.__version__}", flush=True)
    summary = {}
    for config in configs:
        generator = generator_from_config(load_config(config))
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
        requests_for_calibration = calibration_requests(synthetic_pairs(generator), 32)
        calibration = render_calibration_requests(generator, requests_for_calibration)
        int8_runner = Interpreter(model_content=convert_to_tflite(generator, "int8", calibration, signatures=["render"]),
                                  num_threads=os.cpu_count()).get_signature_runner("render")  # fmt: skip
        # The same model with its batch fixed to the 16 poses (`export --batch-size 16`): no dynamic shapes.
        int8_fixed_runner = Interpreter(model_content=convert_to_tflite(generator, "int8", calibration, signatures=["render"], batch_size=16),
                                        num_threads=os.cpu_count()).get_signature_runner("render")  # fmt: skip
        int8_encode = Interpreter(model_content=convert_to_tflite(generator, "int8", encode_calibration_requests(requests_for_calibration), signatures=["encode"]),
                                  num_threads=os.cpu_count()).get_signature_runner("encode")  # fmt: skip
        int8_encode_seconds = median_seconds(lambda _: int8_encode(**person)["coefficients"], None, 5)
        renders = {
            "SavedModel render": lambda _: saved["render"](coefficients=coefficients, target_keypoints=poses)["image"].numpy(),
            "TFLite float32 render": lambda _: float_runner(coefficients=coefficients, target_keypoints=poses)["image"],
            "TFLite int8 render": lambda _: int8_runner(coefficients=coefficients, target_keypoints=poses)["image"],
            "TFLite int8 render b16": lambda _: int8_fixed_runner(coefficients=coefficients, target_keypoints=poses)["image"],
        }
        print(f"\n{config}: {generator.count_params():,} parameters; encode: SavedModel {encode_seconds * 1e3:.0f} ms, "
              f"TFLite int8 encode model {int8_encode_seconds * 1e3:.0f} ms", flush=True)  # fmt: skip
        rates = {}
        for name, call in renders.items():
            seconds = median_seconds(call, None, 5)
            rates[name] = 16 / (encode_seconds + seconds)
            print(f"  {name:22s} {seconds / 16 * 1e3:6.1f} ms a pose; 16 poses with the encoding: {rates[name]:5.1f} images/s", flush=True)
        with_int8_encode = 16 / (int8_encode_seconds + seconds)  # seconds: the fixed-batch int8 render's, the last
        print(f"  {'TFLite int8 render b16':22s} after the int8 encode model: {with_int8_encode:5.1f} images/s", flush=True)
        summary[Path(config).stem] = (rates["TFLite int8 render b16"], rates["TFLite int8 render"], with_int8_encode)
    for name, (fixed, dynamic, int8_encode) in summary.items():
        print(f"render16_int8_images_per_s[{name}]: {fixed:.2f}")
        print(f"render16_int8_dynamic_batch_images_per_s[{name}]: {dynamic:.2f}")
        print(f"render16_int8_encode_images_per_s[{name}]: {int8_encode:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
