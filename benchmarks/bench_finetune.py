"""Fine-tuning the pretrained generator on people it never saw, against training from scratch and the
pretrained generator alone, on held-out people of those people, printed.

    python -m benchmarks.bench_finetune [--shared ../shared/data] [--minutes 10] [--work runs/finetune]

The people: the DeepFashion items the pretrained generator held out (its run's
deepfashion-held-out.csv, shipped in pnr_tf/pretrained/split/), one folder per item as a user's
photos are, run through ``python -m pnr_tf.prepare --model pretrained --test-fraction 0.5``: BlazePose
keypoints, half the items to train on (pairs.csv), half held out (pairs-test.csv). Three rows, each
scored by ``evaluate`` on the held-out half: the pretrained generator alone; configs/custom_cpu.yaml
for --minutes of wall time from the pretrained weights (its default); the same from random weights.
Beside them, copying the source photo and the mean image on the same pairs. Each training is stopped
by SIGTERM after --minutes (it saves a checkpoint and generator.keras, as on Ctrl-C).
"""

import argparse
import json
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from pnr_tf import pretrained

from benchmarks.common import REPOSITORY


def run(command, log):
    """Runs a pnr_tf command from the repository's root, its output to ``log``; the seconds it took."""
    start = time.perf_counter()
    with open(log, "w") as output:
        subprocess.run([sys.executable, "-m", *command], check=True, cwd=REPOSITORY, stdout=output, stderr=subprocess.STDOUT)
    return time.perf_counter() - start


def held_out_folder(shared, work):
    """The held-out DeepFashion items' photos, one folder per item."""
    folder = work / "photos"
    shutil.rmtree(folder, ignore_errors=True)
    names = (pretrained.FOLDER / "split" / "deepfashion-held-out.csv").read_text().split()[1:]
    for name in names:
        item = name.rsplit("_", 1)[0]
        (folder / item).mkdir(parents=True, exist_ok=True)
        shutil.copy(shared / "deepfashion_subset" / "images" / name, folder / item / name)
    return folder, len(names)


def scores(work, model, name):
    out = work / "evaluation" / name
    run(["pnr_tf.evaluate", "--model", str(model), "--data-root", str(work / "data"), "--pairs", "pairs-test.csv",
         "--dataset", "market", "--no-inception", "--out", str(out)], work / f"evaluate_{name}.log")  # fmt: skip
    return json.loads((out / "metrics.json").read_text())


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", default=str(REPOSITORY.parent / "shared" / "data"))
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--work", default=str(REPOSITORY / "runs" / "finetune"))
    arguments = parser.parse_args()
    work = Path(arguments.work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    photos, count = held_out_folder(Path(arguments.shared), work)
    shutil.rmtree(work / "data", ignore_errors=True)
    run(["pnr_tf.prepare", str(photos), "--out", str(work / "data"), "--model", "pretrained", "--test-fraction", "0.5"], work / "prepare.log")
    print(f"{count} held-out DeepFashion photos: {(work / 'prepare.log').read_text().strip().splitlines()[-1]}", flush=True)
    rows = {"pretrained alone": scores(work, "pretrained", "pretrained")}
    common = ["pnr_tf.train", "--config", "configs/custom_cpu.yaml", "--set", f"data.root={work / 'data'}",
              "--set", "train.validate_every=100000", "--set", "train.num_steps=100000"]  # fmt: skip
    for name, extra in (("fine-tuned", []), ("from scratch", ["--set", "train.initial_weights="])):
        output = work / name.replace(" ", "_").replace("-", "_")
        shutil.rmtree(output, ignore_errors=True)
        with open(work / f"train_{output.name}.log", "w") as log:
            process = subprocess.Popen([sys.executable, "-m", *common, *extra, "--output-dir", str(output)], cwd=REPOSITORY,
                                       stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
            try:
                process.wait(timeout=arguments.minutes * 60)
            except subprocess.TimeoutExpired:
                process.send_signal(signal.SIGTERM)  # stops after the current step with a checkpoint
                process.wait()
        state = (output / "checkpoints" / "checkpoint").read_text()  # model_checkpoint_path: "ckpt-STEP"
        steps = int(re.search(r'model_checkpoint_path: "ckpt-(\d+)"', state).group(1))
        print(f"{name}: {steps} steps in {arguments.minutes:g} minutes", flush=True)
        rows[f"{name} ({arguments.minutes:g} min, {steps} steps)"] = scores(work, output, output.name)
    baselines = rows["pretrained alone"]["baselines"]
    print(f"\n{rows['pretrained alone']['num_pairs']} held-out pairs of {work / 'data'}:")
    print(f"  {'':28s} {'SSIM':>6s} {'mask-SSIM':>9s} {'L1':>6s} {'colour':>7s}")
    for name, values in [*rows.items(), *((f"baseline: {name}", values) for name, values in baselines.items())]:
        print(f"  {name:28s} {values['ssim']:6.3f} {values['mask_ssim']:9.3f} {values['l1']:6.3f} {values['colour_error']:7.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
