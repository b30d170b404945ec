"""The training driver: builds everything under the strategy, then runs the loop of scheduled steps.

Per-replica math is ``gan_step``; the schedule ``schedule``; the strategy ``distribution``; the
run directory (layout, lock, what a resume may change) ``run_directory``; the data of a run
``pnr_tf.training.run_splits``. A run resumes from the latest checkpoint in its output directory.
SIGINT / SIGTERM stop after the current step with a checkpoint; TensorFlow writes a checkpoint to
temporary files and renames them, and the state file is updated last, so a kill mid-write leaves
the previous checkpoint restorable.
"""

import json
import shutil
import signal
import sys
import tempfile
import time

import keras
import numpy as np
import tensorflow as tf

from pnr_tf import files
from pnr_tf.config import ConfigError
from pnr_tf.config import requested_precision
from pnr_tf.config import to_yaml
from pnr_tf.conventions import NUM_JOINTS
from pnr_tf.data.augment import Augmentation
from pnr_tf.data.pipeline import BadSampleError
from pnr_tf.data.pipeline import decode_failure_message
from pnr_tf.data.pipeline import make_dataset
from pnr_tf.export.keras_file import export_keras
from pnr_tf.models.factory import discriminator_from_config
from pnr_tf.models.factory import generator_from_config
from pnr_tf.models.loading import load_generator
from pnr_tf.models.loading import variables_by_path
from pnr_tf.ops.solvers import describe_solver
from pnr_tf.precision import resolve_precision
from pnr_tf.progress import ProgressBar
from pnr_tf.training import gan_step
from pnr_tf.training import schedule
from pnr_tf.training.distribution import is_chief
from pnr_tf.training.distribution import make_strategy
from pnr_tf.training.gan_step import GANModels
from pnr_tf.training.gan_step import GANOptimizers
from pnr_tf.training.gan_step import step_inputs
from pnr_tf.training.perceptual import build_vgg19_features
from pnr_tf.training.run_directory import changes_since_last_start
from pnr_tf.training.run_directory import run_directory_lock
from pnr_tf.training.run_splits import run_samples
from pnr_tf.training.validation import Validator
from pnr_tf.visualize import panel_grid
from pnr_tf.visualize import pose_picture
from pnr_tf.visualize import write_rgb

# tf.data reports an image that broke after the data check as one of these.
_READ_ERRORS = (tf.errors.InvalidArgumentError, tf.errors.DataLossError, tf.errors.NotFoundError)


def _is_float(variable):
    """Weights and batch-norm statistics, as opposed to integer state such as the row-dropout RNG's."""
    return "float" in str(variable.dtype)


