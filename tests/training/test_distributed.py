"""Distribution without a GPU: two logical CPU devices, and two local worker processes."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPOSITORY = Path(__file__).resolve().parents[2]


def test_two_replicas_apply_the_same_update_as_one_device(synthetic_root, tmp_path):
    environment = dict(os.environ, PYTHONPATH=str(REPOSITORY))
    script = Path(__file__).with_name("two_device_step.py")
    result = subprocess.run([sys.executable, str(script), str(synthetic_root), str(tmp_path)], env=environment, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    arrays = np.load(tmp_path / "result.npz")
    assert (int(arrays["one_num_replicas"]), int(arrays["two_num_replicas"])) == (1, 2)
    names = sorted(name[len("one_"):] for name in arrays.files if name.startswith("one_") and "num_replicas" not in name)
    gradients = [name for name in names if name.startswith("gradient")]
    assert any(name.startswith("gradient0") for name in gradients) and any(name.startswith("gradient1") for name in gradients)
    # Step 0: the same inputs and weights. Loss values agree to rounding and catch a wrong reduction (a raw
    # mean would double them on two replicas). The all-reduced gradients of two half batches equal one
    # device's to 1e-2 of their largest entry, not to rounding: synchronized batch norm sums its moments in
    # another order (1e-7 relative), and the IRLS weights 1 / max(|r|, delta) amplify that about a
    # thousandfold (measured 1.9e-3 here; with instance norm, or p = 2, the gradients agree to 3e-7 / 9e-6).
    # A doubled or a missing reduction is off by 50-100 %.
    # Step 1 starts from step 0's Adam update, about lr * sign(g): near-zero gradients can flip sign with the
    # summation order and move a weight by 2 lr, so step 1 agrees to 5e-3 (losses, measured 9e-4) and 0.1 of
    # the largest gradient (measured 3.4e-2): still far from a factor of two.
    for name in (name for name in names if name.startswith("metric")):
        tolerance = 1e-5 if name.startswith("metric0") else 5e-3
        np.testing.assert_allclose(arrays[f"two_{name}"], arrays[f"one_{name}"], rtol=tolerance, err_msg=name)
    for name in gradients:
        one, two = arrays[f"one_{name}"], arrays[f"two_{name}"]
        tolerance = 1e-2 if name.startswith("gradient0") else 0.1
        np.testing.assert_allclose(two, one, rtol=0, atol=tolerance * np.abs(one).max(), err_msg=name)
    # The shipped optimizer (default epsilon) received exactly those all-reduced gradients: after its first
    # update Adam's moments are m = (1 - beta_1) g and v = (1 - beta_2) g^2, which, unlike the update itself
    # (about lr * sign(g)), show the gradient's scale and sign everywhere.
    beta_1, beta_2 = arrays["one_beta"]
    for setting in ("one", "two"):
        for step in (0, 1):
            count = len([name for name in gradients if name.startswith(f"gradient{step}_")])
            for index in range(count):
                gradient = arrays[f"{setting}_gradient{step}_{index}"].astype(np.float64)
                scale = np.abs(gradient).max()
                np.testing.assert_allclose(arrays[f"{setting}_momentum{step}_{index}"], (1 - beta_1) * gradient,
                                           rtol=1e-4, atol=1e-5 * (1 - beta_1) * scale, err_msg=f"{setting} momentum {step} {index}")  # fmt: skip
                np.testing.assert_allclose(arrays[f"{setting}_velocity{step}_{index}"], (1 - beta_2) * gradient**2,
                                           rtol=1e-3, atol=1e-5 * (1 - beta_2) * scale**2, err_msg=f"{setting} velocity {step} {index}")  # fmt: skip


def free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for sock in sockets:
        sock.bind(("127.0.0.1", 0))
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


def test_each_input_pipeline_reads_only_its_shard(synthetic_root, tmp_path):
    import tensorflow as tf

    from pnr_tf.training.trainer import Trainer
    from pnr_tf.training.trainer import load_samples
    from tests.helpers import tiny_training_config

    config = tiny_training_config(synthetic_root, train={"batch_size": 4})
    trainer = Trainer(config, tmp_path)
    samples = load_samples(config)
    shards, read = [], []
    for index in range(2):
        context = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=index, num_replicas_in_sync=2)
        shards.append(set(samples.shard(2, index).target_paths))
        batches = trainer.input_pipeline(samples, context).take(3 * len(samples) // 2)  # three epochs of this shard
        read.append({path.decode() for batch in batches for path in batch["target_path"].numpy()})
        assert all(batch["target_image"].shape[0] == 2 for batch in trainer.input_pipeline(samples, context).take(2))  # per replica
    assert read[0] <= shards[0] and read[1] <= shards[1] and read[0] and read[1]
    assert shards[0] | shards[1] == set(samples.target_paths)
    assert len(samples.shard(2, 0)) + len(samples.shard(2, 1)) == len(samples)


def worker_command(run, data_root, *overrides):
    command = [sys.executable, "-m", "pnr_tf.train", "--output-dir", str(run)]
    for override in [
        f"data.root={data_root}", "model.base_filters=4", "model.num_encoder_blocks=1", "model.num_decoder_blocks=1",
        "model.pose_dim=4", "model.num_iterations=2", "model.discriminator_filters=4", "model.discriminator_blocks=1",
        "loss.perceptual_weight=0", "train.batch_size=4", "train.log_every=1", "train.sample_every=100",
        "train.checkpoint_every=2", "train.report_decoded_files=true", *overrides,
    ]:  # fmt: skip
        command += ["--set", override]
    return command


def start_workers(command, count=2):
    workers = [f"127.0.0.1:{port}" for port in free_ports(count)]
    processes = []
    for index in range(count):
        tf_config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        environment = dict(os.environ, PYTHONPATH=str(REPOSITORY), TF_CONFIG=json.dumps(tf_config))
        processes.append(subprocess.Popen(command, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    return processes


def finish(processes, timeout=600):
    outputs = []
    try:
        for process in processes:
            outputs.append(process.communicate(timeout=timeout))
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
    return outputs


def test_two_workers_read_disjoint_shards_and_resume_from_the_chiefs_checkpoint(synthetic_root, tmp_path):
    import shutil

    from pnr_tf.data.annotations import read_pairs

    data = tmp_path / "data"
    shutil.copytree(synthetic_root, data)  # a private copy: what a cluster's shared storage would hold
    run = tmp_path / "run"
    outputs = finish(start_workers(worker_command(run, data, "train.num_steps=4")))
    decoded = []
    for index, (_, stderr) in enumerate(outputs):
        assert "step 4/4" in stderr, stderr[-3000:]
        assert f"input pipeline {index + 1} of 2 reads rows {index}::2" in stderr
        decoded.append({Path(path).name for path in json.loads(stderr.split("decoded files: ", 1)[1].splitlines()[0])})
    targets = [target for _, target in read_pairs(data / "pairs.csv")]
    shards = [set(targets[index::2]) for index in range(2)]
    assert decoded[0] and decoded[1]
    assert decoded[0] <= shards[0] and decoded[1] <= shards[1]  # each read only its own half of the pair list
    assert (run / "checkpoints" / "ckpt-4.index").is_file() and not list(tmp_path.glob("pnr_worker_*"))
    # Both workers resume from the chief's checkpoint and go on together.
    outputs = finish(start_workers(worker_command(run, data, "train.num_steps=6")))
    for _, stderr in outputs:
        assert "resumed from" in stderr and "ckpt-4 at step 4" in stderr and "step 6/6" in stderr, stderr[-3000:]


def test_a_worker_that_dies_stops_the_others_with_a_message(synthetic_root, tmp_path):
    processes = start_workers(worker_command(tmp_path / "run", synthetic_root, "train.num_steps=100000", "train.collective_timeout_seconds=20",
                                             "train.checkpoint_every=1000"))  # fmt: skip
    try:
        for line in processes[1].stderr:
            if line.startswith("step 3/"):
                processes[1].kill()
                break
        else:
            pytest.fail("the second worker never started training")
        _, stderr = processes[0].communicate(timeout=240)
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
    assert processes[0].returncode == 1, stderr[-3000:]
    assert "error: lost contact with another worker" in stderr and "resume from the chief's last checkpoint" in stderr
