"""Typed configuration: frozen dataclasses loaded from YAML with `key=value` overrides, validated.

Every default is SPEC.md's; a YAML file states what differs. Errors name the offending key.
"""

import dataclasses
import typing

import yaml

from pnr_tf import files
from pnr_tf.data.datasets import MARKET
from pnr_tf.data.datasets import convention
from pnr_tf.data.keypoints import HEATMAP_SIGMA
from pnr_tf.precision import PRECISIONS


class ConfigError(ValueError):
    """An invalid configuration; the message names the key."""


@dataclasses.dataclass(frozen=True)
class DataConfig:
    root: str = "data/synthetic"  # a folder with images/, annotations.csv and the pair file
    pairs_file: str = "pairs.csv"  # relative to root unless absolute
    # Held-out pairs scored during training (SSIM, L1) every train.validate_every steps; None: no validation.
    validation_pairs: typing.Optional[str] = None
    # Fractions of the pair file's identities held out (seeded by train.seed): the run writes
    # split/pairs-{train,validation,test}.csv, trains on the first, validates on the second
    # (unless validation_pairs is set) and `python -m pnr_tf.evaluate --model RUN` scores the third.
    validation_identities: float = 0.0
    test_identities: float = 0.0
    annotation_file: str = "annotations.csv"
    image_dir: str = "images"
    # The naming convention: how an image's identity is read (pairs, identity splits) and, for the
    # built-in synthetic data, its image size and names. "market" or "deepfashion" (pnr_tf.data.datasets).
    dataset: str = "market"
    image_height: int = MARKET.image_size[0]
    image_width: int = MARKET.image_size[1]
    heatmap_sigma: float = HEATMAP_SIGMA
    on_bad_sample: str = "error"  # "error" or "skip"
    # Training-time augmentation, the same for an example's sources and target (pnr_tf.data.augment);
    # the paper uses none. Mirror left-right; zoom by up to 1 +- augment_scale and shift by up to half
    # of it; change brightness, contrast and saturation by up to augment_colour (hue by a tenth of it).
    augment_mirror: bool = False
    augment_scale: float = 0.0
    augment_colour: float = 0.0
    # Supervised training also pairs each training photo with itself mirrored as the target (a pose the
    # person was not photographed in, drawn exactly); people with one usable photo, whom the pair
    # file cannot hold, train this way too. Identities held out (validation, test) never do.
    mirror_pairs: bool = False
    # When root has no annotation file and synthetic is true, the built-in dataset is written there.
    synthetic: bool = False
    # When root has no annotation file: the Market and DeepFashion samples under this folder (../shared/data),
    # framed at the image size as prepare frames a photo, are written there (pnr_tf.data.real_people).
    real_people_from: str = ""
    synthetic_identities: int = 40
    synthetic_images_per_identity: int = 8

    def path(self, name):
        """A data file's path (string, maybe a URI such as gs://...): name as given if absolute, else under root."""
        return files.join(self.root, name)


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    base_filters: int = 64
    num_encoder_blocks: int = 6
    num_decoder_blocks: int = 6
    pose_dim: int = 32
    # The pose encoder E_p; unset: E_a's width and depth (the paper's). A leaner E_p (configs/*_fast.yaml)
    # costs less per rendered pose; pose_stem_strides 2 runs its 7x7 stem at half resolution.
    pose_base_filters: typing.Optional[int] = None
    num_pose_blocks: typing.Optional[int] = None
    pose_stem_strides: int = 1
    norm: str = "batch"
    p: int = 1
    num_iterations: int = 5
    delta: float = 1e-2
    ridge: float = 1e-3
    solver: str = "auto"  # "auto" | "fused" | "cholesky" | "matmul": pnr_tf.ops.solvers
    # p = 1: whether the gradient of IRLS's last iteration runs through its weights 1 / max(|r|, delta)
    # (true, the layer's default) or holds them constant (false), differentiating the weighted least
    # squares it solves. false drew better people in every recipe measured (BENCHMARKS.md).
    irls_weight_gradient: bool = False
    # Outside training the generator also draws the mirrored inputs and averages the two (PNRGenerator):
    # twice the inference work; the paper draws once. Not a training setting: a run's weights are the same.
    test_time_mirror: bool = False
    discriminator_filters: int = 64
    discriminator_blocks: int = 3


