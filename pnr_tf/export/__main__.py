"""`python -m pnr_tf.export`: a trained generator -> SavedModel (TF-Serving layout), TFLite or .keras.

    python -m pnr_tf.export --model runs/quickstart --format saved_model --out models
        -> models/pnr/<version>/ (next free version), for TF-Serving's --model_base_path=models/pnr
    python -m pnr_tf.export --model runs/quickstart/generator.keras --format tflite --quantize float16 --out models
        -> models/pnr_float16.tflite
    python -m pnr_tf.export --model runs/quickstart --format tflite --quantize int8 --calibration data/market/pairs.csv --out models
        -> models/pnr_int8.tflite (serving_default; activations calibrated on 100 real pairs)
    python -m pnr_tf.export --model runs/quickstart --format tflite --quantize int8 --int8-signature render --out models
        -> models/pnr_int8_render.tflite (render only: W from an encode model, each pose drawn in int8;
           add --batch-size 16 for 16 poses a call, twice as fast)
    python -m pnr_tf.export --model runs/quickstart --format tflite --quantize int8 --int8-signature encode --out models
        -> models/pnr_int8_encode.tflite (encode only: the appearance encoder in int8, the pose path and solves float)
    python -m pnr_tf.export --model runs/quickstart --format tflite --batch-size 32 --out models
        -> models/pnr.tflite taking batches of exactly 32 (no dynamic-shape arithmetic in the interpreter)
    python -m pnr_tf.export --model runs/quickstart --format keras --out models   -> models/pnr.keras

Exported signatures take uint8 images and (y, x) pixel keypoints (-1 or NaN = missing) and return a
uint8 image and `valid`; image size and heatmap width come from the generator file's contract.
"""

import argparse
import os
import sys

FORMATS = ("saved_model", "tflite", "keras")


def calibration_set(pairs_file, generator):
    """serving_default requests from a pair file (annotations.csv and images/ beside it), or the synthetic people."""
    from pnr_tf import files
    from pnr_tf.data.pipeline import pair_samples
    from pnr_tf.export.tflite import calibration_requests

    if pairs_file is None:
        import tempfile

        from pnr_tf.data.datasets import guess_convention
        from pnr_tf.data.synthetic import write_synthetic_dataset

        convention = guess_convention([], generator.contract.image_size)
        if tuple(generator.contract.image_size) != tuple(convention.image_size):
            height, width = generator.contract.image_size
            raise ValueError(f"the built-in synthetic people come at Market's 128x64 or DeepFashion's 256x176, and this model "
                             f"takes {height}x{width} images: pass --calibration with pairs of its size")  # fmt: skip
        dataset = convention.name
        root = os.path.join(tempfile.mkdtemp(prefix="pnr_calibration_"), "synthetic")
        write_synthetic_dataset(root, num_identities=20, images_per_identity=6, dataset=dataset)
        pairs_file = os.path.join(root, "pairs-test.csv")
    root = files.parent(pairs_file)
    samples = pair_samples(pairs_file, files.join(root, "annotations.csv"), files.join(root, "images"), generator.contract.image_size)
    return calibration_requests(samples)


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
    parser.add_argument("--calibration", default=None,
                        help="with --quantize int8: a pair file of real pairs for the activation ranges (default: the built-in "
                             "synthetic people's pairs-test.csv, written if absent); its images sit beside it in images/")  # fmt: skip
    parser.add_argument("--int8-signature", choices=("serving_default", "encode", "render"), default="serving_default",
                        help="with --quantize int8: the one signature of the int8 model (render: W from an encode model, "
                             "poses drawn in int8, written as <name>_int8_render.tflite; encode: the person's W with the "
                             "appearance encoder in int8, the rest float, written as <name>_int8_encode.tflite)")  # fmt: skip
    parser.add_argument("--batch-size", type=int, default=None,
                        help="with --format tflite: fix the batch dimension (every call then sends that many examples; "
                             "the int8 render model drew 16 poses twice as fast before dynamic-batch models were sized statically, BENCHMARKS.md; an int8 "
                             "render model then draws that many poses of one person a call); default dynamic")  # fmt: skip
    arguments = parser.parse_args(argv)
    if arguments.format != "tflite" and arguments.batch_size is not None:
        parser.error("--batch-size applies to --format tflite only (a SavedModel's batch stays dynamic)")
    if arguments.batch_size is not None and arguments.batch_size < 1:
        parser.error("--batch-size must be >= 1")
    if arguments.int8_signature != "serving_default" and arguments.quantize != "int8":
        parser.error("--int8-signature applies to --quantize int8 only")
    if arguments.quantize == "int8" and arguments.int8_signature == "serving_default" and arguments.batch_size is not None:
        parser.error("--batch-size with --quantize int8 needs --int8-signature render or encode (TensorFlow 2.21's "
                     "calibrator crashes on a fixed-batch int8 serving_default model)")
    if arguments.format != "tflite" and arguments.quantize != "none":
        parser.error("--quantize applies to --format tflite only")
    if arguments.format != "saved_model" and arguments.version is not None:
        parser.error("--version applies to --format saved_model only")

    from pnr_tf import files

    if files.exists(arguments.out) and not files.is_dir(arguments.out):
        parser.exit(2, f"error: --out {arguments.out} is a file; the export is written into a folder (it is created if absent)\n")

    from pnr_tf.export import export_keras
    from pnr_tf.export import export_saved_model
    from pnr_tf.export import export_tflite
    from pnr_tf.export.tflite import encode_calibration_requests
    from pnr_tf.export.tflite import render_calibration_requests
    from pnr_tf.models.loading import load_generator

    try:
        generator = load_generator(arguments.model)
        if arguments.format == "saved_model":
            path = export_saved_model(generator, arguments.out, arguments.model_name, arguments.version, arguments.overwrite)
        elif arguments.format == "tflite":
            suffix = "" if arguments.quantize == "none" else f"_{arguments.quantize}"
            calibration, signatures = None, None
            if arguments.quantize == "int8":
                calibration, signatures = calibration_set(arguments.calibration, generator), [arguments.int8_signature]
                if arguments.int8_signature == "render":
                    calibration, suffix = render_calibration_requests(generator, calibration), "_int8_render"
                elif arguments.int8_signature == "encode":
                    calibration, suffix = encode_calibration_requests(calibration), "_int8_encode"
            path = export_tflite(generator, os.path.join(arguments.out, f"{arguments.model_name}{suffix}.tflite"), arguments.quantize,
                                 arguments.overwrite, calibration, arguments.batch_size, signatures)  # fmt: skip
        else:
            path = export_keras(generator, os.path.join(arguments.out, f"{arguments.model_name}.keras"), arguments.overwrite)
    except (FileNotFoundError, FileExistsError, ValueError, OSError) as error:
        parser.exit(2, f"error: {error}\n")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
