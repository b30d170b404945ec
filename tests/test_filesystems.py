"""Any tf.io.gfile filesystem: the whole train -> export -> evaluate path on TensorFlow's in-memory ram://."""

import json

import tensorflow as tf

from pnr_tf import files
from pnr_tf.evaluate import main as evaluate_main
from pnr_tf.export.__main__ import main as export_main
from pnr_tf.training.trainer import Trainer
from tests.helpers import RECONSTRUCTION_ONLY
from tests.helpers import tiny_training_config


def test_train_export_and_evaluate_on_ram(synthetic_root):
    files.copy_tree(synthetic_root, "ram://pnr-test/data")
    config = tiny_training_config(
        "ram://pnr-test/data", data={"validation_pairs": "pairs-validation.csv"}, loss=RECONSTRUCTION_ONLY,
        train={"num_steps": 2, "validate_every": 2},
    )
    model_path = Trainer(config, "ram://pnr-test/run").fit()
    assert model_path == "ram://pnr-test/run/generator.keras" and files.is_file(model_path)
    for name in ("config.yaml", "sessions.jsonl", "validation.jsonl", "generator_best.keras", "samples/step_000002.png"):
        assert files.is_file(f"ram://pnr-test/run/{name}"), name
    assert tf.train.latest_checkpoint("ram://pnr-test/run/checkpoints").endswith("ckpt-2")
    assert files.listdir("ram://pnr-test/run/logs")  # TensorBoard events

    assert export_main(["--model", "ram://pnr-test/run", "--format", "saved_model", "--out", "ram://pnr-test/models"]) == 0
    assert export_main(["--model", "ram://pnr-test/run/checkpoints/ckpt-2", "--format", "keras", "--out", "ram://pnr-test/models"]) == 0
    assert files.is_file("ram://pnr-test/models/pnr/1/saved_model.pb") and files.is_file("ram://pnr-test/models/pnr.keras")
    served = tf.saved_model.load("ram://pnr-test/models/pnr/1")
    assert set(served.signatures) == {"serving_default", "multi_shot", "encode", "render"}

    assert evaluate_main(["--model", "ram://pnr-test/run", "--data-root", "ram://pnr-test/data", "--no-inception", "--limit", "6"]) == 0
    metrics = json.loads(files.read_text("ram://pnr-test/run/evaluation/metrics.json"))
    validation = [json.loads(line) for line in files.read_text("ram://pnr-test/run/validation.jsonl").splitlines()]
    assert metrics["num_pairs"] == 6 and 0 < metrics["ssim"] < 1 and validation[-1]["step"] == 2
    assert files.is_file("ram://pnr-test/run/evaluation/best_worst.png")
