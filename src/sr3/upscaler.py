"""One interface for everything that upscales: a single SR model, or an SR-only cascade of them.

    from sr3.upscaler import load_upscaler
    up = load_upscaler("natural-4x")   # a shipped model or cascade, a run, checkpoint or weights file, a cascade.yaml
    [(image, record)] = up.upscale([Image.open("photo.png")], seeds=[0])

The command line, `sr3 eval`, `sr3 compare`, `sr3 serve` and the benchmarks hold an `Upscaler` and never ask
which kind it is, as diffusers' `DiffusionPipeline.from_pretrained` returns whatever pipeline the files
describe. What an output records of how it was made (`record`, PNG text chunks `sr3:KEY`) is built here.
"""

from __future__ import annotations

import dataclasses
import json
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image

from sr3.cascade import Cascade
from sr3.conditioning import check_denoise, takes_denoise
from sr3.config import DataConfig, SamplerConfig, check_tile
from sr3.errors import SR3Error
from sr3.pipeline import Denoise, ImageBatch, Progress, SR3Pipeline, colour_fixed
from sr3.pretrained import is_cascade
from sr3.samplers import network_evaluations

Record = dict[str, object]


@dataclass(frozen=True)
class UpscaleSettings:
    """A caller's overrides of how an upscaler samples; None or empty keeps the model's (or cascade file's) own.

    `steps`, `sampler`, `colour_fix`, `sigma_max` (where a refinement of the prediction starts), `denoise` (a
    strength in [0, 1] or "auto", for models trained with a noise level) and `prediction_only` (the
    predictor's output alone: the distortion end of a refiner) are a single model's; `stages`
    (`STAGE.KEY=VALUE`, e.g. `1.steps=20`) a cascade's; `tile` (input pixels, 0 for whole images) is every
    stage's.
    """

    steps: int | None = None
    sampler: str | None = None
    tile: int | None = None
    colour_fix: bool | None = None
    sigma_max: float | None = None
    denoise: Denoise = 0.0
    prediction_only: bool = False
    stages: tuple[str, ...] = ()


class Upscaler(ABC):
    """Upscales LR images by `scale` with fixed settings; `configured` gives the same networks other settings."""

    name: str  # how records name it: a shipped name or the path it was loaded from
    scale: int
    device: torch.device
    precision: str
    takes_denoise: bool  # whether it takes a denoise strength
    takes_steps: bool  # whether it takes a step count

    @abstractmethod
    def super_resolve(self, lr: torch.Tensor, seeds: Sequence[int], progress: Progress = None) -> tuple[torch.Tensor, list[Record]]:
        """LR tensors [B, C, h, w] in [-1, 1], one seed each -> ([B, C, h * scale, w * scale], each output's record)."""

    @abstractmethod
    def configured(self, settings: UpscaleSettings) -> Upscaler:
        """The same loaded networks with other settings, checked."""

    @property
    @abstractmethod
    def steps(self) -> int:
        """Sampler steps per batch: the progress callbacks one `super_resolve` makes."""

    @property
    @abstractmethod
    def nfe(self) -> int:
        """Network evaluations per image."""

    @abstractmethod
    def settings(self) -> dict[str, object]:
        """How it samples, for evaluation results: sampler, steps, nfe, colour fix, denoise, tile, precision."""

    @property
    @abstractmethod
    def sampler_name(self) -> str:
        """A short name of how it samples, for a page or a log."""

    def describe(self) -> dict[str, object]:
        """What a page shows of it: its scale, how it samples, and what a job may set."""
        return {"scale": self.scale, "sampler": self.sampler_name, "steps": self.steps, "nfe": self.nfe,
                "denoise": self.takes_denoise, "takes_steps": self.takes_steps}

    @abstractmethod
    def evaluation_data(self, holdout: bool) -> DataConfig:
        """The data config evaluation pairs follow: its held-out split and training size, its degradation."""

    def predict(self, lr: torch.Tensor) -> torch.Tensor | None:
        """What it refines, when that is more than the bicubic upsample (an evaluation baseline); else None."""
        return None

    def upscale(
        self, images: Sequence[Image.Image], seeds: Sequence[int], progress: Progress = None, out_scale: float | None = None
    ) -> list[tuple[Image.Image, Record]]:
        """Same-size PIL images, one seed each -> (output, record) each; `out_scale` resamples the outputs to
        that factor of the input before their one rounding to 8 bits. Any mode and any size (`ImageBatch`)."""
        if len(seeds) != len(images):
            raise SR3Error(f"{len(seeds)} seeds for {len(images)} images")
        batch = ImageBatch.of(list(images))
        sr, records = self.super_resolve(batch.lr, list(seeds), progress)
        return list(zip(batch.images(sr, out_scale), records))


