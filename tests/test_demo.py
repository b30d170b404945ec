"""The README's main command, `python -m pnr_tf.demo`, runs end to end on the built-in data."""

import cv2

from pnr_tf.demo import run_demo


def test_demo_writes_data_grids_and_a_reloadable_model(tmp_path):
    model_path = run_demo(tmp_path)
    assert model_path.is_file()
    assert (tmp_path / "synthetic" / "annotations.csv").is_file()
    for num_sources in (1, 5):
        grid = cv2.imread(str(tmp_path / f"grid_m{num_sources}.png"))
        assert grid.shape == (4 * 128 * 2, 4 * 64 * 2, 3)
