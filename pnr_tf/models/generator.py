"""The pNR generator as one Keras model: encoders, p-norm regression, decoder, and its inference contract."""

import dataclasses
import warnings

import keras
import tensorflow as tf

from pnr_tf.conventions import KEYPOINT_FORMAT
from pnr_tf.data.keypoints import HEATMAP_SIGMA
from pnr_tf.layers.blocks import build_sublayer
from pnr_tf.layers.decoder import ImageDecoder
from pnr_tf.layers.encoders import AppearanceEncoder
from pnr_tf.layers.encoders import PoseEncoder
from pnr_tf.layers.regression import PNormRegression

INPUT_NAMES = ("source_image", "source_pose", "target_pose")


@dataclasses.dataclass(frozen=True)
class InferenceContract:
    """What an image and a pose mean to a generator; stored in its .keras file.

    Images are (image_height, image_width) RGB; poses are 18 keypoints in ``keypoint_format``
    (``pnr_tf.conventions``), turned into Gaussian heatmaps of width ``heatmap_sigma`` pixels
    (data.heatmap_sigma in training). With ``test_time_mirror`` inference (``pnr_tf.inference.PoseTransfer``)
    draws the person twice, from the inputs and from their mirror image, and averages.
    """

    image_height: int
    image_width: int
    heatmap_sigma: float = HEATMAP_SIGMA
    keypoint_format: str = KEYPOINT_FORMAT
    test_time_mirror: bool = False

    @property
    def image_size(self):
        return (self.image_height, self.image_width)

    def to_config(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_config(cls, config):
        return config if isinstance(config, cls) else cls(**config)


@keras.saving.register_keras_serializable(package="pnr_tf")
class PNRGenerator(keras.Model):
    """Draws the person of one or more source images in a target pose.

    Inputs, a dict:
        ``source_image`` (batch, M, H, W, 3) float in [-1, 1]; (batch, H, W, 3) means M = 1.
        ``source_pose`` (batch, M, H, W, 18) heatmaps; (batch, H, W, 18) means M = 1.
        ``target_pose`` (batch, H, W, 18) heatmaps.
    Output: (batch, H, W, 3) float32 in [-1, 1].

    M is dynamic: the rows of the M sources are stacked into one regression, so a model trained
    with M = 1 runs M = 3 or 5 unchanged. H and W must be multiples of 4.

    In training mode with ``row_keep_probability < 1`` each source row is kept with that
    probability (the paper's unsupervised setting, eq. 4), drawn from a seeded generator.

    A call draws once; how a trained generator is run (its contract's ``test_time_mirror``) is
    ``pnr_tf.inference.PoseTransfer``'s business.

    Args:
        appearance_encoder: E_a, an ``AppearanceEncoder`` (default-built when None).
        pose_encoder: E_p, a ``PoseEncoder`` (default-built when None).
        regression: the ``PNormRegression`` layer (p = 1 by default).
        decoder: G, an ``ImageDecoder``.
        row_keep_probability: Bernoulli keep probability of each source row in training.
        seed: seed of the row-dropout generator.
        contract: an ``InferenceContract`` (or its config dict): image size, heatmap width,
            keypoint convention and mirror averaging inference must follow. None: the built input size, sigma 6.
        **kwargs: forwarded to ``keras.Model``.

    Example:
    >>> generator = PNRGenerator()
    >>> images = generator({"source_image": source, "source_pose": source_heatmaps, "target_pose": target_heatmaps})
    """

    def __init__(
        self,
        appearance_encoder=None,
        pose_encoder=None,
        regression=None,
        decoder=None,
        row_keep_probability=1.0,
        seed=None,
        contract=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.contract = None if contract is None else InferenceContract.from_config(contract)
        if not 0.0 < row_keep_probability <= 1.0:
            raise ValueError(f"row_keep_probability must be in (0, 1], got {row_keep_probability!r}")
        self.appearance_encoder = appearance_encoder or AppearanceEncoder(name="appearance_encoder")
        self.pose_encoder = pose_encoder or PoseEncoder(name="pose_encoder")
        self.regression = regression or PNormRegression(name="regression")
        self.decoder = decoder or ImageDecoder(name="decoder")
        if self.appearance_encoder.output_dim != self.decoder.input_dim:
            raise ValueError(
                f"the appearance encoder gives d = {self.appearance_encoder.output_dim} features per row but the "
                f"decoder takes {self.decoder.input_dim}"
            )
        self.row_keep_probability = float(row_keep_probability)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed, name="row_dropout_seed")

    def build(self, input_shape):
        shapes = _validated_shapes(input_shape)
        # Kept for get_build_config: loading rebuilds the variables before it restores their values.
        self._input_shapes = {name: [None, *shape[1:]] for name, shape in shapes.items()}
        image_shape = (None, *shapes["source_image"][-3:])
        pose_shape = (None, *shapes["target_pose"][-3:])
        built_size = tuple(pose_shape[1:3])
        if self.contract is None and None not in built_size:
            self.contract = InferenceContract(*built_size)
        elif self.contract is not None and None not in built_size and built_size != self.contract.image_size:
            raise ValueError(f"the generator's contract is {self.contract.image_size} images, but it is built for {built_size}")
        build_sublayer(self.appearance_encoder, image_shape)
        build_sublayer(self.pose_encoder, pose_shape)
        height, width = pose_shape[1], pose_shape[2]
        build_sublayer(self.decoder, (None, height // 4, width // 4, self.decoder.input_dim))
        self.built = True

    def get_build_config(self):
        return {"input_shape": self._input_shapes} if self.built else {}

    def build_from_config(self, config):
        if "input_shape" in config:
            self.build(config["input_shape"])

    def call(self, inputs, training=None):
        _validated_shapes({name: inputs[name].shape for name in INPUT_NAMES} if isinstance(inputs, dict) else inputs)
        coefficients = self.encode(inputs["source_image"], inputs["source_pose"], training=training)
        return self.render(coefficients, inputs["target_pose"], training=training)

    def encode(self, source_image, source_pose, training=None):
        """The person, pose removed: W (batch, k, d) of A = P W over the rows of all M sources.

        source_image (batch, M, H, W, 3) in [-1, 1] and source_pose (batch, M, H, W, 18) heatmaps, or
        4-D for M = 1. W is float32. ``render(encode(...), target_pose)`` equals ``call``.
        """
        source_image, source_pose = tf.convert_to_tensor(source_image), tf.convert_to_tensor(source_pose)
        if source_image.shape.rank == 4:
            source_image = tf.expand_dims(source_image, 1)
        if source_pose.shape.rank == 4:
            source_pose = tf.expand_dims(source_pose, 1)
        batch_size = tf.shape(source_image)[0]
        # Encode all M sources as one batch, then stack their rows: (batch, M * n, .). This reshape keeps
        # its runtime batch size: with every size static here, TensorFlow 2.21's int8 calibrator crashes
        # (segmentation fault) on the serving_default model, as it does on a fixed-batch one.
        source_appearance = self.appearance_encoder(_merge_sources(source_image), training=training)
        source_pose_rows = self.pose_encoder(_merge_sources(source_pose), training=training)
        source_appearance = tf.reshape(source_appearance, [batch_size, -1, source_appearance.shape[-1]])
        source_pose_rows = tf.reshape(source_pose_rows, [batch_size, -1, source_pose_rows.shape[-1]])
        row_weights = None
        if training and self.row_keep_probability < 1.0:
            uniform = keras.random.uniform(tf.shape(source_pose_rows)[:2], seed=self.seed_generator)
            row_weights = tf.cast(uniform < self.row_keep_probability, tf.float32)
        return self.regression.estimate(source_appearance, source_pose_rows, row_weights)

    def render(self, coefficients, target_pose, training=None):
        """The person W (batch or 1, k, d) drawn in target_pose (batch, H, W, 18): (batch, H, W, 3) in [-1, 1].

        A W of batch 1 is drawn in every pose of the batch: encode once, render many.
        """
        target_pose = tf.convert_to_tensor(target_pose)
        target_pose_rows = self.pose_encoder(target_pose, training=training)
        target_appearance = self.regression.predict(target_pose_rows, coefficients)
        height, width = target_pose.shape[1], target_pose.shape[2]
        if height is not None and width is not None:
            # Static sizes and -1 for the batch: TFLite then sizes this reshape when it prepares the model,
            # instead of at every call from a runtime shape (which made every later tensor dynamic).
            feature_map = tf.reshape(target_appearance, [-1, -(-height // 4), -(-width // 4), self.decoder.input_dim])
        else:
            height = (tf.shape(target_pose)[1] + 3) // 4
            width = (tf.shape(target_pose)[2] + 3) // 4
            feature_map = tf.reshape(target_appearance, [tf.shape(target_pose)[0], height, width, self.decoder.input_dim])
        feature_map = tf.cast(feature_map, self.compute_dtype)
        return self.decoder(feature_map, training=training)

    def compute_output_shape(self, input_shape):
        target_shape = input_shape["target_pose"]
        return (target_shape[0], target_shape[1], target_shape[2], 3)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "appearance_encoder": keras.saving.serialize_keras_object(self.appearance_encoder),
                "pose_encoder": keras.saving.serialize_keras_object(self.pose_encoder),
                "regression": keras.saving.serialize_keras_object(self.regression),
                "decoder": keras.saving.serialize_keras_object(self.decoder),
                "row_keep_probability": self.row_keep_probability,
                "seed": self.seed,
                "contract": None if self.contract is None else self.contract.to_config(),
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if "contract" not in config:  # a file saved before the contract was recorded: build() fills it in
            warnings.warn(
                f"pnr_tf: this generator file records no inference contract (saved by an earlier pnr_tf); assuming "
                f"images of the size it was built for, heatmap sigma {HEATMAP_SIGMA:g}, {KEYPOINT_FORMAT} keypoints",
                stacklevel=2,
            )
        mirror = config.pop("test_time_mirror", None)  # files that kept the setting on the generator itself
        if mirror is not None and config.get("contract") is not None:
            config["contract"] = {**config["contract"], "test_time_mirror": bool(mirror)}
        for name in ("appearance_encoder", "pose_encoder", "regression", "decoder"):
            config[name] = keras.saving.deserialize_keras_object(config[name])
        return cls(**config)


def copy_generator(generator, solver=None, subpixel_upsampling=None, dtype_policy=None, contract_changes=None):
    """A copy of a built ``generator`` sharing no state with it, with the same weights and, where given, its
    regression running ``solver``, its decoder upsampling by sub-pixel convolutions, its layers computing
    in ``dtype_policy`` (e.g. "mixed_bfloat16"; the regression stays float32) or its contract changed.
    Exports use it: stock ops for TF-Serving, builtin ops for TFLite, bfloat16 for CPUs that have it."""
    config = generator.get_config()
    if solver is not None:
        config["regression"]["config"]["solver"] = solver
    if subpixel_upsampling is not None:
        config["decoder"]["config"]["subpixel_upsampling"] = subpixel_upsampling
    if dtype_policy is not None:
        policy = keras.dtype_policies.serialize(keras.dtype_policies.get(dtype_policy))
        for part in (config, *(config[name]["config"] for name in ("appearance_encoder", "pose_encoder", "decoder"))):
            part["dtype"] = policy
    if contract_changes:
        config["contract"] = {**config["contract"], **contract_changes}
    copy = PNRGenerator.from_config(config)
    copy.build_from_config(generator.get_build_config())
    copy.set_weights(generator.get_weights())
    return copy


def _merge_sources(tensor):
    """(batch, M, H, W, C) -> (batch * M, H, W, C)."""
    if None not in tensor.shape[2:]:
        # Static sizes and -1 for the batch: an exported TFLite model then sizes its tensors when it is
        # prepared, not from runtime shapes at every call (which leaves ops to slower non-XNNPACK kernels).
        return tf.reshape(tensor, [-1, *tensor.shape[2:]])
    return tf.reshape(tensor, tf.concat([[-1], tf.shape(tensor)[2:]], axis=0))


def _validated_shapes(shapes):
    """Checks the input dict's names and ranks; returns it. Errors name the offending input."""
    if not isinstance(shapes, dict):
        raise TypeError(f"PNRGenerator takes a dict with keys {INPUT_NAMES}, got {type(shapes).__name__}")
    missing = [name for name in INPUT_NAMES if name not in shapes]
    if missing:
        raise KeyError(f"PNRGenerator inputs are missing {missing}; expected keys {INPUT_NAMES}")
    shapes = {name: tuple(shapes[name]) for name in INPUT_NAMES}
    expectations = {"source_image": (3, (4, 5)), "source_pose": (None, (4, 5)), "target_pose": (None, (4,))}
    for name, (channels, ranks) in expectations.items():
        shape = shapes[name]
        if len(shape) not in ranks:
            raise ValueError(f"{name} must have rank {' or '.join(map(str, ranks))}, got shape {shape}")
        if channels is not None and shape[-1] not in (None, channels):
            raise ValueError(f"{name} must have {channels} channels, got shape {shape}")
    if len(shapes["source_image"]) != len(shapes["source_pose"]):
        raise ValueError(
            f"source_image {shapes['source_image']} and source_pose {shapes['source_pose']} must both be "
            "4-D (one source) or both 5-D (M sources)"
        )
    height, width = shapes["target_pose"][1], shapes["target_pose"][2]
    for size, axis in ((height, "height"), (width, "width")):
        if size is not None and size % 4:
            raise ValueError(f"image {axis} must be a multiple of 4, got {size}")
    return shapes