class ModelUpscaler(Upscaler):
    """One SR model (`SR3Pipeline`) at one sampler setting and denoise strength. `sampler`, if given, is taken as
    it is instead of the settings' (a grid or schedule they cannot name: schedule searches, NFE sweeps)."""

    def __init__(
        self, pipe: SR3Pipeline, name: str, settings: UpscaleSettings = UpscaleSettings(), sampler: SamplerConfig | None = None
    ):
        if settings.stages:
            raise SR3Error(f"{name} is one model: STAGE.KEY=VALUE settings are a cascade's; set its steps, sampler or tile")
        if not pipe.cfg.model.is_sr:
            raise SR3Error(f"{name} is a base model: it generates images (sr3 generate), it does not upscale")
        check_tile(settings.tile)
        self.pipe, self.name = pipe, name
        self.scale, self.device, self.precision = pipe.scale, pipe.device, pipe.precision
        self.sampler = sampler or pipe.sampler_config(
            settings.steps, settings.sampler, settings.tile, settings.colour_fix, settings.sigma_max
        )
        self.denoise = check_denoise(settings.denoise, pipe.cfg)
        self.prediction_only = settings.prediction_only
        if self.prediction_only and (self.denoise or pipe.cfg.predictor.name == "bicubic"):
            raise SR3Error(f"{name}: prediction_only shows the regression prediction a refiner starts from; "
                           "this model refines " + ("bicubic" if not self.denoise else "a denoised input"))
        self.takes_denoise, self.takes_steps = takes_denoise(pipe.cfg), not pipe.cfg.noise.regression

    def configured(self, settings: UpscaleSettings) -> ModelUpscaler:
        return ModelUpscaler(self.pipe, self.name, settings)

    def super_resolve(self, lr, seeds, progress=None):
        if self.prediction_only:
            sr = self.pipe.predict(lr)
            return sr, [{"model": self.name, "sampler": "prediction", "seed": seed, "precision": self.precision} for seed in seeds]
        strengths = self.pipe.denoise_strengths(lr, self.denoise).tolist()  # "auto" resolved once, and recorded
        sr = self.pipe.super_resolve(lr, seeds, self.sampler, progress, denoise=strengths)
        return sr, [self.record(seed, strength) for seed, strength in zip(seeds, strengths)]

    def record(self, seed: int, denoise: float) -> Record:
        s = self.sampler
        record = {"model": self.name, "sampler": s.name, "steps": s.steps, "seed": seed, "tile": s.tile,
                  "colour_fix": colour_fixed(s, denoise), "precision": self.precision, "denoise": round(denoise, 4)}
        return record | ({"sigma_max": s.sigma_max, "project": s.project} if s.sigma_max else {})

    @property
    def steps(self) -> int:
        return 0 if self.prediction_only else self.sampler.steps

    @property
    def nfe(self) -> int:
        if self.prediction_only:
            return 1
        return network_evaluations(self.sampler.name, self.sampler.steps) + (self.pipe.cfg.predictor.name != "bicubic")

    def settings(self):
        s = self.sampler
        if self.prediction_only:
            own = self.pipe.predictor.cfg.sampler  # a regression predictor samples as its own model did
            return {"sampler": "prediction", "steps": 0, "nfe": 1, "colour_fix": own.colour_fix, "denoise": 0.0,
                    "tile": own.tile, "precision": self.precision}
        return {"sampler": s.name, "steps": s.steps, "nfe": self.nfe, "colour_fix": colour_fixed(s, self.denoise),
                "denoise": self.denoise, "tile": s.tile, "precision": self.precision, "sigma_max": s.sigma_max,
                "project": s.project}

    @property
    def sampler_name(self) -> str:
        return "prediction" if self.prediction_only else self.sampler.name

    def evaluation_data(self, holdout: bool) -> DataConfig:
        return self.pipe.cfg.data

    def predict(self, lr):
        return None if self.pipe.cfg.predictor.name == "bicubic" else self.pipe.predict(lr)


