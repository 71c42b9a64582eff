"""Typed, frozen run configuration, loaded from YAML or JSON with `key=value` overrides.

Every checkpoint stores the full `Config` as JSON, so a model can always be rebuilt and sampled
exactly as it was trained.
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml

from sr3.errors import SR3Error


# The one vocabulary of numeric precision, for sampling (`--precision`) and training (`train.precision`);
# what each name means to torch and Accelerate is `sr3.device`'s table.
Precision = Literal["fp32", "bf16", "fp16"]
PRECISIONS: tuple[str, ...] = typing.get_args(Precision)

MIN_TILE = 8  # input pixels: a smaller tile holds too little context for the network's receptive field


@dataclass(frozen=True)
class ModelConfig:
    """The network: `arch` names it in `sr3.models.NETWORKS`; the other keys size it (the SR3/BigGAN U-Net's).

    `in_channels` counts the noisy image plus any concatenated condition. `attn_resolutions` are
    feature-map sizes at the training resolution `image_size`; the network itself is fully convolutional.
    `options`: the keys of `arch`'s network alone (its own dataclass in `sr3.models`, checked when it is built).
    """

    arch: str = "unet"
    image_size: int = 128
    in_channels: int = 6
    out_channels: int = 3
    base_channels: int = 64
    channel_mults: list[int] = field(default_factory=lambda: [1, 2, 4, 8, 8])
    num_res_blocks: int = 2
    attn_resolutions: list[int] = field(default_factory=lambda: [16])
    attn_head_channels: int = 64
    dropout: float = 0.0
    norm_groups: int = 32
    film: Literal["scale_shift", "additive"] = "scale_shift"
    num_classes: int = 0
    augment_embedding: bool = False
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def is_sr(self) -> bool:
        """An SR stage sees an upsampled LR image beside the noisy one; a base model (CDM) sees none."""
        return self.in_channels > self.out_channels


@dataclass(frozen=True)
class NoiseConfig:
    """Training noise schedule (SR3: linear beta, T=2000), parameterisation and loss.

    `residual`: diffuse HR minus the upsampled LR instead of HR itself (SR stages only).
    `regression`: train the same network as a plain regression model instead (SR3's reference point): it is
    shown no noisy image and predicts x0 in one evaluation, so it needs `parameterization: x0`.
    `sigma_max` > 0: train only on the schedule's steps up to the last whose sigma is at most this (0: all of
    them). The residual of a good prediction is small, so a refiner needs only low noise levels (IR-SDE, SRDiff).
    `min_snr` k > 0: weight each sample's loss by min(SNR, k) over its target's own weighting (Min-SNR-k,
    Hang et al. 2023), so the easy low-noise levels stop dominating; 0: the plain loss.
    """

    schedule: Literal["linear", "cosine"] = "linear"
    timesteps: int = 2000
    beta_start: float = 1e-6
    beta_end: float = 1e-2
    parameterization: Literal["eps", "x0", "v"] = "eps"
    loss: Literal["l1", "l2"] = "l1"
    residual: bool = False
    regression: bool = False
    sigma_max: float = 0.0
    min_snr: float = 0.0


@dataclass(frozen=True)
class SamplerConfig:
    """How to sample: a sampler by name over a sigma grid of `steps` network evaluations."""

    name: str = "dpmpp_2m"
    steps: int = 50
    schedule: Literal["spaced", "karras"] = "karras"
    eta: float = 0.0
    sigmas: list[float] = field(default_factory=list)
    # LR pixels per tile (0: whole images): larger inputs are denoised as overlapping tiles, so memory stays
    # bounded. GroupNorm statistics depend on the image size, so a model trained on small crops may also
    # sample better in tiles near its crop size than on a whole large image.
    tile: int = 128
    # pin the output's low frequencies (its colours) to the LR input (`sr3.resize.low_frequency_fix`)
    colour_fix: bool = True
    # > 0: refine the prediction instead of sampling from pure noise: start at the prediction noised to this
    # sigma and walk the grid down from it (SDEdit, CCDF); a refiner trained up to noise.sigma_max samples so
    sigma_max: float = 0.0
    # pull every estimate of the image onto the LR input on the way (CCDF's data consistency), not only the end
    project: bool = False


@dataclass(frozen=True)
class PredictorConfig:
    """What an SR stage refines (`sr3.predictors.PREDICTORS`): `bicubic`, SR3's upsample of the LR image, or
    `regression`, the one-evaluation output of a trained regression network (DvSR, SRDiff: predict, then refine).

    `model`: the regression network, a shipped model or a path, read when training starts; the stage's own
    weights file then carries it, so one file still ships. `with_bicubic`: the network sees the bicubic
    upsample beside the prediction (the residual is always taken to the prediction).
    """

    name: str = "bicubic"
    model: str = ""
    with_bicubic: bool = False


@dataclass(frozen=True)
class AugmentConfig:
    """CDM conditioning augmentation of the low-resolution input (off by default)."""

    noise_max: float = 0.0
    blur_prob: float = 0.0
    blur_sigma: list[float] = field(default_factory=lambda: [0.4, 0.6])
    blur_kernel: int = 3


@dataclass(frozen=True)
class DataConfig:
    """How HR images become training pairs: random crops, whole aligned faces, or whole labelled images.

    `classes`: one sub-folder per class (its name is the class); images are resized whole to `hr_size`.
    `class_names` is filled in from the folders when training starts and saved with every checkpoint.
    `holdout`: the fraction of images, chosen by a hash of their file names, kept out of training for
    validation and evaluation (`sr3 eval --holdout`).
    """

    mode: Literal["crops", "faces", "classes"] = "crops"
    degradation: str = "bicubic"  # how HR becomes LR: a name in `sr3.data.degradations.DEGRADATIONS`
    scale: int = 4
    hr_size: int = 64
    channels: Literal[3] = 3
    class_names: list[str] = field(default_factory=list)
    holdout: float = 0.0


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation, logging, validation and checkpointing of `sr3 train`."""

    batch_size: int = 16
    grad_accum: int = 1
    lr: float = 1e-4
    warmup_steps: int = 1000
    weight_decay: float = 0.0
    adam_betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    grad_clip: float = 1.0
    ema_decay: float = 0.9999
    # > 0: the EMA half-life is at most this fraction of the samples seen (EDM's ema_rampup_ratio, e.g. 0.05)
    ema_rampup: float = 0.0
    precision: Precision = "fp32"  # mixed-precision training (bf16, fp16) or none
    seed: int = 0
    # start from these weights (a shipped model's name, a run, checkpoint or .safetensors file): fine-tuning.
    # Parameters the source lacks keep their fresh initialisation; a resumed run ignores it.
    init: str = ""
    num_workers: int = 0
    cache_images: bool = False  # keep decoded training images in memory (per loader worker): no decode per crop
    label_dropout: float = 0.0
    log_every: int = 50
    val_every: int = 1000
    val_images: int = 4
    val_steps: int = 20
    checkpoint_every: int = 1000
    keep_last: int = 3


@dataclass(frozen=True)
class Config:
    """Everything a run needs; the unit of what a checkpoint records."""

    model: ModelConfig = field(default_factory=ModelConfig)
    noise: NoiseConfig = field(default_factory=NoiseConfig)
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    predictor: PredictorConfig = field(default_factory=PredictorConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


# Bounds of numeric keys, checked when a config is built: (section, key) -> (low, high), inclusive.
BOUNDS: dict[tuple[str, str], tuple[float, float]] = {
    ("model", "base_channels"): (1, math.inf),
    ("model", "num_res_blocks"): (1, math.inf),
    ("model", "attn_head_channels"): (1, math.inf),
    ("model", "norm_groups"): (1, math.inf),
    ("model", "dropout"): (0, 0.99),
    ("model", "num_classes"): (0, math.inf),
    ("noise", "timesteps"): (1, math.inf),
    ("noise", "beta_start"): (1e-12, 0.999),
    ("noise", "beta_end"): (1e-12, 0.999),
    ("noise", "sigma_max"): (0, math.inf),
    ("noise", "min_snr"): (0, math.inf),
    ("sampler", "steps"): (1, math.inf),
    ("sampler", "eta"): (0, 1),
    ("sampler", "sigma_max"): (0, math.inf),
    ("augment", "noise_max"): (0, 1),
    ("augment", "blur_prob"): (0, 1),
    ("augment", "blur_kernel"): (1, 31),
    ("data", "scale"): (1, 64),
    ("data", "hr_size"): (8, math.inf),
    ("data", "holdout"): (0, 0.5),
    ("train", "batch_size"): (1, math.inf),
    ("train", "grad_accum"): (1, math.inf),
    ("train", "lr"): (1e-12, 1),
    ("train", "warmup_steps"): (0, math.inf),
    ("train", "weight_decay"): (0, math.inf),
    ("train", "grad_clip"): (0, math.inf),
    ("train", "ema_decay"): (0, 1),
    ("train", "ema_rampup"): (0, 1),
    ("train", "num_workers"): (0, 256),
    ("train", "label_dropout"): (0, 1),
    ("train", "log_every"): (1, math.inf),
    ("train", "val_every"): (1, math.inf),
    ("train", "val_images"): (1, math.inf),
    ("train", "val_steps"): (1, math.inf),
    ("train", "checkpoint_every"): (1, math.inf),
    ("train", "keep_last"): (0, math.inf),
}


def check_tile(tile: int | None, what: str = "tile") -> None:
    """Refuse a tile that is neither 0 (whole images) nor at least MIN_TILE input pixels; None means the model's."""
    if tile is not None and tile != 0 and tile < MIN_TILE:
        raise SR3Error(f"{what} must be 0 (whole images) or at least {MIN_TILE} input pixels; got {tile}")


def check_range(key: str, value: float, low: float, high: float) -> None:
    """Raise SR3Error unless low <= value <= high; `key` is the config key's dotted path."""
    if not low <= value <= high:
        raise SR3Error(f"config key '{key}' must be in [{low}, {high}]; got {value}")


def check_bounds(cfg: Config) -> Config:
    """Raise SR3Error for any value out of its range (zero steps, negative rates, empty lists...) and any
    pair of keys that contradict each other."""
    for (section, key), (low, high) in BOUNDS.items():
        check_range(f"{section}.{key}", getattr(getattr(cfg, section), key), low, high)
    check_tile(cfg.sampler.tile, "config key 'sampler.tile'")
    m = cfg.model
    if not m.channel_mults or min(m.channel_mults) < 1:
        raise SR3Error(f"model.channel_mults must be a non-empty list of positive ints; got {m.channel_mults}")
    if cfg.noise.regression and cfg.noise.parameterization != "x0":
        raise SR3Error("noise.regression=true needs noise.parameterization=x0 (the network predicts the image)")
    if cfg.augment.blur_kernel % 2 == 0:
        raise SR3Error(f"augment.blur_kernel must be odd; got {cfg.augment.blur_kernel}")
    lo, hi = (cfg.augment.blur_sigma + [0, 0])[:2]
    if len(cfg.augment.blur_sigma) != 2 or not 0 < lo <= hi:
        raise SR3Error(f"augment.blur_sigma must be [low, high] with 0 < low <= high; got {cfg.augment.blur_sigma}")
    check_stage(cfg)
    return cfg


def check_stage(cfg: Config) -> None:
    """Raise SR3Error where the model's inputs disagree with the data and conditioning it is given.

    An SR stage sees the noisy image beside its condition, the predictor's output (plus the bicubic upsample
    with `predictor.with_bicubic`); a base model sees the noisy image alone.
    """
    m, data = cfg.model, cfg.data
    sr_channels = m.out_channels + data.channels * (2 if cfg.predictor.with_bicubic else 1)
    if m.in_channels not in (m.out_channels, sr_channels):
        raise SR3Error(
            f"model.in_channels must be {sr_channels} for SR (noisy image + condition) or {m.out_channels} for a"
            f" base model; got {m.in_channels}"
        )
    if (m.num_classes > 0) != (data.mode == "classes"):
        raise SR3Error("class-conditional models (model.num_classes > 0) train on data.mode=classes, and only they")
    if (cfg.noise.residual or cfg.noise.regression) and not m.is_sr:
        raise SR3Error("noise.residual and noise.regression need an SR stage: a base model has no LR image")
    if cfg.augment.noise_max > 0 and not m.augment_embedding:
        raise SR3Error("augment.noise_max > 0 needs model.augment_embedding=true so the model is told the level")
    if m.is_sr and data.hr_size - 2 * data.scale < 11:
        raise SR3Error("data.hr_size must leave at least 11 px after cropping `scale` border pixels (for SSIM)")


def to_dict(cfg: Any) -> dict[str, Any]:
    """A plain JSON-ready dict of a config dataclass."""
    return dataclasses.asdict(cfg)


def from_dict(cls: type, data: dict[str, Any], where: str = "") -> Any:
    """Build dataclass `cls` from a (possibly partial) nested dict, checking every key and type."""
    if not isinstance(data, dict):
        raise SR3Error(f"config section '{where or 'root'}' must be a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        path = f"{where}.{key}" if where else key
        if key not in names:
            raise SR3Error(f"unknown config key '{path}'; valid keys: {', '.join(sorted(names))}")
        kwargs[key] = _coerce(hints[key], value, path)
    return cls(**kwargs)


def _coerce(hint: Any, value: Any, path: str) -> Any:
    """Check `value` against a field's type hint, converting the few safe cases (int -> float, tuple -> list)."""
    if dataclasses.is_dataclass(hint):
        return from_dict(hint, value, path)
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType) and type(None) in typing.get_args(hint):
        (inner,) = [a for a in typing.get_args(hint) if a is not type(None)]
        return None if value is None else _coerce(inner, value, path)
    if origin is Literal:
        options = typing.get_args(hint)
        if value not in options:
            raise SR3Error(f"config key '{path}' must be one of {', '.join(map(str, options))}; got {value!r}")
        return value
    if origin is dict:
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            raise SR3Error(f"config key '{path}' must be a mapping of names to values; got {value!r}")
        _, item = typing.get_args(hint)
        return {k: _coerce(item, v, f"{path}.{k}") for k, v in value.items()}
    if hint is Any:  # a free-form value (`model.options`): a YAML scalar, typed by the dataclass that reads it
        if isinstance(value, (bool, int, float, str)):
            return value
        raise SR3Error(f"config key '{path}' must be a number, string or boolean; got {value!r}")
    if origin is list:
        (item,) = typing.get_args(hint)
        if not isinstance(value, (list, tuple)):
            raise SR3Error(f"config key '{path}' must be a list; got {value!r}")
        return [_coerce(item, v, f"{path}[{i}]") for i, v in enumerate(value)]
    if hint is float and isinstance(value, (int, float, str)) and not isinstance(value, bool):
        try:
            return float(value)  # YAML 1.1 reads "1e-4" (no dot) as a string
        except ValueError:
            pass
    if hint is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if hint in (str, bool) and isinstance(value, hint):
        return value
    raise SR3Error(f"config key '{path}' must be {getattr(hint, '__name__', hint)}; got {value!r}")


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply `section.key=value` strings (values parsed as YAML) to a nested config dict."""
    data = json.loads(json.dumps(data))
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise SR3Error(f"override '{item}' must look like section.key=value")
        *parents, leaf = key.split(".")
        node = data
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise SR3Error(f"override '{item}': '{part}' is not a config section")
        node[leaf] = yaml.safe_load(raw)
    return data


def preset_names() -> list[str]:
    """Names of the config presets shipped in the package (`sr3/configs/*.yaml`)."""
    return sorted(p.name[:-5] for p in resources.files("sr3.configs").iterdir() if p.name.endswith(".yaml"))


def read_config_file(path_or_preset: str) -> dict[str, Any]:
    """Read a YAML/JSON config file, or a shipped preset by name, into a nested dict."""
    path = Path(path_or_preset)
    if path.is_file():
        text = path.read_text()
    elif path_or_preset in preset_names():
        text = resources.files("sr3.configs").joinpath(f"{path_or_preset}.yaml").read_text()
    else:
        raise SR3Error(
            f"config '{path_or_preset}' is neither a file nor a preset; presets: {', '.join(preset_names())}"
        )
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise SR3Error(f"cannot parse config '{path_or_preset}': {exc}".splitlines()[0]) from None
    return data


def upgrade(data: dict[str, Any]) -> dict[str, Any]:
    """A config dict of an older sr3 in today's keys: `train.mixed_precision` (no | bf16 | fp16) became
    `train.precision` (fp32 | bf16 | fp16), and a `sampler.tile` of 0 written before `sampler.colour_fix`
    existed was the unset default, which the command line sampled in 128-pixel tiles, and the U-Net's flat
    `model.patch`, `model.attn_window`, `model.norm_window` and `arch: sdunet` became `model.options`
    (`_unet_options`). Checkpoints keep loading; new keys take their defaults. `key=value` overrides are in
    today's keys."""
    model = data.get("model")
    if isinstance(model, dict) and (model.keys() & FLAT_UNET_KEYS or model.get("arch") == "sdunet"):
        data = {**data, "model": _unet_options(model)}
    sampler = data.get("sampler")
    if isinstance(sampler, dict) and "colour_fix" not in sampler and sampler.get("tile") == 0:
        data = {**data, "sampler": {**sampler, "tile": SamplerConfig.tile}}
    train = data.get("train")
    if isinstance(train, dict) and "mixed_precision" in train:
        train = dict(train)
        old = train.pop("mixed_precision")
        train.setdefault("precision", "fp32" if old == "no" else old)
        data = {**data, "train": train}
    return data


# The U-Net's keys that older configs kept flat in `model`, with the values that meant "not used".
FLAT_UNET_KEYS: dict[str, int] = {"patch": 1, "attn_window": 0, "norm_window": 0}


def _unet_options(model: dict[str, Any]) -> dict[str, Any]:
    """An older `model` section in today's keys: the flat stem and window keys became `unet` options, and
    `arch: sdunet` (the U-Net with a stem and window norms) became `unet` with `norm: window`."""
    model = dict(model)
    flat = {key: model.pop(key) for key in FLAT_UNET_KEYS if key in model}
    options = {key: value for key, value in flat.items() if value != FLAT_UNET_KEYS[key]}
    if model.get("arch") == "sdunet":
        model["arch"] = "unet"
        options.update(norm="window", norm_window=flat.get("norm_window", 0))
    model["options"] = {**options, **model.get("options", {})}
    return model


def config_from_dict(data: dict[str, Any], overrides: list[str] = ()) -> Config:
    """A checked `Config` from a nested dict (a file, a checkpoint's metadata), with `key=value` overrides."""
    return check_bounds(from_dict(Config, apply_overrides(upgrade(data), list(overrides))))


def load_config(path_or_preset: str, overrides: list[str] = ()) -> Config:
    """The `Config` of a file or preset, with overrides applied and every key checked."""
    return config_from_dict(read_config_file(path_or_preset), overrides)
