"""`python -m pnr_tf.demo`, the one-minute tour, runs end to end on the built-in data."""

import numpy as np

from pnr_tf.data.pipeline import decoded_batches
from pnr_tf.data.pipeline import pair_samples
from pnr_tf.demo import run_demo
from pnr_tf.inference import PoseTransfer
from pnr_tf.visualize import read_rgb


def test_demo_writes_data_grids_and_a_model_that_reloads_to_the_pictures_it_drew(tmp_path, tiny_model_run):
    model_path = run_demo(tmp_path, model=str(tiny_model_run[0]))
    data = tmp_path / "synthetic"
    assert (data / "annotations.csv").is_file()
    for num_sources in (1, 5):
        assert read_rgb(tmp_path / f"grid_m{num_sources}.png").shape == ((4 * 130 - 2) * 2, (4 * 66 - 2) * 2, 3)  # 2-pixel gaps
    # The .keras file, loaded in this process, draws the third column of the M = 1 grid (shown twice its size).
    samples = pair_samples(data / "pairs-test.csv", data / "annotations.csv", data / "images")
    batch = next(iter(decoded_batches(samples, 4)))
    drawn = PoseTransfer.load(model_path).generate(batch["source_images"], batch["source_keypoints"], batch["target_keypoints"])
    shown = read_rgb(tmp_path / "grid_m1.png")[::2, ::2][:, 2 * 66 : 2 * 66 + 64]
    rows = np.concatenate([shown[index * 130 : index * 130 + 128] for index in range(4)], axis=0)
    assert drawn.std() > 0 and np.array_equal(np.concatenate(list(drawn), axis=0), rows)
