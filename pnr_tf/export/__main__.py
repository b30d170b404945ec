"""`python -m pnr_tf.export`: a trained generator -> SavedModel (TF-Serving layout), TFLite or .keras.

    python -m pnr_tf.export --model runs/quickstart --format saved_model --out models
        -> models/pnr/<version>/ (next free version), for TF-Serving's --model_base_path=models/pnr
    python -m pnr_tf.export --model runs/quickstart/generator.keras --format tflite --quantize float16 --out models
        -> models/pnr_float16.tflite
    python -m pnr_tf.export --model runs/quickstart --format keras --out models   -> models/pnr.keras

Exported signatures take uint8 images and (y, x) pixel keypoints (-1 or NaN = missing) and return a
uint8 image and `valid`; image size and heatmap width come from the generator file's contract.
"""

import argparse
import os
import sys

FORMATS = ("saved_model", "tflite", "keras")


def main(argv=None):
    from pnr_tf.export.tflite import QUANTIZATIONS

    parser = argparse.ArgumentParser(
        prog="python -m pnr_tf.export", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", required=True, help="generator .keras file, training run directory (even one stopped midway) or checkpoint")
    parser.add_argument("--format", required=True, choices=FORMATS)
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--model-name", default="pnr", help="served model name and file stem (default pnr)")
    parser.add_argument("--version", type=int, default=None, help="SavedModel version (default: newest + 1)")
    parser.add_argument("--quantize", choices=QUANTIZATIONS, default="none", help="TFLite weight quantisation")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing file or SavedModel version (default: an error)")
    arguments = parser.parse_args(argv)
    if arguments.format != "tflite" and arguments.quantize != "none":
        parser.error("--quantize applies to --format tflite only")
    if arguments.format != "saved_model" and arguments.version is not None:
        parser.error("--version applies to --format saved_model only")

    from pnr_tf.export import export_keras
    from pnr_tf.export import export_saved_model
    from pnr_tf.export import export_tflite
    from pnr_tf.models.loading import load_generator

    try:
        generator = load_generator(arguments.model)
        if arguments.format == "saved_model":
            path = export_saved_model(generator, arguments.out, arguments.model_name, arguments.version, arguments.overwrite)
        elif arguments.format == "tflite":
            suffix = "" if arguments.quantize == "none" else f"_{arguments.quantize}"
            path = export_tflite(generator, os.path.join(arguments.out, f"{arguments.model_name}{suffix}.tflite"), arguments.quantize, arguments.overwrite)
        else:
            path = export_keras(generator, os.path.join(arguments.out, f"{arguments.model_name}.keras"), arguments.overwrite)
    except (FileNotFoundError, FileExistsError, ValueError, OSError) as error:
        parser.exit(2, f"error: {error}\n")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
