"""Distribution without a GPU: two local worker processes (two logical devices: test_two_replicas.py)."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import RECONSTRUCTION_ONLY
from tests.helpers import tiny_training_overrides

REPOSITORY = Path(__file__).resolve().parents[2]


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

    from pnr_tf.training.run_splits import load_samples
    from pnr_tf.training.trainer import Trainer
    from tests.helpers import tiny_training_config

    config = tiny_training_config(synthetic_root, train={"batch_size": 4})
    trainer = Trainer(config, tmp_path)
    samples = load_samples(config)
    shards, read = [], []
    for index in range(2):
        context = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=index, num_replicas_in_sync=2)
        shards.append(set(samples.shard(2, index).target_paths))
        batches = trainer.task.input_pipeline(samples, context).take(3 * len(samples) // 2)  # three epochs of this shard
        read.append({path.decode() for batch in batches for path in batch["target_path"].numpy()})
        assert all(batch["target_image"].shape[0] == 2 for batch in trainer.task.input_pipeline(samples, context).take(2))  # per replica
    assert read[0] <= shards[0] and read[1] <= shards[1] and read[0] and read[1]
    assert shards[0] | shards[1] == set(samples.target_paths)
    assert len(samples.shard(2, 0)) + len(samples.shard(2, 1)) == len(samples)


def worker_command(run, data_root, *overrides):
    command = [sys.executable, "-m", "pnr_tf.train", "--output-dir", str(run)]
    train = {"sample_every": 100, "checkpoint_every": 2, "report_decoded_files": "true"}
    # Reconstruction only: what this file checks (shards, resuming, a lost worker) does not depend on
    # the discriminators (test_two_replicas.py checks the adversarial step's reductions).
    for override in [*tiny_training_overrides(data_root, train=train, loss=RECONSTRUCTION_ONLY), *overrides]:
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


def test_two_workers_read_disjoint_shards_resume_from_the_chiefs_checkpoint_and_stop_when_one_dies(synthetic_root, tmp_path):
    # Two runs of two worker processes (each costs the suite ~45 s): the second resumes the first's
    # checkpoint and is then stopped by the loss of a worker.
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
    # Both workers resume from the chief's checkpoint and go on together, until the second one dies:
    # the chief stops (within the collective timeout) with a message instead of hanging.
    processes = start_workers(worker_command(run, data, "train.num_steps=100000", "train.collective_timeout_seconds=20",
                                             "train.checkpoint_every=1000"))  # fmt: skip
    seen = []
    try:
        for line in processes[1].stderr:
            seen.append(line)
            if line.startswith("step 6/"):
                processes[1].kill()
                break
        else:
            pytest.fail("the second worker never went on training:\n" + "".join(seen[-20:]))
        _, stderr = processes[0].communicate(timeout=240)
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
    for output in ("".join(seen), stderr):
        assert "resumed from" in output and "ckpt-4 at step 4" in output, output[-3000:]
    assert "step 6/100000" in stderr
    assert processes[0].returncode == 1, stderr[-3000:]
    assert "error: lost contact with another worker" in stderr and "resume from the chief's last checkpoint" in stderr
