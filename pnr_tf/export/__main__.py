"""`python -m pnr_tf.export`: a trained generator -> SavedModel (TF-Serving layout), TFLite or .keras.

    python -m pnr_tf.export --model runs/quickstart --format saved_model --out models
        -> models/pnr/<version>/ (next free version), for TF-Serving's --model_base_path=models/pnr
    python -m pnr_tf.export --model runs/quickstart/generator.keras --format tflite --quantize float16 --out models
        -> models/pnr_float16.tflite
    python -m pnr_tf.export --model runs/quickstart --format tflite --quantize int8 --calibration data/market/pairs.csv --out models
        -> models/pnr_int8.tflite (serving_default; activations calibrated on 100 real pairs)
    python -m pnr_tf.export --model runs/quickstart --format tflite --quantize int8 --int8-signature render --out models
        -> models/pnr_int8_render.tflite (render only: W from an encode model, each pose drawn in int8;
           add --batch-size 16 to draw 16 poses a call)
    python -m pnr_tf.export --model runs/quickstart --format tflite --quantize int8 --int8-signature encode --out models
        -> models/pnr_int8_encode.tflite (encode only: the appearance encoder in int8, the pose path and solves float)
    python -m pnr_tf.export --model runs/quickstart --format tflite --batch-size 32 --out models
        -> models/pnr.tflite taking batches of exactly 32 (no dynamic-shape arithmetic in the interpreter)
    python -m pnr_tf.export --model runs/quickstart --format keras --out models   -> models/pnr.keras

Exported signatures take uint8 images and (y, x) pixel keypoints (-1 or NaN = missing) and return a
uint8 image and `valid`; image size and heatmap width come from the generator file's contract.
"""

import argparse
import sys

from pnr_tf.export.job import FORMATS
from pnr_tf.export.job import PRECISIONS
from pnr_tf.export.job import ExportJob
from pnr_tf.export.job import run_export
from pnr_tf.export.tflite import QUANTIZATIONS
from pnr_tf.pretrained import MODEL_HELP
from pnr_tf.pretrained import chosen_model


def build_parser():
    parser = argparse.ArgumentParser(
        prog="python -m pnr_tf.export", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default=None, help=MODEL_HELP)
    parser.add_argument("--format", required=True, choices=FORMATS)
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--model-name", default="pnr", help="served model name and file stem (default pnr)")
    parser.add_argument("--version", type=int, default=None, help="SavedModel version (default: newest + 1)")
    parser.add_argument("--quantize", choices=QUANTIZATIONS, default="none", help="TFLite weight quantisation")
    parser.add_argument("--test-time-mirror", choices=("model", "on", "off"), default="model",
                        help="draw each person twice, from the photo and its mirror image, and average (model: as the generator's "
                             "contract says; the choice is recorded in the exported contract)")  # fmt: skip
    parser.add_argument("--precision", choices=PRECISIONS, default="float32",
                        help="SavedModel and .keras: bfloat16 computes the layers in bfloat16 (weights, regression and output "
                             "float32): faster on CPUs with AMX or AVX512-BF16, emulated and slower elsewhere")  # fmt: skip
    parser.add_argument("--overwrite", action="store_true", help="replace an existing file or SavedModel version (default: an error)")
    parser.add_argument("--calibration", default=None,
                        help="with --quantize int8: a pair file of real pairs for the activation ranges (default: the built-in "
                             "synthetic people's pairs-test.csv, written if absent); its images sit beside it in images/")  # fmt: skip
    parser.add_argument("--int8-signature", choices=("serving_default", "encode", "render"), default="serving_default",
                        help="with --quantize int8: the one signature of the int8 model (render: W from an encode model, "
                             "poses drawn in int8, written as <name>_int8_render.tflite; encode: the person's W with the "
                             "appearance encoder in int8, the rest float, written as <name>_int8_encode.tflite)")  # fmt: skip
    parser.add_argument("--batch-size", type=int, default=None,
                        help="with --format tflite: fix the batch dimension; every call then sends exactly that many examples "
                             "(an int8 render model: that many poses of one person a call). Default: dynamic")  # fmt: skip
    return parser


def main(argv=None):
    parser = build_parser()
    arguments = parser.parse_args(argv)
    arguments.model = chosen_model(arguments.model)
    try:
        path = run_export(ExportJob(**vars(arguments)))
    except (FileNotFoundError, FileExistsError, ValueError, OSError) as error:
        parser.exit(2, f"error: {error}\n")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
