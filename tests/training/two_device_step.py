"""Run as a script by test_two_replicas.py: two training steps on one CPU device and on two logical CPU
devices (the split must be configured before TensorFlow starts), with the shipped optimizer (Adam,
default epsilon). Saves, per setting: the losses, and Adam's moment slots after each step. Each step
is some optimizer's first update (step 0 the generator's, step 1 the discriminators'), after which
Adam's first moment is (1 - beta_1) g: the all-reduced gradient the step applied, read from what
shipped (`Trainer.train_step`) without tracing a second, gradient-only function."""

import sys

import numpy as np
import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

from pnr_tf.training.trainer import Trainer  # noqa: E402
from pnr_tf.data.run_splits import load_samples  # noqa: E402
from tests.helpers import tiny_training_config  # noqa: E402

data_root, output = sys.argv[1], sys.argv[2]
# Step 0 is reconstruction only (the generator's first update); step 1 the discriminators' first update.
config = tiny_training_config(data_root, loss={"adversarial_warmup_steps": 1}, train={"ema_decay": 0.0})
arrays = {}


def slots(optimizer, kind):
    return [np.array(variable) for variable in optimizer.variables if variable.name.endswith(f"_{kind}")]


for name, devices in (("one", ["/cpu:0"]), ("two", ["/cpu:0", "/cpu:1"])):
    trainer = Trainer(config, f"{output}/{name}", strategy=tf.distribute.MirroredStrategy(devices))
    arrays[f"{name}_num_replicas"] = np.array(trainer.strategy.num_replicas_in_sync)
    iterator = iter(trainer.dataset(load_samples(config), 0))
    for step, optimizer in enumerate((trainer.optimizers.generator, trainer.optimizers.discriminator)):
        for key, value in trainer.train_step(next(iterator)).items():
            arrays[f"{name}_metric{step}_{key}"] = np.array(value)
        assert int(optimizer.iterations.numpy()) == 1, "each step must be the first update of its optimizer"
        for kind in ("momentum", "velocity"):
            for index, value in enumerate(slots(optimizer, kind)):
                arrays[f"{name}_{kind}{step}_{index}"] = value
    arrays[f"{name}_beta"] = np.array([trainer.optimizers.generator.beta_1, trainer.optimizers.generator.beta_2])
np.savez(f"{output}/result.npz", **arrays)
