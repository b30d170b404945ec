"""What a run trains, apart from how the loop drives it: the models, optimizers and weight average, the input
pipeline, and one scheduled step (as in TF Model Garden's task / trainer split).

``GANTask`` builds everything under the strategy scope; ``train_step(batch)`` runs one scheduled update
of the discriminators (when the adversarial terms are on) and the generator (``gan_step``, per replica),
then the weight average. ``pnr_tf.training.trainer.Trainer`` owns the run directory, checkpoints,
summaries and the loop.
"""

import keras
import numpy as np
import tensorflow as tf

from pnr_tf.config import ConfigError
from pnr_tf.config import requested_precision
from pnr_tf.conventions import NUM_JOINTS
from pnr_tf.data.augment import Augmentation
from pnr_tf.data.pipeline import InputOptions
from pnr_tf.data.pipeline import make_dataset
from pnr_tf.models.factory import discriminator_from_config
from pnr_tf.models.factory import generator_from_config
from pnr_tf.models.loading import load_generator
from pnr_tf.models.loading import variables_by_path
from pnr_tf.ops.solvers import describe_solver
from pnr_tf.precision import resolve_precision
from pnr_tf.training import gan_step
from pnr_tf.training import schedule
from pnr_tf.training.gan_step import GANModels
from pnr_tf.training.gan_step import GANOptimizers
from pnr_tf.training.perceptual import build_vgg19_features


def is_float(variable):
    """Weights and batch-norm statistics, as opposed to integer state such as the row-dropout RNG's."""
    return "float" in str(variable.dtype)


