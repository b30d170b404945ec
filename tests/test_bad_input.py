"""No silent wrong results: every bad input a user can make ends in a clear error or a counted skip."""

import errno
import shutil

import numpy as np
import pytest

from pnr_tf.config import ConfigError
from pnr_tf.config import load_config
from pnr_tf.data.annotations import DataFormatError
from pnr_tf.data.annotations import read_annotations
from pnr_tf.data.annotations import read_pairs
from pnr_tf.data.pipeline import BadSampleError
from pnr_tf.data.pipeline import decoded_batches
from pnr_tf.data.pipeline import pair_samples
from pnr_tf.export import export_keras
from pnr_tf.export.__main__ import main as export_main
from pnr_tf.train import main as train_main
from pnr_tf.training import trainer as trainer_module
from pnr_tf.training.run_directory import RunDirectoryBusyError
from pnr_tf.training.run_directory import run_directory_lock
from pnr_tf.training.trainer import Trainer
from tests.helpers import tiny_training_config

HEADER = "name:keypoints_y:keypoints_x\n"
GOOD_ROW = "a.jpg: [10, 20, 20, 30, 40, 20, 30, 40, 60, 80, 100, 60, 80, 100, 8, 8, 9, 9]: [30, 30, 20, 18, 16, 40, 42, 44, 25, 25, 25, 38, 38, 38, 28, 34, 26, 36]\n"


@pytest.fixture
def data(synthetic_root, tmp_path):
    """A private copy of the synthetic dataset that a test may damage."""
    return shutil.copytree(synthetic_root, tmp_path / "data")


