"""Distribution without a GPU: two logical CPU devices, and two local worker processes."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np

REPOSITORY = Path(__file__).resolve().parents[2]


def test_two_replicas_apply_the_same_update_as_one_device(synthetic_root, tmp_path):
    environment = dict(os.environ, PYTHONPATH=str(REPOSITORY))
    script = Path(__file__).with_name("two_device_step.py")
    result = subprocess.run([sys.executable, str(script), str(synthetic_root), str(tmp_path)], env=environment, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    arrays = np.load(tmp_path / "result.npz")
    assert (int(arrays["one_num_replicas"]), int(arrays["two_num_replicas"])) == (1, 2)
    names = sorted(name[len("one_"):] for name in arrays.files if name.startswith("one_") and name != "one_num_replicas")
    assert any(name.startswith("metric_") for name in names) and len(names) > 50
    # Loss values catch a wrong reduction (a raw mean would double them on two replicas).
    for name in (name for name in names if name.startswith("metric_")):
        np.testing.assert_allclose(arrays[f"two_{name}"], arrays[f"one_{name}"], rtol=1e-5, err_msg=name)
    # The script runs Adam with epsilon = 1, so a step is lr * g / (|g| + 1): smooth in g, and not
    # scale-invariant, so summed instead of averaged gradients would show here too (about lr * |g|).
    learning_rate = 2e-3
    for name in (name for name in names if not name.startswith("metric_")):
        np.testing.assert_allclose(arrays[f"two_{name}"], arrays[f"one_{name}"], rtol=0, atol=1e-3 * learning_rate, err_msg=name)


def free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for sock in sockets:
        sock.bind(("127.0.0.1", 0))
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


def test_multi_worker_strategy_with_two_local_workers_runs_to_the_end(synthetic_root, tmp_path):
    workers = [f"127.0.0.1:{port}" for port in free_ports(2)]
    overrides = [
        f"data.root={synthetic_root}", "model.base_filters=4", "model.num_encoder_blocks=1", "model.num_decoder_blocks=1",
        "model.pose_dim=4", "model.num_iterations=2", "model.discriminator_filters=4", "model.discriminator_blocks=1",
        "loss.perceptual_weight=0", "train.batch_size=4", "train.num_steps=3", "train.log_every=1",
        "train.sample_every=100", "train.checkpoint_every=100",
    ]  # fmt: skip
    command = [sys.executable, "-m", "pnr_tf.train", "--output-dir", str(tmp_path / "run")]
    for override in overrides:
        command += ["--set", override]
    processes = []
    for index in range(2):
        tf_config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        environment = dict(os.environ, PYTHONPATH=str(REPOSITORY), TF_CONFIG=json.dumps(tf_config))
        processes.append(subprocess.Popen(command, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outputs = []
    try:
        for process in processes:
            outputs.append(process.communicate(timeout=600))
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
    for process, (stdout, stderr) in zip(processes, outputs):
        assert process.returncode == 0, stderr[-3000:]
        assert "step 3/3" in stderr
    assert (tmp_path / "run" / "generator.keras").is_file()  # written by the chief (worker 0) only
    assert (tmp_path / "run" / "checkpoints" / "checkpoint").is_file()
