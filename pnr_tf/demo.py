"""`python -m pnr_tf.demo`: the built-in data through a trained generator, end to end, in a minute.

Needs no download: it writes the synthetic person dataset (if absent), reads held-out pairs and
5-source tuples through the data pipeline, draws single- and multi-shot images with the model
(default: the pretrained real-people generator that ships with pnr_tf), saves grids (source |
target pose | drawn | target) as PNG, and checks that the model saved as .keras reloads to the
same pictures. Training lands with `python -m pnr_tf.train`.
"""

import argparse
import time
from pathlib import Path

import cv2
import numpy as np

from pnr_tf import run_files
from pnr_tf.data.pipeline import decoded_batches
from pnr_tf.data.pipeline import pair_samples
from pnr_tf.data.pipeline import tuple_samples
from pnr_tf.data.synthetic import write_synthetic_dataset
from pnr_tf.export import export_keras
from pnr_tf.inference import PoseTransfer
from pnr_tf.pretrained import MODEL_HELP
from pnr_tf.pretrained import chosen_model
from pnr_tf.visualize import draw_pose
from pnr_tf.visualize import labelled_rows
from pnr_tf.visualize import write_rgb


def save_grid(path, batch, drawn):
    """One row per example: source | target pose | drawn | target, as a PNG twice the size."""
    rows = [[batch["source_images"][index, 0], draw_pose(np.full_like(image, 255), batch["target_keypoints"][index]), image,
             batch["target_images"][index]] for index, image in enumerate(drawn)]  # fmt: skip
    grid = labelled_rows(rows)
    write_rgb(path, cv2.resize(grid, None, fx=2, fy=2, interpolation=cv2.INTER_NEAREST))


def run_demo(output_dir, model=None, seed=0):
    """Writes the grids and the .keras copy to output_dir; returns the .keras path."""
    output_dir = Path(output_dir)
    transfer = PoseTransfer.load(chosen_model(model))
    data = output_dir / "synthetic"
    if not (data / "annotations.csv").is_file():
        write_synthetic_dataset(data, num_identities=20, images_per_identity=8, seed=seed)
        print(f"wrote the synthetic dataset to {data}")
    annotations, images = data / "annotations.csv", data / "images"
    samples = {1: pair_samples(data / "pairs-test.csv", annotations, images, transfer.image_size),
               5: tuple_samples(data / "tuples-test.csv", annotations, images, transfer.image_size)}  # fmt: skip
    drawn = {}
    for num_sources, sample_set in samples.items():
        batch = next(iter(decoded_batches(sample_set, 4)))
        start = time.perf_counter()
        drawn[num_sources] = (batch, transfer.generate(batch["source_images"], batch["source_keypoints"], batch["target_keypoints"]))
        print(f"M={num_sources}: drew {drawn[num_sources][1].shape} in {time.perf_counter() - start:.2f} s")
        save_grid(output_dir / f"grid_m{num_sources}.png", batch, drawn[num_sources][1])
    model_path = export_keras(transfer.generator, output_dir / run_files.GENERATOR, overwrite=True)
    reloaded = PoseTransfer.load(model_path)
    for num_sources, (batch, images) in drawn.items():
        again = reloaded.generate(batch["source_images"], batch["source_keypoints"], batch["target_keypoints"])
        if not np.array_equal(again, images):
            raise RuntimeError(f"the reloaded model draws other pictures at M={num_sources}")
    print(f"saved {model_path} and grids in {output_dir}; the reloaded model draws the same pictures")
    return model_path


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default=None, help=MODEL_HELP)
    parser.add_argument("--output-dir", default="outputs/demo")
    parser.add_argument("--seed", type=int, default=0)
    arguments = parser.parse_args()
    run_demo(arguments.output_dir, arguments.model, seed=arguments.seed)


if __name__ == "__main__":
    main()
