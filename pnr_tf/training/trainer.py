"""The training driver: strategy, data, the loop, progress, summaries, sample grids and checkpoints.

Output directory layout:
    config.yaml          the resolved config of the run
    sessions.jsonl       one line per start: the regression solver it resolved to, devices, versions
    checkpoints/         tf.train.CheckpointManager (models, both optimizers, step, RNG state)
    logs/                TensorBoard scalars (every loss term, learning rate) and image grids
    samples/step_N.png   source | source pose | target pose | generated | target, every sample_every steps
    generator.keras      the trained generator, for keras.models.load_model after `import pnr_tf`

A run resumes from the latest checkpoint in its output directory. SIGINT / SIGTERM stop after the
current step with a checkpoint; TensorFlow writes a checkpoint to temporary files and renames them,
and the state file is updated last, so a kill mid-write leaves the previous checkpoint restorable.
"""

import json
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

import cv2
import keras
import numpy as np
import tensorflow as tf

from pnr_tf.config import check_data_paths
from pnr_tf.config import to_yaml
from pnr_tf.data.pipeline import make_dataset
from pnr_tf.data.pipeline import pair_samples
from pnr_tf.data.pipeline import single_image_samples
from pnr_tf.data.synthetic import write_synthetic_dataset
from pnr_tf.models.factory import build_discriminator
from pnr_tf.models.factory import build_generator
from pnr_tf.ops.solvers import describe_solver
from pnr_tf.progress import ProgressBar
from pnr_tf.training.gan_step import GANModels
from pnr_tf.training.gan_step import GANOptimizers
from pnr_tf.training.gan_step import step_inputs
from pnr_tf.training.gan_step import train_step
from pnr_tf.training.perceptual import build_vgg19_features


def make_strategy():
    """MultiWorkerMirroredStrategy when TF_CONFIG names several workers, else MirroredStrategy over
    all visible GPUs, or the one CPU when there are none."""
    cluster = json.loads(os.environ.get("TF_CONFIG", "{}")).get("cluster", {})
    if len(cluster.get("worker", [])) + len(cluster.get("chief", [])) > 1:
        return tf.distribute.MultiWorkerMirroredStrategy()
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


def prepare_data(config):
    """Writes the built-in synthetic dataset when the config asks for it and it is absent."""
    data = config.data
    if data.synthetic and not data.path(data.annotation_file).is_file():
        write_synthetic_dataset(data.root, data.synthetic_identities, data.synthetic_images_per_identity, seed=config.train.seed)
        print(f"wrote the built-in synthetic dataset to {data.root}", file=sys.stderr)
    check_data_paths(config)


def load_samples(config, pairs_file=None):
    data = config.data
    size = (data.image_height, data.image_width)
    if config.train.mode == "unsupervised" and pairs_file is None:
        return single_image_samples(data.path(data.annotation_file), data.path(data.image_dir), size, data.on_bad_sample)
    return pair_samples(
        data.path(pairs_file or data.pairs_file), data.path(data.annotation_file), data.path(data.image_dir), size, data.on_bad_sample
    )


def variables_by_path(owner):
    """Every variable of a Keras model or optimizer, keyed by its path, for tf.train.Checkpoint.

    TensorFlow's object-graph tracking does not see layers held in Keras 3 lists, so checkpointing
    the model object silently drops e.g. their batch-norm statistics; an explicit mapping keeps all
    (weights, batch-norm statistics, the row-dropout RNG state, optimizer slots and step count).
    """
    mapping = {}
    for variable in owner.variables:
        # Full paths are stable: the models and optimizers all have explicit names.
        key = variable.path.replace("/", ".")
        if key in mapping:
            raise ValueError(f"two variables of {owner.name} share the path {variable.path}")
        mapping[key] = variable
    return mapping


def pose_picture(heatmaps):
    """(..., H, W, 18) heatmaps -> (..., H, W, 3) in [-1, 1] for grids."""
    return np.repeat(np.max(heatmaps, axis=-1, keepdims=True), 3, axis=-1) * 2.0 - 1.0


def image_grid(batch, generated, unsupervised=False):
    """Rows of source | source pose | target pose | generated | target, uint8 RGB."""
    inputs, target = step_inputs(batch, unsupervised)
    source = np.asarray(batch["source_image"][:, 0])
    rows = np.concatenate(
        [
            source,
            pose_picture(np.asarray(batch["source_pose"][:, 0])),
            pose_picture(np.asarray(inputs["target_pose"])),
            np.asarray(generated),
            np.asarray(target),
        ],
        axis=2,
    )
    return ((np.concatenate(list(rows), axis=0) + 1.0) * 127.5).clip(0, 255).astype(np.uint8)


