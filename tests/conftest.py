"""Shared fixtures: quiet TensorFlow, tiny model builders, and the ../shared data location."""

from pathlib import Path

import pytest  # noqa: E402

import pnr_tf.tensorflow_logging  # noqa: E402, F401  (TF_CPP_MIN_LOG_LEVEL before TensorFlow loads)

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

# The files that take longest (multi-process training, tracing), first: pytest-xdist hands files to
# its workers in queue order, and by default queues them by test count, which put these one- to
# five-test files last and left one worker running them for minutes after the other was done.
SLOWEST_FILES_FIRST = (
    "tests/training/test_distributed.py",
    "tests/training/test_two_replicas.py",
    "tests/training/test_trainer_runs.py",
    "tests/test_filesystems.py",
    "tests/export/test_export.py",
    "tests/training/test_trainer.py",
    "tests/ops/test_packed_cholesky.py",
)


def pytest_configure(config):
    if hasattr(config.option, "loadscopereorder"):  # pytest-xdist: keep the collection order below
        config.option.loadscopereorder = False


def pytest_collection_modifyitems(items):
    def rank(item):
        path = item.nodeid.split("::", 1)[0]
        return SLOWEST_FILES_FIRST.index(path) if path in SLOWEST_FILES_FIRST else len(SLOWEST_FILES_FIRST)

    items.sort(key=rank)  # stable: tests keep their order within a file


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


@pytest.fixture(scope="session")
def serving_generator():
    """A built tiny generator (16 x 8 images) whose uint8 outputs vary enough for export comparisons."""
    import keras

    from tests.helpers import random_generator_inputs
    from tests.helpers import spread_outputs
    from tests.helpers import tiny_generator

    keras.utils.set_random_seed(3)
    generator = tiny_generator(p=1, pose_dim=4, seed=3)
    return spread_outputs(generator, random_generator_inputs(batch_size=2, height=16, width=8))


@pytest.fixture(scope="session")
def saved_model_base(serving_generator, tmp_path_factory):
    """<base>/pnr/1/ exported once per session; returns <base>/pnr (TF-Serving's model base path)."""
    from pnr_tf.export import export_saved_model

    base = tmp_path_factory.mktemp("serving")
    export_saved_model(serving_generator, base, "pnr")
    return base / "pnr"


@pytest.fixture(scope="session")
def tiny_model_run(tmp_path_factory):
    """A run directory holding a tiny 128 x 64 generator.keras (random weights, outputs spread over
    many levels so comparisons within a level or two mean something), as training leaves it."""
    import keras

    from pnr_tf.export import export_keras
    from tests.helpers import random_generator_inputs
    from tests.helpers import spread_outputs
    from tests.helpers import tiny_generator

    keras.utils.set_random_seed(5)
    generator = spread_outputs(tiny_generator(p=1, pose_dim=4, seed=5), random_generator_inputs(batch_size=2, height=128, width=64))
    run_dir = tmp_path_factory.mktemp("tiny_run")
    export_keras(generator, run_dir / "generator.keras")
    return run_dir, generator
