"""Run as a script by test_two_replicas.py: two training steps on one CPU device and on two logical CPU
devices (the split must be configured before TensorFlow starts), with the shipped optimizer (Adam,
default epsilon). Saves, per setting: the losses, the all-reduced gradients each step applies
(`Trainer.gradients`), and Adam's moment slots after the step that used them."""

import sys

import numpy as np
import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

from pnr_tf.training.trainer import Trainer  # noqa: E402
from pnr_tf.training.trainer import load_samples  # noqa: E402
from tests.helpers import tiny_training_config  # noqa: E402

data_root, output = sys.argv[1], sys.argv[2]
# Step 0 is reconstruction only, so the generator's applied gradient is exactly Trainer.gradients';
# step 1 trains the discriminators, whose applied gradient is likewise.
config = tiny_training_config(data_root, loss={"adversarial_warmup_steps": 1}, train={"ema_decay": 0.0})
arrays = {}


def slots(optimizer, kind):
    return [np.array(variable) for variable in optimizer.variables if variable.name.endswith(f"_{kind}")]


for name, devices in (("one", ["/cpu:0"]), ("two", ["/cpu:0", "/cpu:1"])):
    trainer = Trainer(config, f"{output}/{name}", strategy=tf.distribute.MirroredStrategy(devices))
    arrays[f"{name}_num_replicas"] = np.array(trainer.strategy.num_replicas_in_sync)
    iterator = iter(trainer.dataset(load_samples(config), 0))
    for step, (part, optimizer) in enumerate((("generator", trainer.optimizers.generator), ("discriminator", trainer.optimizers.discriminator))):
        batch = next(iterator)
        applied = trainer.gradients(batch)[part]
        for key, value in trainer.train_step(batch).items():
            arrays[f"{name}_metric{step}_{key}"] = np.array(value)
        for index, gradient in enumerate(applied):
            arrays[f"{name}_gradient{step}_{index}"] = np.array(gradient)
        for kind in ("momentum", "velocity"):
            for index, value in enumerate(slots(optimizer, kind)):
                arrays[f"{name}_{kind}{step}_{index}"] = value
    arrays[f"{name}_beta"] = np.array([trainer.optimizers.generator.beta_1, trainer.optimizers.generator.beta_2])
np.savez(f"{output}/result.npz", **arrays)