class Trainer:
    """Builds everything under the strategy scope, then `fit()` runs or resumes the configured steps."""

    def __init__(self, config, output_dir, strategy=None, random_vgg=False):
        self.config = config
        self.output_dir = Path(output_dir)
        self.strategy = strategy or make_strategy()
        self.chief = is_chief(self.strategy)
        train = config.train
        if train.mixed_precision:
            keras.mixed_precision.set_global_policy("mixed_float16")
        self.unsupervised = train.mode == "unsupervised"
        keras.utils.set_random_seed(train.seed)
        with self.strategy.scope():
            features = None
            if config.loss.perceptual_weight > 0:
                features = build_vgg19_features(config.loss.vgg19_weights, random_weights=random_vgg)
            self.models = GANModels(
                generator=build_generator(config.model, train.row_keep_probability, seed=train.seed),
                appearance_discriminator=build_discriminator(config.model, "appearance_discriminator"),
                pose_discriminator=build_discriminator(config.model, "pose_discriminator"),
                features=features,
            )
            height, width = config.data.image_height, config.data.image_width
            self.models.generator(
                {
                    "source_image": tf.zeros((1, 1, height, width, 3)),
                    "source_pose": tf.zeros((1, 1, height, width, 18)),
                    "target_pose": tf.zeros((1, height, width, 18)),
                }
            )
            self.models.appearance_discriminator(tf.zeros((1, height, width, 6)))
            self.models.pose_discriminator(tf.zeros((1, height, width, 21)))
            self.optimizers = GANOptimizers(
                generator=self._optimizer("generator_optimizer"), discriminator=self._optimizer("discriminator_optimizer")
            )
            # Slots must exist before the first distributed step (Keras 3 under MirroredStrategy).
            self.optimizers.generator.build(self.models.generator.trainable_variables)
            self.optimizers.discriminator.build(
                self.models.appearance_discriminator.trainable_variables + self.models.pose_discriminator.trainable_variables
            )
        self.checkpoint = tf.train.Checkpoint(
            **{
                name: variables_by_path(owner)
                for name, owner in (
                    ("generator", self.models.generator),
                    ("appearance_discriminator", self.models.appearance_discriminator),
                    ("pose_discriminator", self.models.pose_discriminator),
                    ("generator_optimizer", self.optimizers.generator),
                    ("discriminator_optimizer", self.optimizers.discriminator),
                )
            }
        )
        # Only the chief keeps checkpoints; other workers write theirs to a throw-away folder.
        checkpoint_dir = self.output_dir / "checkpoints" if self.chief else Path(tempfile.mkdtemp(prefix="pnr_worker_"))
        self.manager = tf.train.CheckpointManager(self.checkpoint, str(checkpoint_dir), max_to_keep=train.max_checkpoints)
        self.restored_from = self.manager.latest_checkpoint
        if self.restored_from:
            self.checkpoint.restore(self.restored_from).assert_existing_objects_matched()
        self._stop_signal = None

    def _optimizer(self, name):
        train = self.config.train
        optimizer = keras.optimizers.Adam(train.learning_rate, beta_1=train.beta_1, beta_2=train.beta_2, name=name)
        if train.mixed_precision:
            optimizer = keras.optimizers.LossScaleOptimizer(optimizer, name=f"{name}_loss_scale")
        return optimizer

    @property
    def step(self):
        """Completed steps: the generator optimizer counts one update per step."""
        return int(self.optimizers.generator.iterations.numpy())

    def _distributed_step_function(self):
        global_batch_size = self.config.train.batch_size

        def replica_step(batch):
            return train_step(self.models, self.optimizers, batch, self.config.loss, global_batch_size, self.unsupervised)

        @tf.function
        def distributed_step(batch):
            per_replica = self.strategy.run(replica_step, args=(batch,))
            return {name: self.strategy.reduce("SUM", value, axis=None) for name, value in per_replica.items()}

        return distributed_step

    def _dataset(self, samples, start_step):
        # Skipping what earlier runs consumed keeps the data order of an uninterrupted run.
        train = self.config.train
        dataset = make_dataset(
            samples,
            train.batch_size,
            (self.config.data.image_height, self.config.data.image_width),
            seed=train.seed,
            sigma=self.config.data.heatmap_sigma,
            skip_examples=start_step * train.batch_size,
        )
        return self.strategy.experimental_distribute_dataset(dataset)

    def _handle_signal(self, number, frame):
        self._stop_signal = number

    def session_record(self):
        """What this process trains with, beyond the config: the resolved solver, devices, versions."""
        regression = self.models.generator.regression
        return {
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "start_step": self.step,
            "solver_requested": regression.solver,
            "solver": regression.resolved_solver,
            "solver_detail": describe_solver(regression.resolved_solver),
            "num_replicas": self.strategy.num_replicas_in_sync,
            "devices": [device.name for device in tf.config.list_logical_devices()],
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
        }

    def fit(self, samples=None):
        """Trains to train.num_steps (resuming), returns the path of generator.keras (or None if stopped)."""
        config, train = self.config, self.config.train
        self.output_dir.mkdir(parents=True, exist_ok=True)
        record = self.session_record()
        print(f"regression solver: {record['solver_detail']}", file=sys.stderr)
        if self.chief:
            (self.output_dir / "config.yaml").write_text(to_yaml(config))
            # One line per start (a run may resume on another machine): sessions.jsonl.
            with (self.output_dir / "sessions.jsonl").open("a") as sessions:
                sessions.write(json.dumps(record) + "\n")
        if samples is None:
            prepare_data(config)
            samples = load_samples(config)
        if samples.num_skipped:
            print(f"skipped {samples.num_skipped} bad samples (data.on_bad_sample: skip)", file=sys.stderr)
        start = self.step
        if self.restored_from:
            print(f"resumed from {self.restored_from} at step {start}", file=sys.stderr)
        preview = self._preview_batch(samples)
        writer = tf.summary.create_file_writer(str(self.output_dir / "logs")) if self.chief else tf.summary.create_noop_writer()
        step_function = self._distributed_step_function()
        previous_handlers = {number: signal.signal(number, self._handle_signal) for number in (signal.SIGINT, signal.SIGTERM)}
        progress = ProgressBar(train.num_steps, start)
        try:
            iterator = iter(self._dataset(samples, start))
            while self.step < train.num_steps:
                metrics = {name: float(value) for name, value in step_function(next(iterator)).items()}
                step = self.step
                if not all(np.isfinite(list(metrics.values()))):
                    # The weights now hold the bad update: stop before any checkpoint keeps them.
                    terms = ", ".join(f"{name}={value:.4g}" for name, value in sorted(metrics.items()))
                    raise FloatingPointError(
                        f"non-finite loss at step {step} ({terms}); nothing of this step was saved, the last "
                        f"checkpoint is {self.manager.latest_checkpoint or 'none'}. A lower train.learning_rate, or "
                        "a look at the data (pnr_tf.data.pipeline checks it), is the usual cure."
                    )
                if step % train.log_every == 0 or step == train.num_steps:
                    progress.update(step, metrics)
                    with writer.as_default(step=step):
                        for name, value in metrics.items():
                            tf.summary.scalar(f"loss/{name}", value)
                        tf.summary.scalar("learning_rate", train.learning_rate)
                if step % train.sample_every == 0 or step == train.num_steps:
                    self.write_samples(preview, step, writer)
                if step % train.checkpoint_every == 0:
                    self.manager.save(checkpoint_number=step)
                if self._stop_signal is not None:
                    self.manager.save(checkpoint_number=step)
                    print(f"\nstopped by signal {self._stop_signal} at step {step}; checkpoint saved, run again to resume", file=sys.stderr)
                    return None
        finally:
            progress.close()
            for number, handler in previous_handlers.items():
                signal.signal(number, handler)
            writer.flush()
        if self.manager.latest_checkpoint is None or not self.manager.latest_checkpoint.endswith(f"-{self.step}"):
            self.manager.save(checkpoint_number=self.step)
        model_path = self.output_dir / "generator.keras"
        if self.chief:
            self.models.generator.save(model_path)
        return model_path

    def _preview_batch(self, samples):
        """A fixed batch of up to 4 examples (seeded shuffle, so sources differ) for the sample grids."""
        data = self.config.data
        dataset = make_dataset(
            samples, min(4, len(samples)), (data.image_height, data.image_width), repeat=False,
            seed=self.config.train.seed + 1, sigma=data.heatmap_sigma,
        )  # fmt: skip
        return {name: tensor.numpy() for name, tensor in next(iter(dataset)).items()}

    def write_samples(self, batch, step, writer):
        inputs, _ = step_inputs(batch, self.unsupervised)
        generated = self.models.generator(inputs, training=False)
        grid = image_grid(batch, generated, self.unsupervised)
        if not self.chief:
            return
        samples_dir = self.output_dir / "samples"
        samples_dir.mkdir(exist_ok=True)
        cv2.imwrite(str(samples_dir / f"step_{step:06d}.png"), grid[..., ::-1])
        with writer.as_default(step=step):
            tf.summary.image("samples", grid[None], max_outputs=1)