class Trainer:
    """Builds everything under the strategy scope; ``fit()`` runs or resumes the configured steps.

    The public steps, which tests and benchmarks use too: ``dataset(samples, start_step)`` gives the
    distributed input, ``train_step(batch)`` runs one scheduled D + G update (and the weight average),
    ``validate(validator)`` scores the inference generator.
    """

    def __init__(self, config, output_dir, strategy=None, random_vgg=False):
        self.config = config
        self.output_dir = str(output_dir)  # a local path or a URI (gs://, ram://): pnr_tf.files
        # Before anything is built: a run resumes only with the model and data it was trained with.
        self.config_changes = changes_since_last_start(config, self.output_dir)
        self.strategy = strategy or make_strategy(config.train.collective_timeout_seconds)
        self.chief = is_chief(self.strategy)
        train = config.train
        # Resolved once, recorded with the session: what the layers compute in on this machine.
        self.precision = resolve_precision(requested_precision(train))
        self.unsupervised = train.mode == "unsupervised"
        keras.utils.set_random_seed(train.seed)
        with self.strategy.scope():
            self._build_models(random_vgg)
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
            self._check_precision_of_last_start()
            self.checkpoint.restore(self.restored_from).assert_existing_objects_matched()
        elif train.initial_weights:
            self._start_from(train.initial_weights)
        # The step of the last checkpoint, the same on every worker (saving is collective: all or none).
        self.saved_step = self.step if self.restored_from else None
        self.decoded_paths = set()
        self._step_functions = {}
        self._stop_signal = None
        self._learning_rate = None  # the rate last given to the optimizers
        self._update_average = tf.function(self._update_average_eagerly)

    def _build_models(self, random_vgg):
        """Models, the weight average and both optimizers, variables and slots created (call under the strategy scope)."""
        config, train = self.config, self.config.train
        policy = self.precision.policy
        features = None
        if config.loss.perceptual_weight > 0:
            features = build_vgg19_features(config.loss.vgg19_weights, random_weights=random_vgg, dtype_policy=policy)
        self.models = GANModels(
            generator=generator_from_config(config, policy),
            appearance_discriminator=discriminator_from_config(config.model, "appearance_discriminator", policy),
            pose_discriminator=discriminator_from_config(config.model, "pose_discriminator", policy),
            features=features,
        )
        height, width = config.data.image_height, config.data.image_width
        self.models.appearance_discriminator(tf.zeros((1, height, width, 6)))
        self.models.pose_discriminator(tf.zeros((1, height, width, 3 + NUM_JOINTS)))
        # The weight average: same structure and name, so its checkpoint keys are the generator's; float32, as
        # the files it is saved to are run (a bfloat16 export is an export option, pnr_tf.export).
        self.average_generator = generator_from_config(config) if train.ema_decay > 0 else None
        if self.average_generator is not None:
            self.average_generator.set_weights(self.models.generator.get_weights())
        self.optimizers = GANOptimizers(generator=self._optimizer("generator_optimizer"), discriminator=self._optimizer("discriminator_optimizer"))
        # Slots must exist before the first distributed step (Keras 3 under MirroredStrategy).
        self.optimizers.generator.build(self.models.generator.trainable_variables)
        self.optimizers.discriminator.build(
            self.models.appearance_discriminator.trainable_variables + self.models.pose_discriminator.trainable_variables
        )
        self.best_validation_ssim = tf.Variable(-np.inf, trainable=False, name="best_validation_ssim")

    def _start_from(self, path):
        """A new run's generator (and its average) take the weights of a trained generator of the same model.*
        settings; integer state (the row-dropout RNG) stays this run's, seeded by train.seed."""
        def by_path(model):  # a loaded model's paths lack the built one's leading "generator."
            return {key.removeprefix(f"{model.name}."): variable for key, variable in variables_by_path(model).items()}

        try:
            trained = by_path(load_generator(path))
        except (ValueError, FileNotFoundError) as error:  # not a model, or no such file: one line, as any config error
            raise ConfigError(f"train.initial_weights: {error}") from None
        here = by_path(self.models.generator)
        differences = [f"{key} is missing there" for key in here if key not in trained]
        differences += [f"{key} is extra there" for key in trained if key not in here]
        differences += [f"{key} has shape {tuple(trained[key].shape)} there, {tuple(variable.shape)} here"
                        for key, variable in here.items() if key in trained and tuple(trained[key].shape) != tuple(variable.shape)]  # fmt: skip
        if differences:
            raise ConfigError(
                f"train.initial_weights {path} is another model: {differences[0]}"
                f"{f' (and {len(differences) - 1} more)' if len(differences) > 1 else ''}; its model.* settings must be this config's"
            )
        for key, variable in here.items():
            if _is_float(variable):
                variable.assign(trained[key])
        if self.average_generator is not None:
            self.average_generator.set_weights(self.models.generator.get_weights())

    def _check_precision_of_last_start(self):
        """ConfigError when train.precision: auto resolved to float16 on the machine that wrote the checkpoint and
        not here, or the other way round: float16's loss-scale variables are in the checkpoint or missing from it."""
        sessions = self.path("sessions.jsonl")
        last = json.loads(files.read_text(sessions).splitlines()[-1]) if files.is_file(sessions) else {}
        before = last.get("precision")
        if before is not None and (before == "mixed_float16") != self.precision.loss_scaling:
            raise ConfigError(f"the run's checkpoint was written in {before} and this machine resolves train.precision to "
                              f"{self.precision.policy}: float16's loss scaling changes what a checkpoint holds; set "
                              f"train.precision: {before} to resume here")  # fmt: skip

    def _optimizer(self, name):
        train = self.config.train
        optimizer = keras.optimizers.Adam(train.learning_rate, beta_1=train.beta_1, beta_2=train.beta_2, name=name)
        if self.precision.loss_scaling:
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

    def path(self, *names):
        """A file or folder of the run directory."""
        return files.join(self.output_dir, *names)

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
        augmentation = Augmentation(data.augment_mirror, data.augment_scale, data.augment_colour)
        return make_dataset(
            shard, per_replica, (data.image_height, data.image_width), seed=train.seed, sigma=data.heatmap_sigma,
            skip_examples=start_step * per_replica * replicas_here, include_paths=True, augmentation=augmentation,
            target_masks=self.config.loss.foreground_weight > 0 or self.config.loss.mask_ssim_weight > 0,
        )  # fmt: skip

    def dataset(self, samples, start_step=0):
        """The training input, distributed: each input pipeline (one per worker) reads only its shard."""
        return self.strategy.distribute_datasets_from_function(lambda context: self.input_pipeline(samples, context, start_step))

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
        step, loss = self.step, self.config.loss
        weights = {name: tf.constant(value, tf.float32) for name, value in schedule.loss_weights(loss, step).items()}
        rate = schedule.learning_rate(self.config.train, step)
        if rate != self._learning_rate:  # an assign only where the rate changes
            self.optimizers.generator.learning_rate = self.optimizers.discriminator.learning_rate = rate
            self._learning_rate = rate
        metrics = self._step_function(schedule.phases(loss, step, self.unsupervised))(batch, weights)
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
            if _is_float(variable):
                average.assign(decay * average + (1.0 - decay) * variable)
            else:
                average.assign(variable)

    # Validation, samples, files ----------------------------------------------------------------

    def validate(self, validator):
        """{"ssim", "l1"} of the inference generator on the validator's pairs."""
        return validator.score(self.inference_generator)

    def save_generator(self, path):
        """The inference generator as a .keras file, written whole then renamed (or copied, to a remote folder)."""
        return export_keras(self.inference_generator, path, overwrite=True)

    def save_checkpoint(self, step):
        """A checkpoint (every worker takes part) and, on the chief, generator.keras beside it."""
        self.manager.save(checkpoint_number=step)
        self.saved_step = step
        if self.chief:
            self.save_generator(self.path("generator.keras"))

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
        described = "; ".join(f"{name} SSIM {values['ssim']:.3f} mask-SSIM {values['mask_ssim']:.3f} L1 {values['l1']:.3f}"
                              for name, values in baselines.items())  # fmt: skip
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

    def _preview_batch(self, samples):
        """A fixed batch of up to 4 examples (seeded shuffle, so sources differ) for the sample grids."""
        data = self.config.data
        dataset = make_dataset(
            samples, min(4, len(samples)), (data.image_height, data.image_width), repeat=False,
            seed=self.config.train.seed + 1, sigma=data.heatmap_sigma,
        )  # fmt: skip
        return {name: tensor.numpy() for name, tensor in next(iter(dataset)).items()}

    def write_samples(self, batch, step, writer):
        """samples/step_N.png and its TensorBoard image: source | source pose | target pose | generated | target."""
        inputs, target = step_inputs(batch, self.unsupervised)
        generated = self.inference_generator(inputs, training=False)
        source_pose = batch["source_pose"][:, 0]
        grid = panel_grid([batch["source_image"][:, 0], pose_picture(source_pose), pose_picture(inputs["target_pose"]), generated, target])
        if not self.chief:
            return
        write_rgb(self.path("samples", f"step_{step:06d}.png"), grid)
        with writer.as_default(step=step):
            tf.summary.image("samples", grid[None], max_outputs=1)

    # The loop ----------------------------------------------------------------------------------

    def session_record(self):
        """What this process trains with, beyond the config: the resolved solver, devices, versions, changed settings."""
        regression = self.models.generator.regression
        return {
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "start_step": self.step,
            "solver_requested": regression.solver,
            "solver": regression.resolved_solver,
            "solver_detail": describe_solver(regression.resolved_solver),
            "precision_requested": requested_precision(self.config.train),
            "precision": self.precision.policy,
            "precision_reason": self.precision.reason,
            "num_replicas": self.strategy.num_replicas_in_sync,
            "devices": [device.name for device in tf.config.list_logical_devices()],
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
            # Settings this start changed from the run's config.yaml: {key: [before, now]}.
            "config_changes": {key: list(values) for key, values in self.config_changes.items()},
        }

    def fit(self, samples=None):
        """Trains to train.num_steps (resuming), returns the path of generator.keras (or None if stopped).

        ``samples`` (a SampleSet) replaces the run's own data (``pnr_tf.training.run_splits``), without
        validation. The chief holds a lock on the run directory while it trains: a second training
        pointed at the same --output-dir stops with RunDirectoryBusyError instead of interleaving checkpoints.
        """
        if not self.chief:
            try:
                return self._fit(samples)
            finally:
                shutil.rmtree(self.scratch_dir, ignore_errors=True)  # a worker's throw-away checkpoints
        files.makedirs(self.output_dir)
        with run_directory_lock(self.output_dir):
            return self._fit(samples)

    def _start(self, samples):
        """Records the start, loads and checks the data; returns (samples, validation samples or None)."""
        config = self.config
        record = self.session_record()
        print(f"regression solver: {record['solver_detail']}", file=sys.stderr)
        print(f"precision: {self.precision.policy} ({self.precision.reason})", file=sys.stderr)
        if self.chief:
            files.write_text(self.path("config.yaml"), to_yaml(config))
            # One line per start (a run may resume on another machine): sessions.jsonl.
            files.append_line(self.path("sessions.jsonl"), json.dumps(record))
        validation = None
        if samples is None:
            samples, validation = run_samples(config, self.output_dir, write_splits=self.chief)
        if samples.num_skipped:
            print(f"skipped {samples.num_skipped} bad samples (data.on_bad_sample: skip); first: {samples.skipped_reasons[0]}",
                  file=sys.stderr)  # fmt: skip
        if len(samples) < config.train.batch_size:
            raise ConfigError(
                f"train.batch_size {config.train.batch_size} is larger than the {len(samples)} training samples: every batch would "
                "repeat examples; use a smaller batch or more data"
            )
        if self.restored_from:
            print(f"resumed from {self.restored_from} at step {self.step}", file=sys.stderr)
            for key, (before, now) in self.config_changes.items():
                print(f"  changed since the last start: {key} {before!r} -> {now!r}", file=sys.stderr)
            if config.train.initial_weights:
                print(f"  train.initial_weights ({config.train.initial_weights}) is not read on a resume", file=sys.stderr)
        elif config.train.initial_weights:
            print(f"generator weights from {config.train.initial_weights}", file=sys.stderr)
        return samples, validation

    def _fit(self, samples):
        train = self.config.train
        samples, validation = self._start(samples)
        try:
            preview = self._preview_batch(samples)
        except _READ_ERRORS as error:
            raise BadSampleError(decode_failure_message(samples, error)) from None
        writer = tf.summary.create_file_writer(self.path("logs")) if self.chief else tf.summary.create_noop_writer()
        validator = self._start_validation(validation, writer) if validation is not None and self.chief else None
        previous_handlers = {number: signal.signal(number, self._handle_signal) for number in (signal.SIGINT, signal.SIGTERM)}
        progress = ProgressBar(train.num_steps, self.step)
        shown = {}
        try:
            iterator = iter(self.dataset(samples, self.step))
            while self.step < train.num_steps:
                try:
                    batch = next(iterator)
                except _READ_ERRORS as error:
                    raise BadSampleError(decode_failure_message(samples, error)) from None
                metrics = self.train_step(batch)
                step = self.step
                self._check_finite(metrics, step)
                last = step == train.num_steps
                if validator is not None and (step % train.validate_every == 0 or last):
                    shown = {f"val_{name}": value for name, value in self._validation_step(validator, step, writer).items()}
                if step % train.log_every == 0 or last:
                    progress.update(step, {**metrics, **shown})
                    self._log_losses(metrics, step, writer)
                if step % train.sample_every == 0 or last:
                    self.write_samples(preview, step, writer)
                if step % train.checkpoint_every == 0:
                    self.save_checkpoint(step)
                if self._stop_signal is not None:
                    return self._stop(step)
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

    def _check_finite(self, metrics, step):
        if not all(np.isfinite(list(metrics.values()))):
            # The weights now hold the bad update: stop before any checkpoint keeps them.
            terms = ", ".join(f"{name}={value:.4g}" for name, value in sorted(metrics.items()))
            raise FloatingPointError(
                f"non-finite loss at step {step} ({terms}); nothing of this step was saved, the last "
                f"checkpoint is {self.manager.latest_checkpoint or 'none'}. A lower train.learning_rate, or "
                "a look at the data (pnr_tf.data.pipeline checks it), is the usual cure."
            )

    def _log_losses(self, metrics, step, writer):
        with writer.as_default(step=step):
            for name, value in metrics.items():
                tf.summary.scalar(f"loss/{name}", value)
            tf.summary.scalar("learning_rate", schedule.learning_rate(self.config.train, step - 1))
            tf.summary.scalar("schedule/adversarial_scale", schedule.adversarial_scale(self.config.loss, step - 1))

    def _handle_signal(self, number, frame):
        self._stop_signal = number

    def _stop(self, step):
        """After SIGINT / SIGTERM: a checkpoint of this step (unless just written), then None."""
        if self.saved_step != step:
            self.save_checkpoint(step)
        print(f"\nstopped by signal {self._stop_signal} at step {step}; checkpoint and generator.keras saved, run again to resume",
              file=sys.stderr)  # fmt: skip
        return None
