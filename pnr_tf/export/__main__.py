"""`python -m pnr_tf.export`: a trained generator -> SavedModel (TF-Serving layout), TFLite or .keras.

    python -m pnr_tf.export --model runs/quickstart --format saved_model --out models
        -> models/pnr/<version>/ (next free version), for TF-Serving's --model_base_path=models/pnr
    python -m pnr_tf.export --model runs/quickstart/generator.keras --format tflite --quantize float16 --out models
        -> models/pnr_float16.tflite
    python -m pnr_tf.export --model runs/quickstart --format keras --out models   -> models/pnr.keras

Exported signatures take uint8 images and (y, x) pixel keypoints (-1 = missing) and return a uint8
image; the pose heatmaps are built inside the model with the run's data.heatmap_sigma.
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
    parser.add_argument(
        "--heatmap-sigma", type=float, default=None, help="pose heatmap width (default: the run's config.yaml, else 6)"
    )
    arguments = parser.parse_args(argv)
    if arguments.format != "tflite" and arguments.quantize != "none":
        parser.error("--quantize applies to --format tflite only")
    if arguments.format != "saved_model" and arguments.version is not None:
        parser.error("--version applies to --format saved_model only")

    from pnr_tf.export import export_keras
    from pnr_tf.export import export_saved_model
    from pnr_tf.export import export_tflite
    from pnr_tf.models.loading import load_generator
    from pnr_tf.models.loading import run_heatmap_sigma

    try:
        generator = load_generator(arguments.model)
        sigma = arguments.heatmap_sigma if arguments.heatmap_sigma is not None else run_heatmap_sigma(arguments.model)
        if arguments.format == "saved_model":
            path = export_saved_model(generator, arguments.out, arguments.model_name, arguments.version, sigma)
        elif arguments.format == "tflite":
            suffix = "" if arguments.quantize == "none" else f"_{arguments.quantize}"
            path = export_tflite(generator, os.path.join(arguments.out, f"{arguments.model_name}{suffix}.tflite"), arguments.quantize, sigma)
        else:
            path = export_keras(generator, os.path.join(arguments.out, f"{arguments.model_name}.keras"))
    except (FileNotFoundError, FileExistsError, ValueError) as error:
        parser.exit(2, f"error: {error}\n")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