@dataclasses.dataclass(frozen=True)
class LossConfig:
    l1_weight: float = 10.0
    perceptual_weight: float = 10.0
    gan_appearance_weight: float = 5.0
    gan_pose_weight: float = 5.0
    # The L1 term weighs each pixel 1 + foreground_weight * (inside the target's body mask): PG2's
    # pose-mask L1 at 1. 0: the paper's plain L1. The logged "l1" stays the plain mean.
    foreground_weight: float = 0.0
    # 1 - SSIM of the generated and real target inside the target's body mask (mask-SSIM as a loss,
    # pnr_tf.losses.ssim_loss): L1 alone draws the blurry mean of what could be there. 0: the paper's losses.
    mask_ssim_weight: float = 0.0
    # 1 - SSIM of the whole generated and real target (pnr_tf.losses.ssim_loss without a mask): the
    # measure the field reports, background included. 0: the paper's losses.
    ssim_weight: float = 0.0
    # false: no adversarial terms, and no discriminators built or checkpointed (reconstruction losses only).
    adversarial: bool = True
    # The adversarial terms (and the discriminators' training) start after this many steps of
    # reconstruction only (L1, perceptual), then ramp linearly to their weights over the next
    # adversarial_ramp_steps. 0 and 0: the paper's schedule, adversarial from the first step.
    adversarial_warmup_steps: int = 0
    adversarial_ramp_steps: int = 0
    vgg19_weights: typing.Optional[str] = None  # None: the standard Keras cache file


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    mode: str = "supervised"  # "supervised" (pairs) or "unsupervised" (source = target, rows dropped)
    row_keep_probability: float = 1.0
    # Sources per training example: the pair's source and num_sources - 1 more photos of the person
    # (never the target), the first repeated where the person has no more (which equals M = 1).
    num_sources: int = 1
    batch_size: int = 8  # global, over all replicas
    num_steps: int = 1000
    learning_rate: float = 2e-3
    # Both optimizers' rate stays learning_rate until this fraction of num_steps, then falls linearly to
    # 0 at num_steps (pix2pix's "linear decay" epochs); 1.0 keeps it constant.
    decay_start: float = 1.0
    beta_1: float = 0.5
    beta_2: float = 0.999
    seed: int = 0
    # auto: bfloat16 on CPUs with AMX or AVX512-BF16 (and Ampere GPUs), float32 elsewhere (pnr_tf.precision);
    # the regression, losses and weight average stay float32. mixed_precision: true (older configs) is mixed_float16.
    precision: str = "auto"
    mixed_precision: bool = False
    # Samples, validation and the saved generator use an exponential moving average of the
    # generator's weights (decay min(ema_decay, (1 + t) / (10 + t)) at step t); 0 turns it off.
    ema_decay: float = 0.999
    # A new run starts from this generator's weights instead of random ones (a .keras file, a run
    # directory or a checkpoint, as evaluate takes them): fine-tuning, e.g. your own photos from a
    # market_cpu run. Its model.* settings must be this config's; the discriminators, the optimizers
    # and the row-dropout RNG start fresh. A resumed run continues its own checkpoint and ignores it.
    initial_weights: str = ""
    log_every: int = 10
    sample_every: int = 100
    checkpoint_every: int = 100  # generator.keras is written with every checkpoint
    # Multi-worker training: a collective that waits this long for a worker fails the step (a dead worker
    # stops the others with a message instead of a hang). report_decoded_files prints, per worker, the image
    # files its input pipeline read (to check sharding).
    collective_timeout_seconds: float = 600.0
    report_decoded_files: bool = False
    validate_every: int = 500
    validation_size: int = 256  # validation pairs scored, spread evenly over the held-out ones; 0: all
    max_checkpoints: int = 3


@dataclasses.dataclass(frozen=True)
class Config:
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    loss: LossConfig = LossConfig()
    train: TrainConfig = TrainConfig()