class GANTask:
    """The models, optimizers, input and step of one run; built under ``strategy``'s scope.

    Args:
        config: a ``pnr_tf.config.Config``.
        strategy: the ``tf.distribute`` strategy the step runs under.
        random_vgg: a randomly initialised VGG19 for the perceptual loss (tests, benchmarks).
    """

    def __init__(self, config, strategy, random_vgg=False):
        self.config = config
        self.strategy = strategy
        # Resolved once, recorded with the session: what the layers compute in on this machine.
        self.precision = resolve_precision(requested_precision(config.train))
        self.unsupervised = config.train.mode == "unsupervised"
        keras.utils.set_random_seed(config.train.seed)
        with strategy.scope():
            self._build(random_vgg)
        self.shard_description = "no steps run"
        self.decoded_paths = set()  # target images the input pipeline reported (train.report_decoded_files)
        self._step_functions = {}
        self._learning_rate = None  # the rate last given to the optimizers
        self._update_average = tf.function(self._update_average_eagerly)

    def _build(self, random_vgg):
        """Models, the weight average and the optimizers, variables and slots created (under the strategy scope)."""
        config, policy = self.config, self.precision.policy
        features = None
        if config.loss.perceptual_weight > 0:
            features = build_vgg19_features(config.loss.vgg19_weights, random_weights=random_vgg, dtype_policy=policy)
        discriminators = {}
        if config.loss.adversarial:  # without the adversarial terms no discriminator is built or checkpointed
            height, width = config.data.image_height, config.data.image_width
            for name, channels in (("appearance_discriminator", 6), ("pose_discriminator", 3 + NUM_JOINTS)):
                discriminators[name] = discriminator_from_config(config.model, name, policy)
                discriminators[name](tf.zeros((1, height, width, channels)))
        self.models = GANModels(generator=generator_from_config(config, policy), features=features, **discriminators)
        # The weight average: same structure and name, so its checkpoint keys are the generator's; float32, as
        # the files it is saved to are run (a bfloat16 export is an export option, pnr_tf.export).
        self.average_generator = generator_from_config(config) if config.train.ema_decay > 0 else None
        if self.average_generator is not None:
            self.average_generator.set_weights(self.models.generator.get_weights())
        self.optimizers = GANOptimizers(
            generator=self._optimizer("generator_optimizer"),
            discriminator=self._optimizer("discriminator_optimizer") if discriminators else None,
        )
        # Slots must exist before the first distributed step (Keras 3 under MirroredStrategy).
        self.optimizers.generator.build(self.models.generator.trainable_variables)
        if discriminators:
            self.optimizers.discriminator.build(
                self.models.appearance_discriminator.trainable_variables + self.models.pose_discriminator.trainable_variables
            )

    def _optimizer(self, name):
        train = self.config.train
        optimizer = keras.optimizers.Adam(train.learning_rate, beta_1=train.beta_1, beta_2=train.beta_2, name=name)
        if self.precision.loss_scaling:
            optimizer = keras.optimizers.LossScaleOptimizer(optimizer, name=f"{name}_loss_scale")
        return optimizer

    def checkpoint_owners(self):
        """{name: model or optimizer} of everything a checkpoint holds."""
        owners = {"generator": self.models.generator, "generator_optimizer": self.optimizers.generator}
        if self.config.loss.adversarial:
            owners |= {"appearance_discriminator": self.models.appearance_discriminator, "pose_discriminator": self.models.pose_discriminator,
                       "discriminator_optimizer": self.optimizers.discriminator}  # fmt: skip
        if self.average_generator is not None:
            owners["generator_average"] = self.average_generator
        return owners

    def resolved_settings(self):
        """What "auto" settings became on this machine, and why: the regression's solver and the precision."""
        regression = self.models.generator.regression
        return {
            "solver_requested": regression.solver, "solver": regression.resolved_solver, "solver_detail": describe_solver(regression.resolved_solver),
            "precision_requested": requested_precision(self.config.train), "precision": self.precision.policy,
            "precision_reason": self.precision.reason,
        }  # fmt: skip

    @property
    def step(self):
        """Completed steps: the generator optimizer counts one update per step."""
        return int(self.optimizers.generator.iterations.numpy())

    @property
    def inference_generator(self):
        """The generator samples, validation and the saved files use: the weight average when kept."""
        return self.average_generator if self.average_generator is not None else self.models.generator

    def start_from(self, path):
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
            if is_float(variable):
                variable.assign(trained[key])
        if self.average_generator is not None:
            self.average_generator.set_weights(self.models.generator.get_weights())

    # Input -------------------------------------------------------------------------------------

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
        options = InputOptions(
            seed=train.seed, sigma=data.heatmap_sigma, skip_examples=start_step * per_replica * replicas_here, include_paths=True,
            augmentation=augmentation, target_masks=self.config.loss.foreground_weight > 0 or self.config.loss.mask_ssim_weight > 0,
        )  # fmt: skip
        return make_dataset(shard, per_replica, (data.image_height, data.image_width), options)

    def dataset(self, samples, start_step=0):
        """The training input, distributed: each input pipeline (one per worker) reads only its shard."""
        return self.strategy.distribute_datasets_from_function(lambda context: self.input_pipeline(samples, context, start_step))

    # One step ----------------------------------------------------------------------------------

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
            for optimizer in (self.optimizers.generator, self.optimizers.discriminator):
                if optimizer is not None:
                    optimizer.learning_rate = rate
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
            if is_float(variable):
                average.assign(decay * average + (1.0 - decay) * tf.cast(variable, average.dtype))
            else:
                average.assign(variable)

    def check_finite(self, metrics, step, latest_checkpoint):
        """FloatingPointError naming the step when a loss is not finite (the weights now hold the bad update)."""
        if not all(np.isfinite(list(metrics.values()))):
            terms = ", ".join(f"{name}={value:.4g}" for name, value in sorted(metrics.items()))
            raise FloatingPointError(
                f"non-finite loss at step {step} ({terms}); nothing of this step was saved, the last "
                f"checkpoint is {latest_checkpoint or 'none'}. A lower train.learning_rate, or "
                "a look at the data (pnr_tf.data.pipeline checks it), is the usual cure."
            )
