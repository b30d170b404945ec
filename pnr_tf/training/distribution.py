"""Which devices and workers train: the strategy, and which worker writes the run directory."""

import json
import os

import tensorflow as tf


def make_strategy(collective_timeout_seconds=None):
    """MultiWorkerMirroredStrategy when TF_CONFIG names several workers, else MirroredStrategy over
    all visible GPUs, or the one CPU when there are none.

    With several workers, collectives time out after collective_timeout_seconds: a worker that died
    makes the others fail their step (tf.errors.DeadlineExceededError / UnavailableError) instead of
    waiting forever.
    """
    cluster = json.loads(os.environ.get("TF_CONFIG", "{}")).get("cluster", {})
    if len(cluster.get("worker", [])) + len(cluster.get("chief", [])) > 1:
        options = tf.distribute.experimental.CommunicationOptions(timeout_seconds=collective_timeout_seconds)
        return tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
    gpus = tf.config.list_logical_devices("GPU")
    return tf.distribute.MirroredStrategy([device.name for device in gpus] or ["/cpu:0"])


def is_chief(strategy):
    """True on the one worker that writes outputs: the chief, else worker 0; always on one machine."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.cluster_spec().as_dict():
        return True
    if resolver.task_type == "chief":
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return not has_chief and resolver.task_type == "worker" and resolver.task_id == 0