_CHOICES = {
    "data.on_bad_sample": ("error", "skip"),
    "data.dataset": ("market", "deepfashion"),
    "model.norm": ("batch", "instance"),
    "model.p": (1, 2),
    "model.pose_stem_strides": (1, 2),
    "model.solver": ("auto", "fused", "cholesky", "matmul"),
    "train.mode": ("supervised", "unsupervised"),
    "train.precision": PRECISIONS,
}
_POSITIVE = {
    "data.image_height", "data.image_width", "data.heatmap_sigma", "model.base_filters", "model.pose_dim",
    "model.num_iterations", "model.delta", "model.discriminator_filters", "train.batch_size", "train.num_steps",
    "train.learning_rate", "train.log_every", "train.sample_every", "train.checkpoint_every", "train.max_checkpoints",
    "train.validate_every", "train.collective_timeout_seconds", "train.num_sources",
}  # fmt: skip


def _coerce(key, value, annotation):
    """value as the field's type, or ConfigError naming the key."""
    optional = typing.get_origin(annotation) is typing.Union and type(None) in typing.get_args(annotation)
    if value is None:
        if optional:
            return None
        raise ConfigError(f"{key} must not be null")
    kind = typing.get_args(annotation)[0] if optional else annotation
    if kind is bool:
        if isinstance(value, bool):
            return value
    elif kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif kind is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads 1e-4 (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
    elif kind is str:
        if isinstance(value, str):
            return value
    raise ConfigError(f"{key} must be {kind.__name__}, got {value!r} ({type(value).__name__})")


def _build_section(section_class, section_name, values):
    if not isinstance(values, dict):
        raise ConfigError(f"{section_name} must be a mapping, got {values!r}")
    hints = typing.get_type_hints(section_class)
    known = {field.name for field in dataclasses.fields(section_class)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"unknown key {section_name}.{unknown[0]}; known keys: {', '.join(sorted(known))}")
    coerced = {name: _coerce(f"{section_name}.{name}", value, hints[name]) for name, value in values.items()}
    return section_class(**coerced)


def config_from_dict(values):
    """Config from a nested dict (e.g. parsed YAML), validated."""
    values = values or {}
    if not isinstance(values, dict):
        raise ConfigError(f"a config is a mapping of sections, got {type(values).__name__}")
    sections = {field.name: field.type for field in dataclasses.fields(Config)}
    unknown = sorted(set(values) - set(sections))
    if unknown:
        raise ConfigError(f"unknown section {unknown[0]}; known sections: {', '.join(sections)}")
    hints = typing.get_type_hints(Config)
    config = Config(**{name: _build_section(hints[name], name, values.get(name, {})) for name in sections})
    validate(config)
    return config


def validate(config):
    for key, choices in _CHOICES.items():
        value = _lookup(config, key)
        if value not in choices:
            raise ConfigError(f"{key} must be one of {choices}, got {value!r}")
    for key in _POSITIVE:
        if not _lookup(config, key) > 0:
            raise ConfigError(f"{key} must be positive, got {_lookup(config, key)!r}")
    for key in ("loss.adversarial_warmup_steps", "loss.adversarial_ramp_steps", "train.validation_size"):
        if _lookup(config, key) < 0:
            raise ConfigError(f"{key} must be >= 0, got {_lookup(config, key)!r}")
    for key in ("data.validation_identities", "data.test_identities"):
        if not 0 <= _lookup(config, key) < 1:
            raise ConfigError(f"{key} must be in [0, 1), got {_lookup(config, key)!r}")
    for key in ("train.beta_1", "train.beta_2"):
        if not 0 <= _lookup(config, key) < 1:
            raise ConfigError(f"{key} must be in [0, 1) (Adam's decay rates), got {_lookup(config, key)!r}")
    if config.train.mixed_precision and config.train.precision not in ("auto", "mixed_float16"):
        raise ConfigError(f"train.mixed_precision: true means train.precision: mixed_float16, but train.precision is {config.train.precision}; "
                          "set only train.precision")  # fmt: skip
    if config.data.mirror_pairs and config.train.mode == "unsupervised":
        raise ConfigError("data.mirror_pairs adds supervised pairs; unsupervised training reconstructs its sources (turn one off)")
    for key in ("data.augment_scale", "data.augment_colour"):
        if not 0 <= _lookup(config, key) <= 0.5:
            raise ConfigError(f"{key} must be in [0, 0.5], got {_lookup(config, key)!r}")
    for key in ("model.ridge", "model.num_encoder_blocks", "model.num_decoder_blocks", "model.discriminator_blocks",
                "loss.l1_weight", "loss.perceptual_weight", "loss.gan_appearance_weight", "loss.gan_pose_weight",
                "loss.foreground_weight", "loss.mask_ssim_weight", "loss.ssim_weight"):  # fmt: skip
        if _lookup(config, key) < 0:
            raise ConfigError(f"{key} must be >= 0, got {_lookup(config, key)!r}")
    if not 0 <= config.train.decay_start <= 1:
        raise ConfigError(f"train.decay_start must be in [0, 1] (a fraction of train.num_steps), got {config.train.decay_start}")
    if not 0 <= config.train.ema_decay < 1:
        raise ConfigError(f"train.ema_decay must be in [0, 1), got {config.train.ema_decay}")
    if not 0 < config.train.row_keep_probability <= 1:
        raise ConfigError(f"train.row_keep_probability must be in (0, 1], got {config.train.row_keep_probability}")
    for key in ("data.image_height", "data.image_width"):
        if _lookup(config, key) % 4:
            raise ConfigError(f"{key} must be a multiple of 4, got {_lookup(config, key)}")
    if config.data.synthetic:
        expected = convention(config.data.dataset).image_size
        if (config.data.image_height, config.data.image_width) != expected:
            raise ConfigError(
                f"data.synthetic with data.dataset {config.data.dataset} draws {expected[0]} x {expected[1]} images; "
                f"data.image_height / image_width are {config.data.image_height} x {config.data.image_width}"
            )


def requested_precision(train):
    """train.precision, with the older train.mixed_precision: true read as mixed_float16."""
    return "mixed_float16" if train.mixed_precision else train.precision


def _lookup(config, key):
    section, name = key.split(".")
    return getattr(getattr(config, section), name)


def parse_override(text):
    """'section.key=value' -> (['section', 'key'], value parsed as YAML)."""
    if "=" not in text:
        raise ConfigError(f"an override is section.key=value, got {text!r}")
    key, raw = text.split("=", 1)
    parts = key.strip().split(".")
    if len(parts) != 2 or not all(parts):
        raise ConfigError(f"an override key is section.key, got {key!r}")
    if not raw.strip():  # `--set train.initial_weights=`: nothing, which YAML would read as null
        return parts, ""
    try:
        return parts, yaml.safe_load(raw)
    except yaml.YAMLError as error:
        raise ConfigError(f"{key.strip()}: the value {raw!r} is not valid YAML ({getattr(error, 'problem', None) or error})") from None


def _read_yaml_config(path, including=()):
    """The nested dict of a YAML config file, with the file named by its ``include`` key under it.

    ``include: other.yaml`` (relative to this file's folder) reads that config first; this file's keys
    then replace its keys one by one, section by section.
    """
    if files.is_dir(path):
        raise ConfigError(f"config file {path} is a folder, not a YAML file")
    if not files.is_file(path):
        raise ConfigError(f"config file {path} does not exist")
    try:
        values = yaml.safe_load(files.read_text(path)) or {}
    except yaml.YAMLError as error:
        where = getattr(error, "problem_mark", None)
        line = f" (line {where.line + 1})" if where is not None else ""
        raise ConfigError(f"{path} is not valid YAML{line}: {getattr(error, 'problem', None) or error}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path} is not a UTF-8 text file") from None
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: a config is a mapping of sections")
    included = values.pop("include", None)
    if included is None:
        return values
    if not isinstance(included, str) or not included:
        raise ConfigError(f"{path}: include must name one config file, got {included!r}")
    included_path = files.join(files.parent(path), included)  # an absolute path or URI stays as it is
    if included_path in (*including, path):
        raise ConfigError(f"{path}: include {included} makes a cycle")
    merged = _read_yaml_config(included_path, (*including, path))
    for section, section_values in values.items():
        if isinstance(section_values, dict) and isinstance(merged.get(section), dict):
            merged[section] = {**merged[section], **section_values}
        else:
            merged[section] = section_values
    return merged


def load_config(path=None, overrides=()):
    """Config from a YAML file (or defaults when path is None) with 'section.key=value' overrides."""
    values = {} if path is None else _read_yaml_config(str(path))
    for override in overrides:
        (section, name), value = parse_override(override)
        values.setdefault(section, {})
        if not isinstance(values[section], dict):
            raise ConfigError(f"{section} must be a mapping")
        values[section][name] = value
    return config_from_dict(values)


def check_data_paths(config, mode=None):
    """Raises ConfigError naming the key when a data path the run needs is missing."""
    mode = mode or config.train.mode
    if (config.data.synthetic or config.data.real_people_from) and not files.is_file(config.data.path(config.data.annotation_file)):
        return  # the dataset will be written there
    needed = [("data.annotation_file", config.data.annotation_file), ("data.image_dir", config.data.image_dir)]
    if mode == "supervised":
        needed.append(("data.pairs_file", config.data.pairs_file))
    if config.data.validation_pairs:
        needed.append(("data.validation_pairs", config.data.validation_pairs))
    for key, name in needed:
        path = config.data.path(name)
        if not files.exists(path):
            raise ConfigError(f"{key}: {path} does not exist (data.root is {config.data.root!r})")


# What a checkpoint and its run's data depend on, besides every model.* key: resuming with another value
# would continue other weights, read images at another size, or move held-out people into training.
_RUN_DATA_KEYS = ("data.image_height", "data.image_width", "data.heatmap_sigma", "data.dataset", "data.validation_identities",
                  "data.test_identities")  # fmt: skip
# model.* keys that change how a trained generator draws, not its weights: a resume may change them.
_INFERENCE_ONLY_KEYS = ("model.test_time_mirror",)


def resume_changes(run_config, config):
    """{key: (value in the run, value now)} of the keys a resumed run may change (train.*, loss.*, other data.*).

    Raises ConfigError naming every key it may not: model.*, the data contract (image size, heatmap
    sigma, dataset convention, held-out fractions), train.seed when people are held out (it chose
    them), and the switches that change what a checkpoint holds (float16's loss scaling, a weight average,
    dropping the discriminators; adding them starts them fresh).
    """
    before, now = to_dict(run_config), to_dict(config)
    changed = {f"{section}.{name}": (before[section][name], now[section][name])
               for section in now for name in now[section] if before[section][name] != now[section][name]}  # fmt: skip
    holds_out = run_config.data.validation_identities > 0 or run_config.data.test_identities > 0
    # float16 adds loss-scale variables to the checkpoint; float32 and bfloat16 keep the same ones.
    scaled = [requested_precision(train) == "mixed_float16" for train in (run_config.train, config.train)]
    refused = [key for key in changed if (key.startswith("model.") and key not in _INFERENCE_ONLY_KEYS) or key in _RUN_DATA_KEYS
               or (key in ("train.mixed_precision", "train.precision") and scaled[0] != scaled[1])
               or (key == "train.seed" and holds_out) or (key == "train.ema_decay" and (0 in changed[key]))
               or (key == "loss.adversarial" and changed[key] == (True, False))]  # fmt: skip
    if refused:
        described = "; ".join(f"{key}: {changed[key][0]!r} in the run, {changed[key][1]!r} now" for key in refused)
        raise ConfigError(
            f"the run was trained with another model or data ({described}). A checkpoint resumes only with the settings that made "
            "it: drop these changes to resume, or train into a new --output-dir"
        )
    return changed


def to_dict(config):
    return dataclasses.asdict(config)


def to_yaml(config):
    return yaml.safe_dump(to_dict(config), sort_keys=False)
