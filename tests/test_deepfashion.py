"""DeepFashion at 256 x 176 end to end: the shipped config trains (tiny overrides), exports, serves, is evaluated."""

import json
import shutil

from pnr_tf.data.annotations import read_annotations
from pnr_tf.data.annotations import read_pairs
from pnr_tf.evaluate import main as evaluate_main
from pnr_tf.export.__main__ import main as export_main
from pnr_tf.serving.client import GeneratorClient
from pnr_tf.serving.dev_server import serve
from pnr_tf.train import main as train_main
from pnr_tf.visualize import read_rgb
from tests.helpers import level_difference
from tests.helpers import tiny_training_overrides

# PATN's DeepFashion settings from the shipped config, the tiny model and schedule of every training test.
TINY = tiny_training_overrides(train={"batch_size": 2, "validation_size": 4, "sample_every": 100, "checkpoint_every": 100})


def test_the_deepfashion_config_trains_exports_serves_and_is_evaluated(shared_data, tmp_path, capsys):
    from pathlib import Path

    configs = Path(__file__).resolve().parents[1] / "configs"
    subset = shared_data / "deepfashion_subset"
    run = tmp_path / "run"
    arguments = ["--config", str(configs / "deepfashion_supervised.yaml"), "--output-dir", str(run),
                 "--set", f"data.root={subset}", "--set", "data.annotation_file=annotations.csv", "--set", "data.pairs_file=pairs.csv",
                 "--set", "data.image_dir=images", "--set", "train.num_steps=2"]  # fmt: skip
    for override in TINY:
        arguments += ["--set", override]
    assert train_main(arguments) == 0
    assert (run / "generator.keras").is_file() and (run / "split" / "pairs-validation.csv").is_file()
    validation = [json.loads(line) for line in (run / "validation.jsonl").read_text().splitlines()]
    assert validation[-1]["step"] == 2 and 0 < validation[-1]["ssim"] < 1

    assert export_main(["--model", str(run), "--format", "saved_model", "--out", str(tmp_path / "models")]) == 0
    server, port, servicer = serve(tmp_path / "models" / "pnr", port=0, host="localhost")
    annotations = read_annotations(subset / "annotations.csv")
    source, target = read_pairs(subset / "pairs.csv")[0]
    try:
        with GeneratorClient(f"localhost:{port}") as client:
            assert client.metadata()["serving_default"]["inputs"]["source_image"] == ("uint8", (-1, 256, 176, 3))
            image = client.generate(read_rgb(subset / "images" / source), annotations[source], annotations[target])
    finally:
        server.stop(grace=None)
    assert image.shape == (256, 176, 3)
    from pnr_tf.inference import PoseTransfer

    local = PoseTransfer.load(run).generate(read_rgb(subset / "images" / source)[None], annotations[source][None], annotations[target][None])
    assert level_difference(image, local[0]) <= 1

    capsys.readouterr()
    report = tmp_path / "report"
    assert evaluate_main(["--model", str(run), "--data-root", str(subset), "--pairs", "pairs.csv", "--limit", "10",
                          "--random-inception", "--fid-cache", str(tmp_path / "fid"), "--out", str(report)]) == 0  # fmt: skip
    table = capsys.readouterr().out
    metrics = json.loads((report / "metrics.json").read_text())
    assert metrics["num_pairs"] == 10 and "ssim" in metrics and "is" in metrics and "mask_ssim" not in metrics
    assert "published: PATN" in table and "0.773" in table and "mask-SSIM / mask-IS are Market-only" in table
    assert "mask_ssim" not in table.splitlines()[0]
    shutil.rmtree(tmp_path / "fid")
