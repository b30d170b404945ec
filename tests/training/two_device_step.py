"""Run as a script by test_two_replicas.py (the device split must be configured before TensorFlow starts).

1. One training step, adversarial terms and discriminators included, on one CPU device and on two
   logical CPU devices, with the shipped optimizer (Adam, default epsilon). Saves, per setting: the
   losses, and Adam's moment slots of both optimizers. The step is each optimizer's first update, after
   which Adam's first moment is (1 - beta_1) g: the all-reduced gradient the step applied, read from
   what shipped (`Trainer.train_step`) without tracing a second, gradient-only function. One step, not
   one per optimizer: tracing the distributed step is nearly all of this script's time.
2. The model's batch normalization on two replicas, each given half of a batch: saves its outputs in
   training mode and its updated moving statistics, for the test to compare with the whole batch's.
"""

import sys

import numpy as np
import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

from pnr_tf.layers.blocks import make_normalization  # noqa: E402
from pnr_tf.training.run_splits import load_samples  # noqa: E402
from pnr_tf.training.trainer import Trainer  # noqa: E402
from tests.helpers import TINY_TRAINING  # noqa: E402
from tests.helpers import tiny_training_config  # noqa: E402

data_root, output = sys.argv[1], sys.argv[2]
# Adversarial from step 0 (the default schedule): the generator and both discriminators update in it.
# Instance norm: with batch norm the moments are summed across replicas in another order, and that
# rounding, amplified through the networks' backward passes, moves the gradients by up to 7 % of their
# largest entry (measured), which would hide a reduction off by a part in ten; part 2 checks batch norm.
config = tiny_training_config(data_root, model={**TINY_TRAINING["model"], "norm": "instance"},
                              loss={"adversarial_warmup_steps": 0}, train={"ema_decay": 0.0})  # fmt: skip
arrays = {}


def slots(optimizer, kind):
    return [np.array(variable) for variable in optimizer.variables if variable.name.endswith(f"_{kind}")]


for name, devices in (("one", ["/cpu:0"]), ("two", ["/cpu:0", "/cpu:1"])):
    trainer = Trainer(config, f"{output}/{name}", strategy=tf.distribute.MirroredStrategy(devices))
    arrays[f"{name}_num_replicas"] = np.array(trainer.strategy.num_replicas_in_sync)
    for key, value in trainer.train_step(next(iter(trainer.dataset(load_samples(config), 0)))).items():
        arrays[f"{name}_metric_{key}"] = np.array(value)
    for role in ("generator", "discriminator"):
        optimizer = getattr(trainer.task.optimizers, role)
        assert int(optimizer.iterations.numpy()) == 1, f"the step must be the {role} optimizer's first update"
        for kind in ("momentum", "velocity"):
            for index, value in enumerate(slots(optimizer, kind)):
                arrays[f"{name}_{kind}_{role}_{index}"] = value
    arrays[f"{name}_beta"] = np.array([trainer.task.optimizers.generator.beta_1, trainer.task.optimizers.generator.beta_2])

strategy = trainer.strategy  # the two-device one: a second strategy on the same devices reuses collective keys
batch = np.random.default_rng(0).normal(3.0, 2.0, (4, 5, 3, 2)).astype(np.float32)
with strategy.scope():
    normalization = make_normalization("batch")
    normalization.build(batch.shape)
halves = strategy.experimental_distribute_values_from_function(lambda context: batch[2 * context.replica_id_in_sync_group:][:2])
outputs = tf.function(lambda inputs: strategy.run(lambda half: normalization(half, training=True), args=(inputs,)))(halves)
arrays["batch_norm_input"] = batch
arrays["batch_norm_output"] = np.concatenate([np.array(value) for value in strategy.experimental_local_results(outputs)])
arrays["batch_norm_moving_mean"] = np.array(normalization.moving_mean)
arrays["batch_norm_moving_variance"] = np.array(normalization.moving_variance)
np.savez(f"{output}/result.npz", **arrays)
