"""Cascaded diffusion (CDM, Ho et al. 2021): a class-conditional base model, then SR stages raising its resolution,
or SR stages alone (an SR-only cascade: an upscaler like any model, e.g. 64 -> 256 -> 1024 for 16x).

A cascade is a YAML file naming its stages; each stage is a model trained on its own with `sr3 train`
(so stages train in parallel, anywhere) and the settings it is sampled with:

    class_titles: [bullfrog, Egyptian cat, ...]          # optional human names, in class order
    stages:
      - {model: base32.safetensors, steps: 50}
      - {model: sr32-64.safetensors, steps: 20, aug_level: 0.2, truncate: false}

Model paths are relative to the cascade file; a shipped model may be named instead (`natural-4x`). A
single model loads as a cascade of one stage.
`aug_level` s is the conditioning augmentation applied at
sampling time (a fraction of T): non-truncated, the stage below finishes and its output is noised to s;
truncated, the stage below (a base model) stops its reverse process at s and hands over z_s as it is.
`colour_fix` (true or false; unset: the model's own) pins a stage's colours to the image below it, and
`tile` (input pixels; unset: the model's own) bounds its memory.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
import yaml

from sr3.conditioning import check_aug_level
from sr3.config import ModelConfig, SamplerConfig, check_tile, from_dict, to_dict
from sr3.errors import SR3Error
from sr3.noise import stage_seed
from sr3.pipeline import SR3Pipeline
from sr3.pretrained import PRETRAINED, is_cascade, resolve_cascade
from sr3.schedules import equivalent_level, training_gammas


@dataclass(frozen=True)
class StageConfig:
    """One stage: its model and how it is sampled. `sampler`/`steps` empty or 0 mean the model's own."""

    model: str
    sampler: str = ""
    steps: int = 0
    guidance: float = 0.0
    aug_level: float = 0.0
    truncate: bool = False
    colour_fix: bool | None = None
    tile: int | None = None


@dataclass(frozen=True)
class CascadeConfig:
    """The stages, lowest resolution first, and optional human-readable class names."""

    stages: list[StageConfig]
    class_titles: list[str] = field(default_factory=list)


def read_cascade(path: Path, overrides: Sequence[str] = ()) -> CascadeConfig:
    """A cascade file with `STAGE.KEY=VALUE` overrides, every key checked (`with_overrides`)."""
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise SR3Error(f"cannot read cascade {path}: {exc}".splitlines()[0]) from None
    return with_overrides(from_dict(CascadeConfig, data), overrides)


def with_overrides(cfg: CascadeConfig, overrides: Sequence[str]) -> CascadeConfig:
    """`cfg` with `STAGE.KEY=VALUE` overrides (e.g. `1.aug_level=0.2`; STAGE `*` sets every stage), every key checked."""
    stages = [to_dict(s) for s in cfg.stages]
    for item in overrides:
        key, sep, raw = item.partition("=")
        index, _, name = key.partition(".")
        if not sep or not (index.isdigit() or index == "*") or not name:
            raise SR3Error(f"cascade override '{item}' must look like STAGE.KEY=VALUE, e.g. 1.aug_level=0.2")
        if index != "*" and int(index) >= len(stages):
            raise SR3Error(f"cascade override '{item}': there are only {len(stages)} stages (0..{len(stages) - 1})")
        for stage in stages if index == "*" else [stages[int(index)]]:
            stage[name] = yaml.safe_load(raw)
    return from_dict(CascadeConfig, {"stages": stages, "class_titles": cfg.class_titles})


