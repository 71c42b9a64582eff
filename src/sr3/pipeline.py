"""Super-resolve images with a trained SR3 model, or sample a base model: seeds, sampler settings, progress.

    model = SR3Pipeline.load("natural-4x")   # a shipped model, run dir, checkpoint dir or .safetensors file
    hr = model.upscale(Image.open("photo.png"), seed=0)

Every sampling setting (sampler, steps, tile, colour fix) is resolved in one place, `sampler_config`,
from the model's own `sampler` config and the caller's overrides, so the command line, the Python API
and any server sample a model alike. The condition is `sr3.conditioning`'s, tiles `sr3.tiling`'s,
guidance `sr3.guidance`'s, PIL in and out `sr3.imaging`'s.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from PIL import Image

from sr3.checkpoint import load_network
from sr3.conditioning import auto_denoise, check_denoise, denoise_condition, sampling_condition
from sr3.config import Config, SamplerConfig, check_tile
from sr3.device import check_precision, resolve_device
from sr3.diffusion import Cond, Denoiser, undiffused_image
from sr3.errors import SR3Error
from sr3.guidance import ClassifierFreeGuidance
from sr3.imaging import imresize, join_upscaled, pad_to_multiple, split_for_upscale, to_tensor
from sr3.noise import PerSampleNoise, initial_noise
from sr3.pretrained import resolve_model
from sr3.samplers import check_fits, run_sampler
from sr3.schedules import sampling_sigmas
from sr3.tiling import TiledDenoiser

Progress = Callable[[int], None] | None


def low_frequency_fix(sr: torch.Tensor, lr: torch.Tensor, scale: int) -> torch.Tensor:
    """Match the output's low frequencies (its colours) to the LR input: add back the upsampled LR residual.

    sr + up(lr - down(sr)) leaves detail above the LR band untouched while pulling the downsampled output
    onto the input, against the hue shifts diffusion SR can drift into.
    """
    return sr + imresize(lr - imresize(sr, scale=1 / scale), scale=scale)


def upscale_images(
    images: Image.Image | Sequence[Image.Image],
    seed: int | Sequence[int],
    super_resolve: Callable[[torch.Tensor, list[int]], torch.Tensor],
    out_scale: float | None = None,
) -> Image.Image | list[Image.Image]:
    """PIL in and out around a tensor super-resolver (one model or a cascade of them): one image or a batch
    of same-size images (image i gets seed + i, or seeds[i]), alpha, grey and ICC profile restored."""
    single = isinstance(images, Image.Image)
    batch = [images] if single else list(images)
    seeds = [seed + i for i in range(len(batch))] if isinstance(seed, int) else list(seed)
    if len({im.size for im in batch}) != 1:
        raise SR3Error("a batch must hold images of one size")
    if min(batch[0].size) < 2:
        raise SR3Error(f"image of size {batch[0].size} is too small to upscale")
    if out_scale is not None and out_scale <= 0:
        raise SR3Error(f"output scale must be positive; got {out_scale}")
    parts = [split_for_upscale(im) for im in batch]
    sr = super_resolve(torch.stack([to_tensor(p.rgb) for p in parts]), seeds).cpu()
    w, h = batch[0].size
    size = (max(1, round(w * out_scale)), max(1, round(h * out_scale))) if out_scale else None
    out = [join_upscaled(x, part, size) for x, part in zip(sr, parts)]
    return out[0] if single else out


Denoise = float | str | Sequence[float]  # a strength in [0, 1] for every image, "auto", or one per image


def colour_fixed(sampler: SamplerConfig, denoise: Denoise) -> bool:
    """Whether the colour fix applies: the sampler's setting, except under a denoise strength, where it would
    pin the output to the input's noise."""
    return sampler.colour_fix and not denoise


def output_metadata(model: str, sampler: SamplerConfig, seed: int, precision: str, denoise: float = 0.0) -> dict[str, object]:
    """What an upscaled file records of how it was made (PNG text chunks `sr3:KEY`), for every writer."""
    return {"model": model, "sampler": sampler.name, "steps": sampler.steps, "seed": seed, "tile": sampler.tile,
            "colour_fix": colour_fixed(sampler, denoise), "precision": precision, "denoise": round(denoise, 4)}


