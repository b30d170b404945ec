"""`python -m pnr_tf.demo`, the one-minute tour, runs end to end on the built-in data."""

import keras
import numpy as np

import pnr_tf  # noqa: F401  (registers the layers for load_model)
from pnr_tf.conventions import to_pixels
from pnr_tf.data.pipeline import make_dataset
from pnr_tf.data.pipeline import pair_samples
from pnr_tf.demo import run_demo
from pnr_tf.visualize import read_rgb


def test_demo_writes_data_grids_and_a_model_that_reloads_to_the_pictures_it_drew(tmp_path):
    model_path = run_demo(tmp_path)
    data = tmp_path / "synthetic"
    assert (data / "annotations.csv").is_file()
    for num_sources in (1, 5):
        assert read_rgb(tmp_path / f"grid_m{num_sources}.png").shape == (4 * 128 * 2, 4 * 64 * 2, 3)
    # The .keras file, loaded in this process, draws the generated column of the M = 1 grid (shown twice its size).
    loaded = keras.models.load_model(model_path)
    samples = pair_samples(data / "pairs-test.csv", data / "annotations.csv", data / "images")
    batch = next(iter(make_dataset(samples, 4, seed=0)))
    generated = to_pixels(np.asarray(loaded({name: batch[name] for name in ("source_image", "source_pose", "target_pose")})))
    shown = read_rgb(tmp_path / "grid_m1.png")[::2, ::2][:, 2 * 64 : 3 * 64]
    assert generated.std() > 0 and np.abs(np.concatenate(list(generated), axis=0).astype(int) - shown.astype(int)).max() <= 1
