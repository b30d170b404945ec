"""The training driver: strategy, data, schedule, the loop, validation, summaries, samples, checkpoints.

Output directory layout:
    config.yaml          the resolved config of the run
    sessions.jsonl       one line per start: the regression solver it resolved to, devices, versions
    checkpoints/         tf.train.CheckpointManager (models, the weight average, both optimizers, RNG state)
    logs/                TensorBoard: every loss term, the adversarial schedule, validation SSIM / L1
                         (and the baselines, once), image grids
    samples/step_N.png   source | source pose | target pose | generated | target, every sample_every steps
    validation.jsonl     step, SSIM, L1 of each validation (data.validation_pairs); the first line the baselines
    generator.keras      the generator (its weight average when train.ema_decay > 0), written with every
                         checkpoint and on SIGINT / SIGTERM, so a run stopped midway is usable
    generator_best.keras the same at the best validation SSIM so far
    split/               pairs-{train,validation,test}.csv when data.*_identities hold identities out

A run resumes from the latest checkpoint in its output directory. SIGINT / SIGTERM stop after the
current step with a checkpoint; TensorFlow writes a checkpoint to temporary files and renames them,
and the state file is updated last, so a kill mid-write leaves the previous checkpoint restorable.
"""

import contextlib
import json
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from pnr_tf import files
from pnr_tf.config import ConfigError
from pnr_tf.config import check_data_paths
from pnr_tf.config import load_config
from pnr_tf.config import resume_changes
from pnr_tf.config import to_yaml
from pnr_tf.data.annotations import read_annotations
from pnr_tf.data.annotations import read_pairs
from pnr_tf.data.annotations import write_pairs
from pnr_tf.data.datasets import convention
from pnr_tf.data.make_pairs import has_torso
from pnr_tf.data.make_pairs import split_rows_by_identity
from pnr_tf.data.pipeline import BadSampleError
from pnr_tf.data.pipeline import decode_failure_message
from pnr_tf.data.pipeline import make_dataset
from pnr_tf.data.pipeline import pair_samples
from pnr_tf.data.pipeline import single_image_samples
from pnr_tf.data.synthetic import write_synthetic_dataset
from pnr_tf.models.factory import build_discriminator
from pnr_tf.models.factory import built_generator
from pnr_tf.models.loading import variables_by_path
from pnr_tf.ops.solvers import describe_solver
from pnr_tf.progress import ProgressBar
from pnr_tf.training import gan_step
from pnr_tf.training.gan_step import GANModels
from pnr_tf.training.gan_step import GANOptimizers
from pnr_tf.training.gan_step import Phases
from pnr_tf.training.gan_step import step_inputs
from pnr_tf.training.perceptual import build_vgg19_features
from pnr_tf.training.validation import Validator
from pnr_tf.visualize import write_rgb


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


def prepare_data(config):
    """Writes the built-in synthetic dataset when the config asks for it and it is absent."""
    data = config.data
    missing_split = data.validation_pairs and not files.is_file(data.path(data.validation_pairs))
    if data.synthetic and (not files.is_file(data.path(data.annotation_file)) or missing_split):
        write_synthetic_dataset(data.root, data.synthetic_identities, data.synthetic_images_per_identity, seed=config.train.seed,
                                dataset=data.dataset)  # fmt: skip
        print(f"wrote the built-in synthetic dataset to {data.root}", file=sys.stderr)
    check_data_paths(config)


def load_samples(config, pairs_file=None, identities=None):
    """Training samples: pairs (supervised, or any explicit pairs_file) or single images (unsupervised).

    pairs_file is a path (not resolved against data.root; default data.pairs_file under it);
    identities restricts unsupervised single images to those people (the training split).
    """
    data = config.data
    size = (data.image_height, data.image_width)
    if config.train.mode == "unsupervised" and pairs_file is None:
        names = None
        if identities is not None:
            annotations = read_annotations(data.path(data.annotation_file))
            identity_of = convention(data.dataset).identity_of
            names = sorted(name for name, points in annotations.items() if identity_of(name) in identities and has_torso(points))
        return single_image_samples(data.path(data.annotation_file), data.path(data.image_dir), size, data.on_bad_sample, names)
    return pair_samples(
        pairs_file or data.path(data.pairs_file), data.path(data.annotation_file), data.path(data.image_dir), size, data.on_bad_sample
    )


