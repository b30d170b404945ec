"""`python -m pnr_tf.evaluate` end to end: our generator, multi-shot tables, other methods' folders, the real subset."""

import csv
import json

import cv2
import numpy as np
import pytest

from pnr_tf.data.annotations import read_annotations
from pnr_tf.data.annotations import read_pairs
from pnr_tf.evaluate import main as evaluate_main
from pnr_tf.evaluation.ssim import body_masks
from pnr_tf.visualize import read_rgb
from pnr_tf.visualize import write_rgb
from tests.helpers import patn_ssim
from tests.helpers import reference_generate


def read_per_pair(path):
    with open(path) as handle:
        return list(csv.DictReader(handle))


def test_model_scores_equal_scikit_image_on_independently_generated_images(tiny_model_run, synthetic_root, tmp_path):
    run_dir, generator = tiny_model_run
    out = tmp_path / "report"
    arguments = ["--model", str(run_dir), "--data-root", str(synthetic_root), "--no-inception", "--limit", "6", "--out", str(out)]
    assert evaluate_main(arguments) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    rows = read_per_pair(out / "per_pair.csv")
    pairs = read_pairs(synthetic_root / "pairs-test.csv")[:6]
    assert [(row["sources"], row["target"]) for row in rows] == pairs
    annotations = read_annotations(synthetic_root / "annotations.csv")
    for row, (source, target) in zip(rows, pairs):
        source_image = read_rgb(synthetic_root / "images" / source)
        target_image = read_rgb(synthetic_root / "images" / target)
        _, generated = reference_generate(
            generator, source_image[np.newaxis, np.newaxis], annotations[source][np.newaxis, np.newaxis], annotations[target][np.newaxis]
        )
        # Our uint8 output may differ by a level from the NumPy-heatmap reference; SSIM moves far less than 1e-3.
        assert float(row["ssim"]) == pytest.approx(patn_ssim(target_image, generated[0]), abs=1e-3)
        mask = body_masks(annotations[target][np.newaxis], 128, 64)[0]
        assert float(row["mask_ssim"]) == pytest.approx(patn_ssim(target_image * mask, generated[0] * mask), abs=1e-3)
        assert float(row["l1"]) == pytest.approx(np.abs(target_image / 127.5 - generated[0] / 127.5).mean(), abs=2e-3)
    assert metrics["num_pairs"] == 6
    assert metrics["ssim"] == pytest.approx(np.mean([float(row["ssim"]) for row in rows]), abs=1e-6)
    assert metrics["l1"] == pytest.approx(np.mean([float(row["l1"]) for row in rows]), abs=1e-6)
    grid = cv2.imread(str(out / "best_worst.png"))
    assert grid.shape[0] > 6 * 128 - 10  # 3 best + 3 worst rows of 128-pixel images


def write_three_source_tuples(synthetic_root, path):
    """Every identity of the 4-image fixture: its first three images as sources, the fourth as target."""
    names = sorted(read_annotations(synthetic_root / "annotations.csv"))
    by_identity = {}
    for name in names:
        by_identity.setdefault(name[:4], []).append(name)
    rows = [",".join(images[:4]) for images in by_identity.values() if len(images) >= 4]
    path.write_text("from_0,from_1,from_2,to\n" + "\n".join(rows * 2) + "\n")


def test_multi_shot_table_with_inception_metrics(tiny_model_run, synthetic_root, tmp_path, capsys):
    run_dir, _ = tiny_model_run
    out = tmp_path / "table"
    write_three_source_tuples(synthetic_root, tmp_path / "tuples.csv")
    arguments = ["--model", str(run_dir), "--data-root", str(synthetic_root), "--tuples", str(tmp_path / "tuples.csv"),
                 "--num-sources", "1,3", "--limit", "10", "--random-inception", "--fid-cache", str(tmp_path / "fid"),
                 "--out", str(out)]  # fmt: skip
    assert evaluate_main(arguments) == 0
    metrics = json.loads((out / "metrics.json").read_text())["by_num_sources"]
    assert set(metrics) == {"M=1", "M=3"}
    for values in metrics.values():
        assert values["num_pairs"] == 10
        assert values["is"] >= 1.0 and values["mask_is"] >= 1.0 and np.isfinite(values["fid"])
    assert metrics["M=1"]["ssim"] != metrics["M=3"]["ssim"]  # the extra sources reach the regression
    assert (out / "M3_per_pair.csv").is_file() and (out / "M1_best_worst.png").is_file()
    assert len(list((tmp_path / "fid").glob("fid_real_*.npz"))) == 1  # real statistics cached once, reused for M = 3
    table = capsys.readouterr().out
    assert "M=1" in table and "M=3" in table and "paper" not in table


def write_strip(path, panels):
    write_rgb(path, np.concatenate(panels, axis=1))