class CascadeUpscaler(Upscaler):
    """An SR-only cascade: every stage sampled as its file and the STAGE.KEY=VALUE settings it loaded with say,
    `tile` over all."""

    def __init__(self, cascade: Cascade, name: str, settings: UpscaleSettings = UpscaleSettings()):
        one_model = (settings.steps, settings.sampler, settings.colour_fix, settings.sigma_max)
        if any(v is not None for v in one_model) or settings.prediction_only:
            raise SR3Error(f"{name} is a cascade: each stage samples as its file says; change a stage with a "
                           "STAGE.KEY=VALUE setting, e.g. 1.steps=20")
        if settings.denoise:
            raise SR3Error(f"{name} is a cascade: it takes no denoise strength; its stages' noise levels are "
                           "STAGE.aug_level=S settings")
        if not cascade.is_upscaler:
            raise SR3Error(f"{name} starts with a base model: it generates images (sr3 generate), it does not upscale")
        if settings.stages:
            raise SR3Error(f"{name}: STAGE.KEY=VALUE settings apply when a cascade loads (load_upscaler)")
        check_tile(settings.tile)
        self.cascade, self.name, self.tile = cascade, name, settings.tile
        first = cascade.pipelines[0]
        self.scale, self.device, self.precision = cascade.scale, first.device, first.precision
        self.takes_denoise = self.takes_steps = False

    def configured(self, settings: UpscaleSettings) -> CascadeUpscaler:
        return CascadeUpscaler(self.cascade, self.name, settings)

    def super_resolve(self, lr, seeds, progress=None):
        sr = self.cascade.super_resolve(lr, seeds, progress, self.tile)[-1]
        stages = json.dumps(self.cascade.stage_settings(self.tile))
        return sr, [{"model": self.name, "scale": self.scale, "seed": seed, "precision": self.precision, "stages": stages}
                    for seed in seeds]

    @property
    def steps(self) -> int:
        return self.cascade.sampling_steps()

    @property
    def nfe(self) -> int:
        return sum(network_evaluations(s["sampler"], s["steps"]) for s in self.cascade.stage_settings(self.tile))

    def settings(self):
        stages = self.cascade.stage_settings(self.tile)
        return {"sampler": "cascade", "steps": self.steps, "nfe": self.nfe,
                "colour_fix": any(s["colour_fix"] for s in stages), "denoise": 0.0, "tile": self.tile,
                "stages": stages, "precision": self.precision}

    @property
    def sampler_name(self) -> str:
        return " + ".join(s["sampler"] for s in self.cascade.stage_settings(self.tile))

    def evaluation_data(self, holdout: bool) -> DataConfig:
        """The last stage's data (held-out images sized as it was trained), LR made by the first stage's
        degradation; every stage must hold out the same split."""
        pipes = self.cascade.pipelines
        if holdout and len({p.cfg.data.holdout for p in pipes}) > 1:
            raise SR3Error(f"the stages of {self.name} hold out different splits (data.holdout), so there is no one split")
        return dataclasses.replace(pipes[-1].cfg.data, degradation=pipes[0].cfg.data.degradation)


def load_upscaler(
    spec: str | Path, device: str | torch.device = "cpu", precision: str = "fp32", settings: UpscaleSettings = UpscaleSettings()
) -> Upscaler:
    """The upscaler `spec` names: a shipped model or SR-only cascade, a run directory, checkpoint folder or
    weights file, or a cascade file or folder; `precision` as `SR3Pipeline`'s."""
    if is_cascade(spec):
        cascade = Cascade.load(spec, device, settings.stages, precision)
        return CascadeUpscaler(cascade, str(spec), dataclasses.replace(settings, stages=()))
    return ModelUpscaler(SR3Pipeline.load(spec, device, precision), str(spec), settings)