class SR3Pipeline:
    """A trained SR3 denoiser plus the config it was trained with."""

    def __init__(self, net: torch.nn.Module, cfg: Config, device: str | torch.device = "cpu", precision: str = "fp32"):
        """`precision` "bf16" runs the network under bf16 autocast (fast on GPUs and AMX / AVX-512 BF16 CPUs)."""
        self.cfg, self.device = cfg, resolve_device(device)
        self.precision = check_precision(precision, self.device)
        # channels_last convolutions run about 1.3x faster in inference on CPUs (benchmarks/step_time.py)
        net = net.to(self.device, memory_format=torch.channels_last)
        self.denoiser = Denoiser(net, cfg.noise.parameterization, clip=True, precision=precision).eval()
        self.scale = cfg.data.scale
        self.multiple = net.downscale_factor
        self.tile_batch = 4 if self.device.type == "cpu" else 64  # tiles per network call: a GPU wants many

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "cpu", precision: str = "fp32") -> SR3Pipeline:
        """Load a shipped model by name, or the EMA weights of a run directory, checkpoint folder or weights file."""
        net, cfg = load_network(resolve_model(path))
        return cls(net, cfg, device, precision)

    def sampler_config(
        self, steps: int | None = None, sampler: str | None = None, tile: int | None = None, colour_fix: bool | None = None
    ) -> SamplerConfig:
        """The model's sampler settings with the caller's overrides; None keeps the model's own.

        A tuned `sigmas` grid (from `sr3 schedule`) is kept while the step count is the model's own. A
        regression model samples with the `regression` sampler, whose one evaluation takes no step count.
        `tile` is in LR pixels, 0 for whole images; `colour_fix` applies `low_frequency_fix`.
        """
        cfg = self.cfg.sampler
        if self.cfg.noise.regression:
            cfg = dataclasses.replace(cfg, name="regression", sigmas=[])
        name = sampler or cfg.name
        steps = check_fits(name, self.cfg.noise.regression).fixed_steps or steps
        if steps is not None and steps != cfg.steps:
            cfg = dataclasses.replace(cfg, steps=steps, sigmas=[])
        check_tile(tile)
        changes = {"name": name, "tile": cfg.tile if tile is None else tile}
        changes["colour_fix"] = cfg.colour_fix if colour_fix is None else colour_fix
        return dataclasses.replace(cfg, **changes)

    @torch.inference_mode()
    def super_resolve(
        self,
        lr: torch.Tensor,
        seeds: Sequence[int],
        sampler: SamplerConfig | None = None,
        progress: Progress = None,
        aug_level: float = 0.0,
        labels: torch.Tensor | None = None,
        lr_noised: bool = False,
        denoise: Denoise = 0.0,
    ) -> torch.Tensor:
        """SR of a batch of LR tensors [B, C, h, w] in [-1, 1] -> [B, C, h*scale, w*scale], one seed per image.

        `sampler`: settings from `sampler_config` (default: the model's). The LR batch is padded so the HR
        size is a multiple of the network's downscale factor, and the result cropped back. Images larger
        than `sampler.tile` LR pixels are denoised as overlapping tiles blended at every step (`sr3.tiling`).
        `aug_level` > 0 noises the condition to that level first (CDM's conditioning augmentation at
        sampling time), unless `lr_noised` says the LR already is at that level (the truncated output of a
        base model); such an LR is no measurement to pin colours to, so the colour fix is skipped there.
        `denoise` (models trained with noise augmentation) tells the model the LR carries noise of that
        strength (`denoise_strengths`, `sr3.conditioning.denoise_condition`); the colour fix, which would
        pin the output to the input's noise, is skipped for it too.
        """
        sampler = sampler or self.sampler_config()
        if len(seeds) != lr.shape[0]:
            raise SR3Error(f"{len(seeds)} seeds for a batch of {lr.shape[0]} images")
        strengths = self.denoise_strengths(lr, denoise)
        if strengths.any() and (aug_level or lr_noised):
            raise SR3Error("denoise and aug_level are two uses of one noise level; give one of them")
        h, w = lr.shape[-2:]
        lr = pad_to_multiple(lr.to(self.device, torch.float32), self.multiple // math.gcd(self.multiple, self.scale))
        noise = PerSampleNoise(seeds, self.device)
        if strengths.any():
            cond = denoise_condition(lr, self.cfg, strengths)
        else:
            cond = sampling_condition(lr, self.cfg, aug_level, noise, lr_noised)
        cond.labels = self._labels(labels, lr.shape[0])
        sigmas = sampling_sigmas(sampler, self.cfg.noise)
        x = initial_noise(noise, (lr.shape[0], self.cfg.model.out_channels, *cond.image.shape[2:]), float(sigmas[0]))
        x = run_sampler(sampler, self._tiled(sampler.tile), x, sigmas, cond, noise, callback=progress)
        x = undiffused_image(x, cond, self.cfg.noise.residual)
        if colour_fixed(sampler, bool(strengths.any())) and not lr_noised:
            x = low_frequency_fix(x, lr, self.scale)
        return x[..., : h * self.scale, : w * self.scale].clamp(-1, 1)

    def denoise_strengths(self, lr: torch.Tensor, denoise: Denoise) -> torch.Tensor:
        """One denoise strength per LR image [B, C, h, w]: given, or "auto" (`sr3.conditioning.auto_denoise`)."""
        if isinstance(denoise, str):
            check_denoise(denoise, self.cfg)
            values = [auto_denoise(x, self.cfg) for x in lr]
        else:
            values = [float(denoise)] * lr.shape[0] if isinstance(denoise, (int, float)) else [float(d) for d in denoise]
        if len(values) != lr.shape[0]:
            raise SR3Error(f"{len(values)} denoise strengths for a batch of {lr.shape[0]} images")
        return torch.tensor([check_denoise(v, self.cfg) for v in values], dtype=torch.float64)

    def denoise_for(self, images: Sequence[Image.Image], denoise: Denoise) -> list[float]:
        """The denoise strength each PIL image will be upscaled with ("auto" resolved), e.g. to record it."""
        lr = torch.stack([to_tensor(split_for_upscale(im).rgb) for im in images])
        return self.denoise_strengths(lr, denoise).tolist()

    def _tiled(self, tile: int):
        """The denoiser, over HR windows of `tile` LR pixels (rounded to the network's factor) unless 0."""
        if tile == 0:
            return self.denoiser
        tile_hr = max(self.multiple, tile * self.scale // self.multiple * self.multiple)
        return TiledDenoiser(self.denoiser, tile_hr, overlap=tile_hr // 4, batch=self.tile_batch)

    def _labels(self, labels: torch.Tensor | None, batch: int) -> torch.Tensor | None:
        """Class labels on the device, checked against the model's classes."""
        n = self.cfg.model.num_classes
        if n == 0:
            if labels is not None:
                raise SR3Error("this model is not class-conditional; give no class")
            return None
        if labels is None or labels.shape != (batch,) or labels.min() < 0 or labels.max() >= n:
            raise SR3Error(f"this model needs one class label in [0, {n}) per image")
        return labels.to(self.device)

    @torch.inference_mode()
    def generate(
        self,
        count: int,
        seeds: Sequence[int],
        sampler: SamplerConfig | None = None,
        labels: torch.Tensor | None = None,
        progress: Progress = None,
        guidance: float = 0.0,
        stop_level: float = 0.0,
    ) -> torch.Tensor:
        """Samples of a base (unconditioned on images) model: [count, C, hr_size, hr_size] in [-1, 1].

        `guidance` w > 0 applies classifier-free guidance, (1 + w) D(x | c) - w D(x | no class), for models
        trained with `train.label_dropout` > 0; CDM itself used none (w = 0). `stop_level` s > 0 stops the
        reverse process at level s and returns the noisy z_s = sqrt(gamma_s) x_0 + sqrt(1 - gamma_s) eps,
        unclipped (CDM's truncated conditioning augmentation).
        """
        if self.cfg.model.is_sr:
            raise SR3Error("this is a super-resolution model; use super_resolve/upscale")
        if len(seeds) != count:
            raise SR3Error(f"{len(seeds)} seeds for {count} images")
        sampler = sampler or self.sampler_config()
        size = self.cfg.data.hr_size
        noise = PerSampleNoise(seeds, self.device)
        cond = Cond(labels=self._labels(labels, count))
        sigmas = sampling_sigmas(sampler, self.cfg.noise, stop_level)
        denoiser = self.denoiser
        if guidance:
            if cond.labels is None:
                raise SR3Error("guidance needs a class-conditional model")
            denoiser = ClassifierFreeGuidance(self.denoiser, guidance, self.cfg.model.num_classes)
        x = initial_noise(noise, (count, self.cfg.model.out_channels, size, size), float(sigmas[0]))
        x = run_sampler(sampler, denoiser, x, sigmas, cond, noise, callback=progress)
        if stop_level > 0:  # variance-exploding x_s -> the forward process's z_s
            return x / math.sqrt(1 + float(sigmas[-1]) ** 2)
        return x.clamp(-1, 1)

    def upscale(
        self,
        images: Image.Image | Sequence[Image.Image],
        steps: int | None = None,
        sampler: str | None = None,
        seed: int | Sequence[int] = 0,
        progress: Progress = None,
        tile: int | None = None,
        colour_fix: bool | None = None,
        out_scale: float | None = None,
        denoise: Denoise = 0.0,
    ) -> Image.Image | list[Image.Image]:
        """Upscale one PIL image, or a batch of same-size images (image i gets seed + i, or seeds[i]).

        Any mode: colour goes through the model; alpha is resized apart by bicubic; grey stays grey; the
        ICC profile is carried in `info` (`upscale_images`). `steps`, `sampler`, `tile` and `colour_fix`
        override the model's settings (`sampler_config`). `out_scale` resamples the result to any other
        factor before its one rounding to 8 bits. `denoise`: see `super_resolve`.
        """
        sampler_cfg = self.sampler_config(steps, sampler, tile, colour_fix)

        def run(lr, seeds):
            return self.super_resolve(lr, seeds, sampler_cfg, progress, denoise=denoise)

        return upscale_images(images, seed, run, out_scale)