def test_other_methods_folders_patn_strips_and_plain_files(synthetic_root, tmp_path):
    pairs = read_pairs(synthetic_root / "pairs-test.csv")[:4]
    rng = np.random.default_rng(0)
    strips, plain = tmp_path / "patn", tmp_path / "plain"
    strips.mkdir()
    plain.mkdir()
    expected = {}
    for source, target in pairs:
        source_image = read_rgb(synthetic_root / "images" / source)
        target_image = read_rgb(synthetic_root / "images" / target)
        generated = np.clip(target_image + rng.normal(0, 25, target_image.shape), 0, 255).astype(np.uint8)
        pose = np.zeros_like(target_image)
        write_strip(strips / f"{source}___{target}_vis.png", [source_image, pose, target_image, pose, generated])
        write_rgb(plain / f"{source}___{target}.png", generated)
        expected[target] = patn_ssim(target_image, generated)
    for folder in (strips, plain):
        out = tmp_path / f"report_{folder.name}"
        arguments = ["--images", str(folder), "--data-root", str(synthetic_root), "--limit", "4", "--no-inception", "--out", str(out)]
        assert evaluate_main(arguments) == 0
        rows = read_per_pair(out / "per_pair.csv")
        assert len(rows) == 4
        for row in rows:
            assert float(row["ssim"]) == pytest.approx(expected[row["target"]], abs=1e-4)


def test_bad_invocations_exit_with_a_message(tiny_model_run, synthetic_root, tmp_path, capsys):
    run_dir, _ = tiny_model_run
    cases = [
        (["--model", str(run_dir), "--data-root", str(tmp_path)], "annotation file"),
        (["--model", str(run_dir), "--num-sources", "1,3"], "--num-sources needs --tuples"),
        (["--model", str(run_dir), "--tuples", "t.csv", "--num-sources", "0"], "must be >= 1"),
        (["--images", str(tmp_path / "none"), "--data-root", str(synthetic_root)], "no folder of generated images"),
        (["--model", str(run_dir), "--data-root", str(synthetic_root), "--tuples", "absent.csv", "--no-inception"],
         "tuple file"),  # fmt: skip
    ]
    for arguments, message in cases:
        with pytest.raises(SystemExit) as exit_info:
            evaluate_main(arguments)
        assert exit_info.value.code == 2
        assert message in capsys.readouterr().err


def test_real_market_subset_model_and_copy_baseline_with_the_papers_numbers(tiny_model_run, shared_data, tmp_path, capsys):
    subset = shared_data / "market_subset"
    run_dir, _ = tiny_model_run
    common = ["--data-root", str(subset), "--no-inception", "--limit", "8"]
    assert evaluate_main(["--model", str(run_dir), "--pairs", "pairs.csv", *common, "--out", str(tmp_path / "model")]) == 0
    assert "paper: pNR (LAD)" in capsys.readouterr().out
    model_metrics = json.loads((tmp_path / "model" / "metrics.json").read_text())
    assert model_metrics["num_pairs"] == 8 and 0 < model_metrics["mask_ssim"] < 1

    # "Generated" = the source photo itself: a baseline scored from plain files, checked against scikit-image.
    baseline = tmp_path / "copy_source"
    baseline.mkdir()
    pairs = read_pairs(subset / "pairs.csv")[:8]
    for source, target in pairs:
        write_rgb(baseline / f"{source}___{target}.png", read_rgb(subset / "images" / source))
    assert evaluate_main(["--images", str(baseline), "--pairs", "pairs.csv", *common, "--out", str(tmp_path / "baseline")]) == 0
    rows = {row["target"]: float(row["ssim"]) for row in read_per_pair(tmp_path / "baseline" / "per_pair.csv")}
    for source, target in pairs:
        reference = patn_ssim(read_rgb(subset / "images" / target), read_rgb(subset / "images" / source))
        assert rows[target] == pytest.approx(reference, abs=1e-4)


def test_baselines_are_scored_as_a_method_and_beside_every_model(tiny_model_run, synthetic_root, tmp_path, capsys):
    pairs = read_pairs(synthetic_root / "pairs-test.csv")[:8]
    images = synthetic_root / "images"
    targets = np.stack([read_rgb(images / target) for _, target in pairs])
    sources = np.stack([read_rgb(images / source) for source, _ in pairs])
    mean_image = np.round(targets.astype(np.float64).mean(axis=0)).astype(np.uint8)
    expected = {
        "copy-source": {"ssim": np.mean([patn_ssim(t, s) for t, s in zip(targets, sources)]),
                        "l1": np.abs(targets / 127.5 - sources / 127.5).mean()},
        "mean-image": {"ssim": np.mean([patn_ssim(t, mean_image) for t in targets]), "l1": np.abs(targets / 127.5 - mean_image / 127.5).mean()},
    }  # fmt: skip
    common = ["--data-root", str(synthetic_root), "--no-inception", "--limit", "8"]
    for name in ("copy-source", "mean-image"):
        out = tmp_path / name
        assert evaluate_main(["--baseline", name, *common, "--out", str(out)]) == 0
        metrics = json.loads((out / "metrics.json").read_text())
        assert metrics["ssim"] == pytest.approx(expected[name]["ssim"], abs=1e-4)
        assert metrics["l1"] == pytest.approx(expected[name]["l1"], abs=1e-6)
    capsys.readouterr()
    run_dir, _ = tiny_model_run
    assert evaluate_main(["--model", str(run_dir), *common, "--out", str(tmp_path / "model")]) == 0
    table = capsys.readouterr().out
    report = json.loads((tmp_path / "model" / "metrics.json").read_text())
    for name in ("copy-source", "mean-image"):
        assert report["baselines"][name]["ssim"] == pytest.approx(expected[name]["ssim"], abs=1e-4)
        assert f"baseline: {name}" in table


