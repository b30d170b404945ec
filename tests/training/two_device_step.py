"""Run as a script by test_distributed.py: one training step on one CPU device and on two logical
CPU devices (the split must be configured before TensorFlow starts), weights saved for comparison."""

import sys

import numpy as np
import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

from pnr_tf.training.trainer import Trainer  # noqa: E402
from pnr_tf.training.trainer import load_samples  # noqa: E402
from tests.helpers import tiny_training_config  # noqa: E402

data_root, output = sys.argv[1], sys.argv[2]
config = tiny_training_config(data_root)
arrays = {}
for name, devices in (("one", ["/cpu:0"]), ("two", ["/cpu:0", "/cpu:1"])):
    trainer = Trainer(config, f"{output}/{name}", strategy=tf.distribute.MirroredStrategy(devices))
    # Adam's first step is lr * g / (|g| + epsilon): with the default epsilon it is lr * sign(g), so a
    # near-zero gradient whose sign follows summation order (and the CPU's kernels) would move a weight
    # by 2 lr. A large epsilon makes the step smooth in g, so the weights compare the reduced gradients.
    trainer.optimizers.generator.epsilon = trainer.optimizers.discriminator.epsilon = 1.0
    batch = next(iter(trainer._dataset(load_samples(config), 0)))
    metrics = trainer._distributed_step_function()(batch)
    arrays[f"{name}_num_replicas"] = np.array(trainer.strategy.num_replicas_in_sync)
    for key, value in metrics.items():
        arrays[f"{name}_metric_{key}"] = np.array(value)
    for model in ("generator", "appearance_discriminator", "pose_discriminator"):
        for index, variable in enumerate(getattr(trainer.models, model).variables):
            arrays[f"{name}_{model}_{index}"] = np.array(variable)
np.savez(f"{output}/result.npz", **arrays)
