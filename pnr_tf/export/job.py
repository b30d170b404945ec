"""One export as ``python -m pnr_tf.export`` runs it: a generator to a SavedModel, a TFLite file or a .keras file.

    from pnr_tf.export.job import ExportJob, run_export
    path = run_export(ExportJob(model="runs/quickstart", format="tflite", out="models", quantize="int8"))
"""

import dataclasses
import os
import tempfile

from pnr_tf import files
from pnr_tf.data.datasets import guess_convention
from pnr_tf.data.pipeline import pair_samples
from pnr_tf.data.synthetic import write_synthetic_dataset
from pnr_tf.export.keras_file import export_keras
from pnr_tf.export.saved_model import export_saved_model
from pnr_tf.export.tflite import QUANTIZATIONS
from pnr_tf.export.tflite import calibration_requests
from pnr_tf.export.tflite import encode_calibration_requests
from pnr_tf.export.tflite import export_tflite
from pnr_tf.export.tflite import render_calibration_requests
from pnr_tf.models.generator import copy_generator
from pnr_tf.models.loading import load_generator

FORMATS = ("saved_model", "tflite", "keras")
PRECISIONS = ("float32", "bfloat16")


@dataclasses.dataclass
class ExportJob:
    model: str  # a .keras file, a run directory or a checkpoint
    format: str  # one of FORMATS
    out: str  # a folder: <out>/<model_name>/<version>/, <out>/<model_name>[_suffix].tflite or <out>/<model_name>.keras
    model_name: str = "pnr"
    version: int = None  # SavedModel only; default: the newest + 1
    quantize: str = "none"  # TFLite only: QUANTIZATIONS
    overwrite: bool = False
    calibration: str = None  # int8: a pair file with annotations.csv and images/ beside it
    int8_signature: str = "serving_default"  # int8: serving_default, encode or render
    batch_size: int = None  # TFLite only: a fixed batch
    precision: str = "float32"  # SavedModel and .keras: "bfloat16" computes the layers in bfloat16 (CPUs with AMX / AVX512-BF16)
    test_time_mirror: str = "model"  # "model" (as its contract says), "on" or "off": recorded in the exported contract

    def check(self):
        """ValueError for options that do not go together (before the model is read)."""
        if self.format not in FORMATS:
            raise ValueError(f"format must be one of {FORMATS}, got {self.format!r}")
        if self.quantize not in QUANTIZATIONS:
            raise ValueError(f"--quantize must be one of {QUANTIZATIONS}, got {self.quantize!r}")
        if self.format != "tflite" and self.batch_size is not None:
            raise ValueError("--batch-size applies to --format tflite only (a SavedModel's batch stays dynamic)")
        if self.batch_size is not None and self.batch_size < 1:
            raise ValueError("--batch-size must be >= 1")
        if self.int8_signature != "serving_default" and self.quantize != "int8":
            raise ValueError("--int8-signature applies to --quantize int8 only")
        if self.quantize == "int8" and self.int8_signature == "serving_default" and self.batch_size is not None:
            raise ValueError("--batch-size with --quantize int8 needs --int8-signature render or encode (TensorFlow 2.21's "
                             "calibrator crashes on a fixed-batch int8 serving_default model)")  # fmt: skip
        if self.format != "tflite" and self.quantize != "none":
            raise ValueError("--quantize applies to --format tflite only")
        if self.test_time_mirror not in ("model", "on", "off"):
            raise ValueError(f"--test-time-mirror must be model, on or off, got {self.test_time_mirror!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"--precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.precision != "float32" and self.format == "tflite":
            raise ValueError("--precision bfloat16 applies to --format saved_model and keras (TFLite has --quantize)")
        if self.format != "saved_model" and self.version is not None:
            raise ValueError("--version applies to --format saved_model only")
        if files.exists(self.out) and not files.is_dir(self.out):
            raise ValueError(f"--out {self.out} is a file; the export is written into a folder (it is created if absent)")


def calibration_set(pairs_file, generator):
    """serving_default requests from a pair file (annotations.csv and images/ beside it), or the synthetic people."""
    if pairs_file is None:
        convention = guess_convention([], generator.contract.image_size)
        if tuple(generator.contract.image_size) != tuple(convention.image_size):
            height, width = generator.contract.image_size
            raise ValueError(f"the built-in synthetic people come at Market's 128x64 or DeepFashion's 256x176, and this model "
                             f"takes {height}x{width} images: pass --calibration with pairs of its size")  # fmt: skip
        root = os.path.join(tempfile.mkdtemp(prefix="pnr_calibration_"), "synthetic")
        write_synthetic_dataset(root, num_identities=20, images_per_identity=6, dataset=convention.name)
        pairs_file = os.path.join(root, "pairs-test.csv")
    root = files.parent(pairs_file)
    samples = pair_samples(pairs_file, files.join(root, "annotations.csv"), files.join(root, "images"), generator.contract.image_size)
    return calibration_requests(samples)


def run_export(job):
    """Checks and runs the job; returns the path written."""
    job.check()
    generator = load_generator(job.model)
    if job.precision == "bfloat16" or job.test_time_mirror != "model":  # one copy carries both changes
        generator = copy_generator(
            generator, dtype_policy="mixed_bfloat16" if job.precision == "bfloat16" else None,
            contract_changes={"test_time_mirror": job.test_time_mirror == "on"} if job.test_time_mirror != "model" else None,
        )  # fmt: skip
    if job.format == "saved_model":
        return export_saved_model(generator, job.out, job.model_name, job.version, job.overwrite)
    if job.format == "keras":
        return export_keras(generator, os.path.join(job.out, f"{job.model_name}.keras"), job.overwrite)
    suffix = "" if job.quantize == "none" else f"_{job.quantize}"
    calibration, signatures = None, None
    if job.quantize == "int8":
        calibration, signatures = calibration_set(job.calibration, generator), [job.int8_signature]
        if job.int8_signature == "render":
            calibration, suffix = render_calibration_requests(generator, calibration), "_int8_render"
        elif job.int8_signature == "encode":
            calibration, suffix = encode_calibration_requests(calibration), "_int8_encode"
    path = os.path.join(job.out, f"{job.model_name}{suffix}.tflite")
    return export_tflite(generator, path, job.quantize, job.overwrite, calibration, job.batch_size, signatures)