def test_a_folder_missing_some_outputs_is_an_error_unless_allowed_and_then_reported(synthetic_root, tmp_path, capsys):
    pairs = read_pairs(synthetic_root / "pairs-test.csv")[:10]
    folder = tmp_path / "outputs"
    folder.mkdir()
    for source, target in pairs[:7]:  # three pairs, maybe the hard ones, left out
        write_rgb(folder / f"{source}___{target}.png", read_rgb(synthetic_root / "images" / source))
    common = ["--images", str(folder), "--data-root", str(synthetic_root), "--limit", "10", "--no-inception"]
    with pytest.raises(SystemExit) as exit_info:
        evaluate_main([*common, "--out", str(tmp_path / "refused")])
    message = capsys.readouterr().err
    assert exit_info.value.code == 2 and "3 of the 10 pairs have no output" in message and f"{pairs[7][0]}___{pairs[7][1]}" in message
    assert not (tmp_path / "refused" / "metrics.json").exists()
    assert evaluate_main([*common, "--allow-missing", "--out", str(tmp_path / "allowed")]) == 0
    assert "3 of 10 pairs MISSING" in capsys.readouterr().out
    metrics = json.loads((tmp_path / "allowed" / "metrics.json").read_text())
    assert metrics["num_pairs"] == 7 and metrics["num_missing"] == 3 and len(metrics["missing_pairs"]) == 3
    # An empty output file among them is one error line naming it, not a traceback.
    source, target = pairs[0]
    (folder / f"{source}___{target}.png").write_bytes(b"")
    with pytest.raises(SystemExit) as exit_info:
        evaluate_main([*common, "--allow-missing", "--out", str(tmp_path / "empty")])
    message = capsys.readouterr().err
    assert exit_info.value.code == 2 and message.startswith("error: ") and message.count("\n") == 1
    assert f"{source}___{target}.png is empty (0 bytes)" in message


def test_test_time_mirror_on_scores_the_mean_of_the_two_drawings_and_off_restores_one(tiny_model_run, synthetic_root, tmp_path):
    run_dir, generator = tiny_model_run
    assert generator.contract.test_time_mirror is False
    reports = {}
    for setting in ("on", "off", "model"):
        out = tmp_path / setting
        arguments = ["--model", str(run_dir), "--data-root", str(synthetic_root), "--no-inception", "--limit", "4", "--out", str(out),
                     "--test-time-mirror", setting]  # fmt: skip
        assert evaluate_main(arguments) == 0
        reports[setting] = (json.loads((out / "metrics.json").read_text()), read_per_pair(out / "per_pair.csv"))
    assert [reports[name][0]["test_time_mirror"] for name in ("on", "off", "model")] == [True, False, False]
    assert reports["off"][1] == reports["model"][1]
    annotations = read_annotations(synthetic_root / "annotations.csv")
    for row, (source, target) in zip(reports["on"][1], read_pairs(synthetic_root / "pairs-test.csv")[:4]):
        source_image, target_image = (read_rgb(synthetic_root / "images" / name) for name in (source, target))
        drawn, _ = reference_generate(generator, source_image[None, None], annotations[source][None, None], annotations[target][None])
        # The mirrored photo and poses (columns 63 - x, left and right joints exchanged) drawn, flipped back.
        def mirrored(points):
            points = points.astype(np.float64).copy()
            present = (points >= 0).all(axis=-1)
            points[present, 1] = 63 - points[present, 1]
            order = list(range(18))
            for left, right in ((2, 5), (3, 6), (4, 7), (8, 11), (9, 12), (10, 13), (14, 15), (16, 17)):
                order[left], order[right] = right, left
            return points[..., order, :]
        drawn_mirrored, _ = reference_generate(
            generator, source_image[None, None, :, ::-1].copy(), mirrored(annotations[source])[None, None], mirrored(annotations[target])[None]
        )
        mean = 0.5 * (drawn + drawn_mirrored[:, :, ::-1])
        expected = np.clip(np.round((mean + 1.0) * 127.5), 0, 255).astype(np.uint8)
        assert float(row["ssim"]) == pytest.approx(patn_ssim(target_image, expected[0]), abs=1e-3)
    assert [row["ssim"] for row in reports["on"][1]] != [row["ssim"] for row in reports["off"][1]]
