"""Shared fixtures: quiet TensorFlow, tiny model builders, and the ../shared data location."""

import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture
def shared_data():
    """../shared/data, or a clean skip in a user's checkout where it is absent (research-only data)."""
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data (Market-1501 samples) is not present in this checkout")
    return SHARED_DATA


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory):
    """A small built-in synthetic dataset (6 identities x 4 images), written once per test session."""
    from pnr_tf.data.synthetic import write_synthetic_dataset

    root = tmp_path_factory.mktemp("synthetic_people")
    write_synthetic_dataset(root, num_identities=6, images_per_identity=4, seed=0)
    return root