def truncate(path):
    contents = path.read_bytes()
    path.write_bytes(contents[: len(contents) // 2])


def test_a_truncated_jpeg_fails_the_data_check_by_name_or_is_skipped_and_counted(data):
    source, target = read_pairs(data / "pairs.csv")[0]
    truncate(data / "images" / source)
    with pytest.raises(BadSampleError, match=rf"pairs.csv:2: image file .*{source} cannot be decoded \(truncated"):
        pair_samples(data / "pairs.csv", data / "annotations.csv", data / "images")
    skipped = pair_samples(data / "pairs.csv", data / "annotations.csv", data / "images", on_bad_sample="skip")
    using = sum(1 for row in read_pairs(data / "pairs.csv") if source in row)
    assert skipped.num_skipped == using and all(source not in path for path in skipped.target_paths)


def test_an_image_that_breaks_after_the_check_is_named_by_the_pipeline_and_by_training(data, tmp_path):
    samples = pair_samples(data / "pairs.csv", data / "annotations.csv", data / "images")
    broken = samples.target_paths[5]
    truncate(data / "images" / broken.rsplit("/", 1)[1])
    with pytest.raises(BadSampleError, match=f"{broken} cannot be decoded"):
        list(decoded_batches(samples, 4))
    trainer = Trainer(tiny_training_config(data, train={"num_steps": 200}), tmp_path / "run")
    with pytest.raises(BadSampleError, match=f"{broken} cannot be decoded"):
        trainer.fit(samples)


@pytest.mark.parametrize(
    "row, message",
    [
        (GOOD_ROW.replace("[10, 20,", "[true, 20,"), "expected two lists of 18 integers"),
        (GOOD_ROW.replace("[10, 20,", "[10000000000000000000000, 20,"), "keypoint value 10000000000000000000000"),
        (GOOD_ROW.replace("[10, 20,", "[-5, 20,"), "keypoint value -5 .* is neither -1 \\(missing\\) nor a pixel position"),
        (GOOD_ROW.replace(": [10", ": [10.5"), "expected two lists of 18 integers"),
    ],
)
def test_malformed_keypoints_name_the_file_and_line(tmp_path, row, message):
    path = tmp_path / "annotations.csv"
    path.write_text(HEADER + GOOD_ROW.replace("a.jpg", "first.jpg") + row)
    with pytest.raises(DataFormatError, match=rf"annotations.csv:3: {message}"):
        read_annotations(path)
    annotations = read_annotations(path, on_bad_sample="skip")
    assert list(annotations) == ["first.jpg"] and len(annotations.skipped) == 1 and "annotations.csv:3" in annotations.skipped[0]


def test_a_byte_order_mark_is_not_part_of_the_header(tmp_path):
    (tmp_path / "annotations.csv").write_text(HEADER + GOOD_ROW, encoding="utf-8-sig")
    (tmp_path / "pairs.csv").write_text("from,to\na.jpg,a.jpg\n", encoding="utf-8-sig")
    assert list(read_annotations(tmp_path / "annotations.csv")) == ["a.jpg"]
    assert read_pairs(tmp_path / "pairs.csv") == [("a.jpg", "a.jpg")]


def test_a_pose_with_every_joint_outside_the_image_is_not_trained_on(data):
    annotations = (data / "annotations.csv").read_text().splitlines()
    source, _ = read_pairs(data / "pairs.csv")[0]
    annotations = [line if not line.startswith(source) else f"{source}: {[500] * 18}: {[300] * 18}" for line in annotations]
    (data / "annotations.csv").write_text("\n".join(annotations) + "\n")
    with pytest.raises(BadSampleError, match=f"'{source}' has no keypoint inside the 128x64 image"):
        pair_samples(data / "pairs.csv", data / "annotations.csv", data / "images")
    skipped = pair_samples(data / "pairs.csv", data / "annotations.csv", data / "images", on_bad_sample="skip")
    assert skipped.num_skipped > 0 and "no keypoint inside" in skipped.skipped_reasons[0]


def test_no_usable_sample_names_the_file(data):
    (data / "pairs.csv").write_text("from,to\nnobody.jpg,noone.jpg\n")
    with pytest.raises(BadSampleError, match="pairs.csv: no usable samples; all 1 rows were skipped, the first because"):
        pair_samples(data / "pairs.csv", data / "annotations.csv", data / "images", on_bad_sample="skip")


def test_a_second_training_in_the_same_run_directory_is_refused(data, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    with run_directory_lock(run):
        with pytest.raises(RunDirectoryBusyError, match=f"{run} is in use by a training run \\(pid "):
            Trainer(tiny_training_config(data), run).fit()
    assert not (run / "checkpoints").exists()


def run_train(capsys, data, *overrides, output_dir):
    arguments = ["--output-dir", str(output_dir), "--set", f"data.root={data}", "--set", "model.base_filters=4",
                 "--set", "model.num_encoder_blocks=1", "--set", "model.num_decoder_blocks=1", "--set", "model.pose_dim=4",
                 "--set", "loss.perceptual_weight=0", "--set", "train.num_steps=1", "--set", "train.batch_size=4"]  # fmt: skip
    for override in overrides:
        arguments += ["--set", override]
    with pytest.raises(SystemExit) as exit_info:
        train_main(arguments)
    error = capsys.readouterr().err
    assert exit_info.value.code == 2 and "Traceback" not in error
    return error.strip().splitlines()


def test_the_train_command_ends_data_and_disk_errors_in_one_error_line(data, tmp_path, capsys, monkeypatch):
    (data / "empty.csv").write_text("")
    lines = run_train(capsys, data, "data.pairs_file=empty.csv", output_dir=tmp_path / "a")
    assert any(line.startswith("error: ") and "empty.csv: empty file" in line for line in lines)
    lines = run_train(capsys, data, "train.batch_size=100000", output_dir=tmp_path / "b")
    assert any("train.batch_size 100000 is larger than the" in line for line in lines)
    lines = run_train(capsys, data, "train.beta_1=5", output_dir=tmp_path / "c")
    assert lines == ["config error: train.beta_1 must be in [0, 1) (Adam's decay rates), got 5.0"]
    (data / "notes.keras").write_text("not a model")
    lines = run_train(capsys, data, f"train.initial_weights={data / 'notes.keras'}", output_dir=tmp_path / "e")
    assert lines[-1].startswith("error: train.initial_weights: ") and "notes.keras" in lines[-1] and "not a readable Keras model" in lines[-1]

    def disk_full(self, samples=None):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "d" / "checkpoints" / "ckpt-1.data"))

    monkeypatch.setattr(trainer_module.Trainer, "fit", disk_full)
    lines = run_train(capsys, data, output_dir=tmp_path / "d")
    assert lines[-1].startswith("error: No space left on device (") and "ckpt-1.data" in lines[-1]


def test_exports_never_replace_a_file_silently(serving_generator, tmp_path, capsys):
    run = tmp_path / "run"
    export_keras(serving_generator, run / "generator.keras")
    with pytest.raises(FileExistsError, match="pass --overwrite"):
        export_keras(serving_generator, run / "generator.keras")
    out = tmp_path / "models"
    for arguments in (["--format", "keras"], ["--format", "saved_model", "--version", "3"]):
        assert export_main(["--model", str(run), *arguments, "--out", str(out)]) == 0
        with pytest.raises(SystemExit) as exit_info:
            export_main(["--model", str(run), *arguments, "--out", str(out)])
        assert exit_info.value.code == 2 and "exists: pass --overwrite" in capsys.readouterr().err
        assert export_main(["--model", str(run), *arguments, "--out", str(out), "--overwrite"]) == 0
    # Without --version a SavedModel export is the next version: it never clobbers one.
    assert export_main(["--model", str(run), "--format", "saved_model", "--out", str(out)]) == 0
    assert sorted(path.name for path in (out / "pnr").iterdir()) == ["3", "4"]
    (tmp_path / "a_file").write_text("not a folder")
    for export_format in ("keras", "saved_model", "tflite"):
        with pytest.raises(SystemExit) as exit_info:
            export_main(["--model", str(run), "--format", export_format, "--out", str(tmp_path / "a_file")])
        error = capsys.readouterr().err
        assert exit_info.value.code == 2 and error == f"error: --out {tmp_path / 'a_file'} is a file; the export is written into a folder (it is created if absent)\n"


def test_a_truncated_keras_file_is_reported_as_such(tiny_model_run, tmp_path, capsys):
    from pnr_tf.evaluate import main as evaluate_main
    from pnr_tf.generate import main as generate_main

    run_dir, _ = tiny_model_run
    broken = tmp_path / "broken.keras"
    broken.write_bytes((run_dir / "generator.keras").read_bytes()[:5000])
    not_a_model = tmp_path / "text.keras"
    not_a_model.write_text("hello")
    for path in (broken, not_a_model):
        for command, arguments in ((export_main, ["--format", "keras", "--out", str(tmp_path / "x")]),
                                   (evaluate_main, ["--no-inception"]),
                                   (generate_main, ["--source", "a.png", "--source-keypoints", "a.json", "--target-keypoints", "a.json",
                                                    "--out", str(tmp_path / "o.png")])):  # fmt: skip
            with pytest.raises(SystemExit) as exit_info:
                command(["--model", str(path), *arguments])
            error = capsys.readouterr().err
            assert exit_info.value.code == 2, (command, error)
            assert ("exists but is not a readable Keras model file" in error or "cannot read" in error) and "File not found" not in error


def test_config_ranges_are_checked():
    with pytest.raises(ConfigError, match="train.beta_2 must be in"):
        load_config(None, ["train.beta_2=1.5"])
    with pytest.raises(ConfigError, match="model.ridge must be >= 0"):
        load_config(None, ["model.ridge=-1"])
    assert np.isclose(load_config(None, ["train.beta_1=0.9"]).train.beta_1, 0.9)