class Cascade:
    """Loaded stages of a cascade; `sample` runs them all, lowest resolution first."""

    def __init__(self, cfg: CascadeConfig, pipelines: list[SR3Pipeline]):
        self.cfg, self.pipelines = cfg, pipelines
        check_stages(cfg, pipelines)

    @classmethod
    def load(
        cls, spec: str | Path, device: str | torch.device = "cpu", overrides: Sequence[str] = (), precision: str = "fp32"
    ) -> Cascade:
        """A cascade file, a folder holding `cascade.yaml`, a shipped cascade by name, or one model (shipped name,
        run, checkpoint or weights file) as a cascade of one stage; `precision` as SR3Pipeline's."""
        if is_cascade(spec):
            path = resolve_cascade(spec)
            cfg = read_cascade(path, overrides)
            models = [stage_model(path, stage.model) for stage in cfg.stages]
        else:
            cfg = with_overrides(CascadeConfig(stages=[StageConfig(model=str(spec))]), overrides)
            models = [spec]
        return cls(cfg, [SR3Pipeline.load(model, device, precision) for model in models])

    @property
    def class_names(self) -> list[str]:
        """Class names (e.g. wnids) of the base model, in label order."""
        return self.pipelines[0].cfg.data.class_names

    @property
    def num_classes(self) -> int:
        return self.pipelines[0].cfg.model.num_classes

    @property
    def resolution(self) -> int:
        return self.pipelines[-1].cfg.data.hr_size

    @property
    def is_upscaler(self) -> bool:
        """SR stages only: the cascade upscales images (`sr3 upscale`) instead of generating them."""
        return self.pipelines[0].cfg.model.is_sr

    @property
    def scale(self) -> int:
        """The SR factor of the whole chain."""
        return math.prod(p.scale for p in self.pipelines[int(not self.is_upscaler):])

    def sampling_steps(self, first: int = 0) -> int:
        """Sampler steps per image over the stages from `first` on: the progress callbacks a sample makes."""
        return sum(self.stage_sampler(i).steps for i in range(first, len(self.pipelines)))

    def stage_sampler(self, index: int, tile: int | None = None) -> SamplerConfig:
        """The sampler settings of stage `index`: its model's, with the stage's overrides (and `tile` over all)."""
        stage, pipe = self.cfg.stages[index], self.pipelines[index]
        tile = tile if tile is not None else stage.tile
        return pipe.sampler_config(stage.steps or None, stage.sampler or None, tile, stage.colour_fix)

    def stage_settings(self, tile: int | None = None) -> list[dict[str, object]]:
        """What each stage samples with (model, sampler, steps, tile, colour fix, augmentation level): for records."""
        out = []
        for k, stage in enumerate(self.cfg.stages):
            s = self.stage_sampler(k, tile)
            out.append({"model": stage.model, "sampler": s.name, "steps": s.steps, "tile": s.tile,
                        "colour_fix": s.colour_fix, "aug_level": stage.aug_level})
        return out

    @torch.inference_mode()
    def super_resolve(
        self, lr: torch.Tensor, seeds: Sequence[int], progress: Callable[[int], None] | None = None, tile: int | None = None
    ) -> list[torch.Tensor]:
        """An SR-only cascade's output of every stage for a batch of LR tensors [B, C, h, w] in [-1, 1].

        Stage k draws from `stage_seed(seed, k)`, so stage 0 matches its model alone. Each
        stage finishes and hands its output up, noised to the next stage's `aug_level` (CDM's
        conditioning augmentation, which the stage was trained to expect). `tile` overrides every stage's.
        """
        if not self.is_upscaler:
            raise SR3Error("this cascade starts with a base model: it generates images (sr3 generate), it does not upscale")
        x, outputs = lr, []
        for k, (stage, pipe) in enumerate(zip(self.cfg.stages, self.pipelines)):
            stage_seeds = [stage_seed(s, k) for s in seeds]
            x = pipe.super_resolve(x, stage_seeds, self.stage_sampler(k, tile), progress, aug_level=stage.aug_level)
            outputs.append(x)
        return outputs

    @torch.inference_mode()
    def sample(
        self,
        labels: torch.Tensor | None,
        seeds: Sequence[int],
        progress: Callable[[int], None] | None = None,
        base: torch.Tensor | None = None,
    ) -> list[torch.Tensor]:
        """The output of every stage for one batch ([B, C, size, size] each, last is the final image).

        Stage 0 draws its noise from `seeds`, so it matches `sr3 generate` on the base model alone; stage k
        draws from seeds mixed with k. A truncated hand-over is noisy by design; its clean output is not shown.
        `base`: stage 0's finished output for these labels and seeds, reused (a non-truncated sweep samples
        the base once for every level, as CDM notes).
        """
        stages, pipes = self.cfg.stages, self.pipelines
        truncated = len(stages) > 1 and stages[1].truncate
        if base is not None and truncated:
            raise SR3Error("a truncated cascade cannot reuse a finished base sample")
        x = base if base is not None else self.sample_base(labels, seeds, progress)
        outputs = [x]
        for k in range(1, len(pipes)):
            stage_seeds = [stage_seed(s, k) for s in seeds]
            stage = stages[k]
            x = pipes[k].super_resolve(
                x, stage_seeds, self.stage_sampler(k), progress, aug_level=stage.aug_level,
                labels=labels if pipes[k].cfg.model.num_classes else None, lr_noised=stage.truncate,
            )
            outputs.append(x)
        return outputs

    def sample_base(self, labels: torch.Tensor | None, seeds: Sequence[int], progress=None) -> torch.Tensor:
        """Stage 0's output: finished, or stopped where stage 1's schedule puts its level when stage 1 is truncated."""
        stages, pipes = self.cfg.stages, self.pipelines
        stop = 0.0
        if len(stages) > 1 and stages[1].truncate:  # meet at stage 1's gamma, whatever schedule the base trained on
            stop = equivalent_level(stages[1].aug_level, training_gammas(pipes[1].cfg.noise), training_gammas(pipes[0].cfg.noise))
        sampler = self.stage_sampler(0)
        return self.pipelines[0].generate(len(seeds), seeds, sampler, labels, progress, stages[0].guidance, stop)

    def replace_stage(self, index: int, **changes) -> Cascade:
        """The same loaded models with different sampling settings for one stage (for sweeps)."""
        stages = list(self.cfg.stages)
        stages[index] = dataclasses.replace(stages[index], **changes)
        return Cascade(dataclasses.replace(self.cfg, stages=stages), self.pipelines)