def split_pair_files(config, output_dir, write=True):
    """{split: pair file path} after holding identities out (data.validation_identities / test_identities).

    Without held-out identities: {"train": data.pairs_file}. The split is seeded by train.seed, so
    every worker and every resumed run computes the same one; only the chief writes the files.
    """
    data = config.data
    if not (data.validation_identities or data.test_identities):
        return {"train": data.path(data.pairs_file)}
    rows = read_pairs(data.path(data.pairs_file))
    splits = split_rows_by_identity(rows, data.validation_identities, data.test_identities, config.train.seed, convention(data.dataset))
    paths = {name: files.join(output_dir, "split", f"pairs-{name}.csv") for name, split_rows in splits.items() if split_rows}
    if write:
        for name, path in paths.items():
            write_pairs(path, splits[name])
    return paths


class RunDirectoryBusyError(RuntimeError):
    """Another process trains in this run directory."""


@contextlib.contextmanager
def run_directory_lock(output_dir):
    """An exclusive lock on <output_dir>/.lock (released when the process ends, even killed).

    Object stores (gs://, ...) have no locks: there the run directory is not guarded.
    """
    if files.is_remote(output_dir):
        yield
        return
    import fcntl

    path = Path(output_dir) / ".lock"
    with open(path, "a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            owner = lock.read().strip() or "another process"
            raise RunDirectoryBusyError(
                f"{output_dir} is in use by a training run ({owner}): wait for it to finish, or train into another --output-dir"
            ) from None
        lock.seek(0)
        lock.truncate()
        lock.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
        lock.flush()
        try:
            yield
        finally:
            lock.seek(0)
            lock.truncate()


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
    """Builds everything under the strategy scope; `fit()` runs or resumes the configured steps.

    The public steps, which tests and benchmarks use too: `dataset(samples, start_step)` gives the
    distributed input, `train_step(batch)` runs one scheduled D + G update (and the weight average),
    `gradients(batch)` gives the all-reduced gradients such a step would apply, `validate(validator)`
    scores the inference generator.
    """

    def __init__(self, config, output_dir, strategy=None, random_vgg=False):
        self.config = config
        self.output_dir = str(output_dir)  # a local path or a URI (gs://, ram://): pnr_tf.files
        # Before anything is built: a run resumes only with the model and data it was trained with.
        self.config_changes = {}
        if tf.train.latest_checkpoint(self.path("checkpoints")) and files.is_file(self.path("config.yaml")):
            self.config_changes = resume_changes(load_config(self.path("config.yaml")), config)
        self.strategy = strategy or make_strategy(config.train.collective_timeout_seconds)
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
                generator=built_generator(config),
                appearance_discriminator=build_discriminator(config.model, "appearance_discriminator"),
                pose_discriminator=build_discriminator(config.model, "pose_discriminator"),
                features=features,
            )
            height, width = config.data.image_height, config.data.image_width
            self.models.appearance_discriminator(tf.zeros((1, height, width, 6)))
            self.models.pose_discriminator(tf.zeros((1, height, width, 21)))
            # The weight average: same structure and name, so its checkpoint keys are the generator's.
            self.average_generator = built_generator(config) if train.ema_decay > 0 else None
            if self.average_generator is not None:
                self.average_generator.set_weights(self.models.generator.get_weights())
            self.optimizers = GANOptimizers(
                generator=self._optimizer("generator_optimizer"), discriminator=self._optimizer("discriminator_optimizer")
            )
            # Slots must exist before the first distributed step (Keras 3 under MirroredStrategy).
            self.optimizers.generator.build(self.models.generator.trainable_variables)
            self.optimizers.discriminator.build(
                self.models.appearance_discriminator.trainable_variables + self.models.pose_discriminator.trainable_variables
            )
            self.best_validation_ssim = tf.Variable(-np.inf, trainable=False, name="best_validation_ssim")
        owners = {
            "generator": self.models.generator,
            "appearance_discriminator": self.models.appearance_discriminator,
            "pose_discriminator": self.models.pose_discriminator,
            "generator_optimizer": self.optimizers.generator,
            "discriminator_optimizer": self.optimizers.discriminator,
        }
        if self.average_generator is not None:
            owners["generator_average"] = self.average_generator
        self.checkpoint = tf.train.Checkpoint(
            **{name: variables_by_path(owner) for name, owner in owners.items()},
            progress={"best_validation_ssim": self.best_validation_ssim},
        )
        # Only the chief keeps checkpoints; other workers write theirs to a throw-away folder.
        # (MultiWorkerMirroredStrategy needs every worker to save; theirs are removed when fit ends.)
        self.scratch_dir = None if self.chief else tempfile.mkdtemp(prefix="pnr_worker_")
        checkpoint_dir = self.path("checkpoints") if self.chief else self.scratch_dir
        self.manager = tf.train.CheckpointManager(self.checkpoint, checkpoint_dir, max_to_keep=train.max_checkpoints)
        # Every worker resumes from the chief's checkpoint (a shared folder: the run directory).
        self.restored_from = tf.train.latest_checkpoint(self.path("checkpoints"))
        if self.restored_from:
            self.checkpoint.restore(self.restored_from).assert_existing_objects_matched()
        # The step of the last checkpoint, the same on every worker (saving is collective: all or none).
        self.saved_step = self.step if self.restored_from else None
        self.decoded_paths = set()
        self._step_functions = {}
        self._stop_signal = None
        self._update_average = tf.function(self._update_average_eagerly)

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

    @property
    def inference_generator(self):
        """The generator samples, validation and the saved files use: the weight average when kept."""
        return self.average_generator if self.average_generator is not None else self.models.generator

    # The schedule ------------------------------------------------------------------------------

    def adversarial_scale(self, step):
        """Factor on the adversarial weights for the step after `step` completed ones: 0 in warm-up, then a linear ramp to 1."""
        loss = self.config.loss
        if step < loss.adversarial_warmup_steps:
            return 0.0
        if loss.adversarial_ramp_steps == 0:
            return 1.0
        return min(1.0, (step - loss.adversarial_warmup_steps + 1) / loss.adversarial_ramp_steps)

    def phases(self, step):
        """Which discriminators take part in the step after `step` completed ones."""
        loss, adversarial = self.config.loss, self.adversarial_scale(step) > 0
        return Phases(
            appearance=adversarial and loss.gan_appearance_weight > 0 and not self.unsupervised,
            pose=adversarial and loss.gan_pose_weight > 0,
        )

    def loss_weights(self, step):
        loss, scale = self.config.loss, self.adversarial_scale(step)
        return {
            "l1": loss.l1_weight,
            "perceptual": loss.perceptual_weight,
            "gan_appearance": scale * loss.gan_appearance_weight,
            "gan_pose": scale * loss.gan_pose_weight,
        }

    # One step ----------------------------------------------------------------------------------

    def input_pipeline(self, samples, context, start_step=0):
        """One input pipeline's dataset (a tf.distribute.InputContext says which): only its shard of the
        samples, taken before anything is shuffled or decoded, batched per replica; skipping what earlier
        runs consumed keeps an uninterrupted run's order."""
        train, data = self.config.train, self.config.data
        shard = samples.shard(context.num_input_pipelines, context.input_pipeline_id)
        per_replica = context.get_per_replica_batch_size(train.batch_size)
        replicas_here = self.strategy.num_replicas_in_sync // context.num_input_pipelines
        self.shard_description = (f"input pipeline {context.input_pipeline_id + 1} of {context.num_input_pipelines} reads rows "
                                  f"{context.input_pipeline_id}::{context.num_input_pipelines} ({len(shard)} of {len(samples)})")  # fmt: skip
        return make_dataset(
            shard, per_replica, (data.image_height, data.image_width), seed=train.seed, sigma=data.heatmap_sigma,
            skip_examples=start_step * per_replica * replicas_here, include_paths=True,
        )  # fmt: skip

    def dataset(self, samples, start_step=0):
        """The training input, distributed: each input pipeline (one per worker) reads only its shard."""
        return self.strategy.distribute_datasets_from_function(lambda context: self.input_pipeline(samples, context, start_step))

    def _weights_tensors(self, step):
        return {name: tf.constant(value, tf.float32) for name, value in self.loss_weights(step).items()}

    def _step_function(self, phases):
        if phases not in self._step_functions:
            global_batch_size = self.config.train.batch_size

            def replica_step(batch, weights):
                return gan_step.train_step(self.models, self.optimizers, batch, weights, phases, global_batch_size, self.unsupervised)

            @tf.function
            def distributed_step(batch, weights):
                per_replica = self.strategy.run(replica_step, args=(batch, weights))
                return {name: self.strategy.reduce("SUM", value, axis=None) for name, value in per_replica.items()}

            self._step_functions[phases] = distributed_step
        return self._step_functions[phases]

    def train_step(self, batch):
        """One scheduled training step on a distributed batch; returns the losses as floats."""
        batch = self._without_paths(batch)
        step = self.step
        metrics = self._step_function(self.phases(step))(batch, self._weights_tensors(step))
        if self.average_generator is not None:
            completed = step + 1
            self._update_average(tf.constant(min(self.config.train.ema_decay, (1 + completed) / (10 + completed)), tf.float32))
        return {name: float(value) for name, value in metrics.items()}

    def _without_paths(self, batch):
        """The batch without the file names the input pipeline reports (strings stay off the devices)."""
        batch = dict(batch)
        if "target_path" in batch:
            for paths in self.strategy.experimental_local_results(batch.pop("target_path")):
                self.decoded_paths.update(path.decode() for path in paths.numpy())
        return batch

    def _update_average_eagerly(self, decay):
        trainable = zip(self.average_generator.trainable_variables, self.models.generator.trainable_variables)
        for average, variable in trainable:
            average.assign(decay * average + (1.0 - decay) * variable)
        # Batch-norm statistics are averaged like the weights they normalise (copied, they describe the
        # current weights, not the average: 0.27 against 0.40 validation SSIM after 400 quickstart steps);
        # the dropout RNG state is copied.
        for average, variable in zip(self.average_generator.non_trainable_variables, self.models.generator.non_trainable_variables):
            if "float" in str(variable.dtype):
                average.assign(decay * average + (1.0 - decay) * variable)
            else:
                average.assign(variable)

    # Validation and files ----------------------------------------------------------------------

    def validation_samples(self, split_paths):
        data = self.config.data
        path = data.path(data.validation_pairs) if data.validation_pairs else split_paths.get("validation")
        if path is None:
            return None
        size = (data.image_height, data.image_width)
        return pair_samples(path, data.path(data.annotation_file), data.path(data.image_dir), size, data.on_bad_sample)

    def validate(self, validator):
        """{"ssim", "l1"} of the inference generator on the validator's pairs."""
        return validator.score(self.inference_generator)

    def path(self, *names):
        """A file or folder of the run directory."""
        return files.join(self.output_dir, *names)

    def save_generator(self, path):
        """The inference generator as a .keras file, written whole then renamed (or copied, to a remote folder)."""
        from pnr_tf.export.keras_file import export_keras

        return export_keras(self.inference_generator, path, overwrite=True)

    def save_checkpoint(self, step):
        """A checkpoint (every worker takes part) and, on the chief, generator.keras beside it."""
        self.manager.save(checkpoint_number=step)
        self.saved_step = step
        if self.chief:
            self.save_generator(self.path("generator.keras"))

    def _handle_signal(self, number, frame):
        self._stop_signal = number

    def _start_validation(self, samples, writer):
        """A Validator and its baselines, written once (first line of validation.jsonl, TensorBoard, stderr)."""
        data = self.config.data
        validator = Validator(samples, (data.image_height, data.image_width))
        log = self.path("validation.jsonl")
        baselines = validator.baselines()
        if not files.is_file(log):
            files.write_text(log, json.dumps({"pairs": len(validator), "baselines": baselines}) + "\n")
            with writer.as_default(step=self.step):
                for name, values in baselines.items():
                    for metric, value in values.items():
                        tf.summary.scalar(f"validation_baseline/{name}/{metric}", value)
        described = "; ".join(f"{name} SSIM {values['ssim']:.3f} L1 {values['l1']:.3f}" for name, values in baselines.items())
        print(f"validation: {len(validator)} held-out pairs; baselines: {described}", file=sys.stderr)
        return validator

    def _validation_step(self, validator, step, writer):
        scores = self.validate(validator)
        files.append_line(self.path("validation.jsonl"), json.dumps({"step": step, **scores}))
        with writer.as_default(step=step):
            for metric, value in scores.items():
                tf.summary.scalar(f"validation/{metric}", value)
        if scores["ssim"] > float(self.best_validation_ssim.numpy()):
            self.best_validation_ssim.assign(scores["ssim"])
            self.save_generator(self.path("generator_best.keras"))
        return scores

    # The loop ----------------------------------------------------------------------------------

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
            # Settings this start changed from the run's config.yaml: {key: [before, now]}.
            "config_changes": {key: list(values) for key, values in self.config_changes.items()},
        }

    def fit(self, samples=None):
        """Trains to train.num_steps (resuming), returns the path of generator.keras (or None if stopped).

        The chief holds a lock on the run directory while it trains: a second training pointed at
        the same --output-dir stops with RunDirectoryBusyError instead of interleaving checkpoints.
        """
        if not self.chief:
            try:
                return self._fit(samples)
            finally:
                shutil.rmtree(self.scratch_dir, ignore_errors=True)  # a worker's throw-away checkpoints
        files.makedirs(self.output_dir)
        with run_directory_lock(self.output_dir):
            return self._fit(samples)

    def _fit(self, samples):
        config, train = self.config, self.config.train
        record = self.session_record()
        print(f"regression solver: {record['solver_detail']}", file=sys.stderr)
        if self.chief:
            files.write_text(self.path("config.yaml"), to_yaml(config))
            # One line per start (a run may resume on another machine): sessions.jsonl.
            files.append_line(self.path("sessions.jsonl"), json.dumps(record))
        validation = None
        if samples is None:
            prepare_data(config)
            split_paths = split_pair_files(config, self.output_dir, write=self.chief)
            train_identities = None
            if "validation" in split_paths or "test" in split_paths:
                train_identities = {convention(config.data.dataset).identity_of(row[-1]) for row in read_pairs(split_paths["train"])}
            samples = load_samples(config, None if self.unsupervised else split_paths["train"], train_identities)
            validation = self.validation_samples(split_paths)
        if samples.num_skipped:
            print(f"skipped {samples.num_skipped} bad samples (data.on_bad_sample: skip); first: {samples.skipped_reasons[0]}",
                  file=sys.stderr)  # fmt: skip
        if len(samples) < train.batch_size:
            raise ConfigError(
                f"train.batch_size {train.batch_size} is larger than the {len(samples)} training samples: every batch would "
                "repeat examples; use a smaller batch or more data"
            )
        start = self.step
        if self.restored_from:
            print(f"resumed from {self.restored_from} at step {start}", file=sys.stderr)
            for key, (before, now) in self.config_changes.items():
                print(f"  changed since the last start: {key} {before!r} -> {now!r}", file=sys.stderr)
        try:
            preview = self._preview_batch(samples)
        except (tf.errors.InvalidArgumentError, tf.errors.DataLossError, tf.errors.NotFoundError) as error:
            raise BadSampleError(decode_failure_message(samples, error)) from None
        writer = tf.summary.create_file_writer(self.path("logs")) if self.chief else tf.summary.create_noop_writer()
        validator = self._start_validation(validation, writer) if validation is not None and self.chief else None
        previous_handlers = {number: signal.signal(number, self._handle_signal) for number in (signal.SIGINT, signal.SIGTERM)}
        progress = ProgressBar(train.num_steps, start)
        shown = {}
        try:
            iterator = iter(self.dataset(samples, start))
            while self.step < train.num_steps:
                try:
                    batch = next(iterator)
                except (tf.errors.InvalidArgumentError, tf.errors.DataLossError, tf.errors.NotFoundError) as error:
                    raise BadSampleError(decode_failure_message(samples, error)) from None
                metrics = self.train_step(batch)
                step = self.step
                if not all(np.isfinite(list(metrics.values()))):
                    # The weights now hold the bad update: stop before any checkpoint keeps them.
                    terms = ", ".join(f"{name}={value:.4g}" for name, value in sorted(metrics.items()))
                    raise FloatingPointError(
                        f"non-finite loss at step {step} ({terms}); nothing of this step was saved, the last "
                        f"checkpoint is {self.manager.latest_checkpoint or 'none'}. A lower train.learning_rate, or "
                        "a look at the data (pnr_tf.data.pipeline checks it), is the usual cure."
                    )
                if validator is not None and (step % train.validate_every == 0 or step == train.num_steps):
                    shown = {f"val_{name}": value for name, value in self._validation_step(validator, step, writer).items()}
                if step % train.log_every == 0 or step == train.num_steps:
                    progress.update(step, {**metrics, **shown})
                    with writer.as_default(step=step):
                        for name, value in metrics.items():
                            tf.summary.scalar(f"loss/{name}", value)
                        tf.summary.scalar("learning_rate", train.learning_rate)
                        tf.summary.scalar("schedule/adversarial_scale", self.adversarial_scale(step - 1))
                if step % train.sample_every == 0 or step == train.num_steps:
                    self.write_samples(preview, step, writer)
                if step % train.checkpoint_every == 0:
                    self.save_checkpoint(step)
                if self._stop_signal is not None:
                    if self.saved_step != step:
                        self.save_checkpoint(step)
                    print(
                        f"\nstopped by signal {self._stop_signal} at step {step}; checkpoint and generator.keras saved, "
                        "run again to resume",
                        file=sys.stderr,
                    )
                    return None
        finally:
            progress.close()
            for number, handler in previous_handlers.items():
                signal.signal(number, handler)
            writer.flush()
        if self.saved_step != self.step:
            self.save_checkpoint(self.step)
        print(f"input: {getattr(self, 'shard_description', 'no steps run')}; read {len(self.decoded_paths)} distinct target images",
              file=sys.stderr)  # fmt: skip
        if train.report_decoded_files:
            print("decoded files: " + json.dumps(sorted(self.decoded_paths)), file=sys.stderr)
        return self.path("generator.keras")

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
        generated = self.inference_generator(inputs, training=False)
        grid = image_grid(batch, generated, self.unsupervised)
        if not self.chief:
            return
        write_rgb(self.path("samples", f"step_{step:06d}.png"), grid)
        with writer.as_default(step=step):
            tf.summary.image("samples", grid[None], max_outputs=1)
