"""The training driver: the run directory, checkpoints, summaries, validation and samples, and the loop.

What is trained and how one step runs is the task's (``pnr_tf.training.task.GANTask``: models,
optimizers, input, the scheduled step); per-replica math is ``gan_step``; the strategy
``distribution``; the run directory (layout, lock, what a resume may change) ``run_directory``; the
data of a run ``run_splits``. A run resumes from the latest checkpoint in its output directory.
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
from pnr_tf import run_files
from pnr_tf.config import ConfigError
from pnr_tf.config import to_yaml
from pnr_tf.data.pipeline import BadSampleError
from pnr_tf.data.pipeline import InputOptions
from pnr_tf.data.pipeline import decode_failure_message
from pnr_tf.data.pipeline import make_dataset
from pnr_tf.export.keras_file import export_keras
from pnr_tf.models.loading import variables_by_path
from pnr_tf.progress import ProgressBar
from pnr_tf.training import schedule
from pnr_tf.training.distribution import is_chief
from pnr_tf.training.distribution import make_strategy
from pnr_tf.training.gan_step import step_inputs
from pnr_tf.training.run_directory import changes_since_last_start
from pnr_tf.training.run_directory import check_resumed_precision
from pnr_tf.training.run_directory import run_directory_lock
from pnr_tf.training.run_splits import run_samples
from pnr_tf.training.task import GANTask
from pnr_tf.training.validation import Validator
from pnr_tf.visualize import panel_grid
from pnr_tf.visualize import pose_picture
from pnr_tf.visualize import write_rgb

# tf.data reports an image that broke after the data check as one of these.
_READ_ERRORS = (tf.errors.InvalidArgumentError, tf.errors.DataLossError, tf.errors.NotFoundError)


class Trainer:
    """A run directory and its task; ``fit()`` runs or resumes the configured steps.

    ``task`` (a ``GANTask``) holds the models, optimizers and weight average; ``dataset(samples,
    start_step)`` and ``train_step(batch)`` are its, for tests and benchmarks.
    """

    def __init__(self, config, output_dir, strategy=None, random_vgg=False):
        self.config = config
        self.output_dir = str(output_dir)  # a local path or a URI (gs://, ram://): pnr_tf.files
        # Before anything is built: a run resumes only with the model and data it was trained with.
        self.config_changes = changes_since_last_start(config, self.output_dir)
        self.strategy = strategy or make_strategy(config.train.collective_timeout_seconds)
        self.chief = is_chief(self.strategy)
        self.task = GANTask(config, self.strategy, random_vgg)
        with self.strategy.scope():
            self.best_validation_ssim = tf.Variable(-np.inf, trainable=False, name="best_validation_ssim")
        held = {name: variables_by_path(owner) for name, owner in self.task.checkpoint_owners().items()}
        held["progress"] = {"best_validation_ssim": self.best_validation_ssim}
        self.checkpoint = tf.train.Checkpoint(**held)
        # Only the chief keeps checkpoints; other workers write theirs to a throw-away folder.
        # (MultiWorkerMirroredStrategy needs every worker to save; theirs are removed when fit ends.)
        self.scratch_dir = None if self.chief else tempfile.mkdtemp(prefix="pnr_worker_")
        checkpoint_dir = self.path(run_files.CHECKPOINTS) if self.chief else self.scratch_dir
        self.manager = tf.train.CheckpointManager(self.checkpoint, checkpoint_dir, max_to_keep=config.train.max_checkpoints)
        # Every worker resumes from the chief's checkpoint (a shared folder: the run directory).
        self.restored_from = tf.train.latest_checkpoint(self.path(run_files.CHECKPOINTS))
        if self.restored_from:
            check_resumed_precision(self.output_dir, self.task.precision)
            # Discriminators added on a resume (loss.adversarial turned on) are not in the checkpoint: they start fresh.
            stored = {name.split("/", 1)[0] for name, _ in tf.train.list_variables(self.restored_from)}
            added = {"appearance_discriminator", "pose_discriminator", "discriminator_optimizer"} - stored
            tf.train.Checkpoint(**{name: value for name, value in held.items() if name not in added}).restore(
                self.restored_from).assert_existing_objects_matched()  # fmt: skip
        elif config.train.initial_weights:
            self.task.start_from(config.train.initial_weights)
        # The step of the last checkpoint, the same on every worker (saving is collective: all or none).
        self.saved_step = self.step if self.restored_from else None
        self._stop_signal = None

    @property
    def step(self):
        return self.task.step

    def dataset(self, samples, start_step=0):
        return self.task.dataset(samples, start_step)

    def train_step(self, batch):
        return self.task.train_step(batch)

    def path(self, *names):
        """A file or folder of the run directory."""
        return files.join(self.output_dir, *names)

    # Validation, samples, files ----------------------------------------------------------------

    def validate(self, validator):
        """{"ssim", "l1"} of the inference generator on the validator's pairs."""
        return validator.score(self.task.inference_generator)

    def save_generator(self, path):
        """The inference generator as a .keras file, written whole then renamed (or copied, to a remote folder)."""
        return export_keras(self.task.inference_generator, path, overwrite=True)

    def save_checkpoint(self, step):
        """A checkpoint (every worker takes part) and, on the chief, generator.keras beside it."""
        self.manager.save(checkpoint_number=step)
        self.saved_step = step
        if self.chief:
            self.save_generator(self.path(run_files.GENERATOR))

    def _start_validation(self, samples, writer):
        """A Validator and its baselines, written once (first line of validation.jsonl, TensorBoard, stderr)."""
        data = self.config.data
        validator = Validator(samples, (data.image_height, data.image_width))
        log = self.path(run_files.VALIDATION_LOG)
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
        files.append_line(self.path(run_files.VALIDATION_LOG), json.dumps({"step": step, **scores}))
        with writer.as_default(step=step):
            for metric, value in scores.items():
                tf.summary.scalar(f"validation/{metric}", value)
        if scores["ssim"] > float(self.best_validation_ssim.numpy()):
            self.best_validation_ssim.assign(scores["ssim"])
            self.save_generator(self.path(run_files.BEST_GENERATOR))
        return scores

    def _preview_batch(self, samples):
        """A fixed batch of up to 4 examples (seeded shuffle, so sources differ) for the sample grids."""
        data = self.config.data
        options = InputOptions(repeat=False, seed=self.config.train.seed + 1, sigma=data.heatmap_sigma)
        dataset = make_dataset(samples, min(4, len(samples)), (data.image_height, data.image_width), options)
        return {name: tensor.numpy() for name, tensor in next(iter(dataset)).items()}

    def write_samples(self, batch, step, writer):
        """samples/step_N.png and its TensorBoard image: source | source pose | target pose | generated | target."""
        inputs, target = step_inputs(batch, self.task.unsupervised)
        generated = self.task.inference_generator(inputs, training=False)
        source_pose = batch["source_pose"][:, 0]
        grid = panel_grid([batch["source_image"][:, 0], pose_picture(source_pose), pose_picture(inputs["target_pose"]), generated, target])
        if not self.chief:
            return
        write_rgb(self.path(run_files.SAMPLES, f"step_{step:06d}.png"), grid)
        with writer.as_default(step=step):
            tf.summary.image("samples", grid[None], max_outputs=1)

    # The loop ----------------------------------------------------------------------------------

    def session_record(self):
        """What this process trains with, beyond the config: the resolved solver, devices, versions, changed settings."""
        return {
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "start_step": self.step,
            **self.task.resolved_settings(),
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
        print(f"precision: {self.task.precision.policy} ({self.task.precision.reason})", file=sys.stderr)
        if self.chief:
            files.write_text(self.path(run_files.CONFIG), to_yaml(config))
            # One line per start (a run may resume on another machine): sessions.jsonl.
            files.append_line(self.path(run_files.SESSIONS), json.dumps(record))
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
        writer = tf.summary.create_file_writer(self.path(run_files.LOGS)) if self.chief else tf.summary.create_noop_writer()
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
                self.task.check_finite(metrics, step, self.manager.latest_checkpoint)
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
        print(f"input: {self.task.shard_description}; read {len(self.task.decoded_paths)} distinct target images", file=sys.stderr)
        if train.report_decoded_files:
            print("decoded files: " + json.dumps(sorted(self.task.decoded_paths)), file=sys.stderr)
        return self.path(run_files.GENERATOR)

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