def stage_model(cascade_file: Path, model: str) -> Path | str:
    """A stage's model: a path relative to the cascade file (or absolute), else a shipped model's name, so a
    cascade can reuse shipped weights without a copy."""
    path = Path(model) if Path(model).is_absolute() else cascade_file.parent / model
    return model if not path.exists() and model in PRETRAINED else path


def check_stages(cfg: CascadeConfig, pipes: list[SR3Pipeline]) -> None:
    """Refuse cascades whose stages do not fit together, naming the stage."""
    if not cfg.stages:
        raise SR3Error("a cascade needs at least one stage")
    for k, stage in enumerate(cfg.stages):
        check_tile(stage.tile, f"stage {k}: tile")
    if pipes[0].cfg.model.is_sr:
        check_sr_stages(cfg, pipes)
        return
    names = pipes[0].cfg.data.class_names
    if cfg.class_titles and len(cfg.class_titles) != pipes[0].cfg.model.num_classes:
        raise SR3Error(f"class_titles names {len(cfg.class_titles)} classes; the base model has {pipes[0].cfg.model.num_classes}")
    for k, (stage, pipe) in enumerate(zip(cfg.stages, pipes)):
        m, data = pipe.cfg.model, pipe.cfg.data
        if k == 0:
            if stage.aug_level or stage.truncate or stage.colour_fix is not None or stage.tile is not None:
                raise SR3Error("stage 0 has no LR image: aug_level, truncate, colour_fix and tile belong to SR stages")
            continue
        if not m.is_sr:
            raise SR3Error(f"stage {k} must be an SR model")
        below = pipes[k - 1].cfg.data.hr_size
        if data.hr_size != below * data.scale:
            raise SR3Error(f"stage {k} turns {data.hr_size // data.scale} px into {data.hr_size} px, but stage {k - 1} makes {below} px")
        if m.num_classes and data.class_names != names:
            raise SR3Error(f"stage {k} was trained on other classes than the base model")
        check_stage_augmentation(k, stage, m)
        if stage.truncate and (k != 1 or stage.aug_level <= 0):
            raise SR3Error(f"stage {k}: truncate needs aug_level > 0 and a base model right below (stage 1 only)")
        if stage.truncate and stage.colour_fix:
            raise SR3Error(f"stage {k}: a truncated stage's input is a noisy latent; it cannot be colour-fixed")


def check_stage_augmentation(k: int, stage: StageConfig, model: ModelConfig) -> None:
    """A stage's sampling-time augmentation level: in range, and only where the stage was trained with it."""
    if stage.aug_level and not model.augment_embedding:
        raise SR3Error(f"stage {k} was trained without conditioning augmentation: its aug_level must be 0")
    check_aug_level(stage.aug_level, f"stage {k}: aug_level")


def check_sr_stages(cfg: CascadeConfig, pipes: list[SR3Pipeline]) -> None:
    """An SR-only cascade: every stage an SR model without classes, any input size (the stages are fully
    convolutional), augmentation only where a stage was trained for it, nothing truncated."""
    for k, (stage, pipe) in enumerate(zip(cfg.stages, pipes)):
        m = pipe.cfg.model
        if not m.is_sr:
            raise SR3Error(f"stage {k} must be an SR model: only stage 0 of a generating cascade is a base model")
        if m.num_classes:
            raise SR3Error(f"stage {k} is class-conditional: an SR-only cascade upscales images without classes")
        check_stage_augmentation(k, stage, m)
        if stage.truncate or stage.guidance:
            raise SR3Error(f"stage {k}: truncate and guidance belong to cascades with a base model")


def class_index(label: str, names: Sequence[str], titles: Sequence[str], num_classes: int) -> int:
    """The index of a class given by name (e.g. wnid), title (e.g. 'lemon') or number."""
    if label in names:
        return list(names).index(label)
    lowered = [t.lower() for t in titles]
    if label.lower() in lowered:
        return lowered.index(label.lower())
    if label.isdigit() and int(label) < num_classes:
        return int(label)
    shown = [f"{n} ({t})" for n, t in zip(names, titles)] if titles else list(names) or [f"0..{num_classes - 1}"]
    raise SR3Error(f"unknown class '{label}'; classes: {', '.join(shown)}")
