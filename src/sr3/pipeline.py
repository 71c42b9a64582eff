"""Super-resolve images with a trained SR3 model, or sample a base model: seeds, sampler settings, progress.

    model = SR3Pipeline.load("natural-4x")   # a shipped model, run dir, checkpoint dir or .safetensors file
    hr = model.upscale(Image.open("photo.png"), seed=0)

Every sampling setting (sampler, steps, tile, colour fix) is resolved in one place, `sampler_config`,
from the model's own `sampler` config and the caller's overrides, so the command line, the Python API
and any server sample a model alike. The condition is `sr3.conditioning`'s from the model's predictor
(`sr3.predictors`), tiles `sr3.tiling`'s, guidance `sr3.guidance`'s, PIL in and out `ImageBatch`'s.
Entry points hold an `sr3.upscaler.Upscaler`, which wraps one of these or a cascade of them.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image

from sr3.checkpoint import build_stored, read_weights
from sr3.conditioning import auto_denoise, check_denoise, denoise_condition, sampling_condition
from sr3.config import Config, SamplerConfig, check_tile
from sr3.device import check_precision, resolve_device
from sr3.diffusion import Cond, Denoiser, diffused_image, undiffused_image
from sr3.errors import SR3Error
from sr3.guidance import ClassifierFreeGuidance
from sr3.imaging import eight_bit, to_pil, to_tensor
from sr3.noise import PerSampleNoise, initial_noise
from sr3.predictors import Predictor, build_predictor
from sr3.pretrained import resolve_model
from sr3.resize import imresize, low_frequency_fix, pad_to_multiple, resize_plane
from sr3.samplers import check_fits, run_sampler
from sr3.schedules import sampling_sigmas
from sr3.tiling import tiled

Progress = Callable[[int], None] | None
MIN_SIDE = 8  # LR pixels: a smaller input is padded to it (edge pixels repeated) and its output cropped back


GREY_WEIGHTS = (0.299, 0.587, 0.114)


@dataclass
class UpscaleInput:
    """An image split for super-resolution: RGB for the model, and what the output must get back."""

    rgb: Image.Image
    alpha: Image.Image | None  # resized apart, deterministically, by `resize_plane`
    gray: bool
    icc_profile: bytes | None


def split_for_upscale(img: Image.Image) -> UpscaleInput:
    """Separate colour from alpha (RGBA, LA, palette transparency) and note grey inputs (16-bit ones as 8-bit
    grey) and the ICC profile."""
    img = eight_bit(img)
    has_alpha = img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info)
    alpha = img.convert("RGBA").getchannel("A") if has_alpha else None
    gray = img.mode in ("1", "L", "LA")
    return UpscaleInput(img.convert("RGB"), alpha, gray, img.info.get("icc_profile"))


def join_upscaled(rgb: torch.Tensor, part: UpscaleInput, size: tuple[int, int] | None = None) -> Image.Image:
    """The output image of an upscaled `split_for_upscale` part: the model's RGB [3, H, W] in [-1, 1],
    resampled to (width, height) `size` before its one rounding to 8 bits, with grey, alpha and the ICC
    profile of the input restored."""
    size = size or (rgb.shape[-1], rgb.shape[-2])
    if size != (rgb.shape[-1], rgb.shape[-2]):
        rgb = imresize(rgb, size=(size[1], size[0]))
    if part.gray:  # ITU-R 601 luma, as PIL's convert("L"), taken before the rounding
        rgb = (torch.tensor(GREY_WEIGHTS, dtype=rgb.dtype).view(3, 1, 1) * rgb).sum(dim=0, keepdim=True)
    image = to_pil(rgb)
    if part.alpha is not None:
        image.putalpha(resize_plane(part.alpha, size))
    if part.icc_profile:
        image.info["icc_profile"] = part.icc_profile
    return image


@dataclass
class ImageBatch:
    """Same-size PIL images as one LR tensor for a model, and what each output must get back (alpha, grey, ICC).

    Any valid image upscales: a side under MIN_SIDE is padded for the model, and the output cropped to
    scale times the input.
    """

    lr: torch.Tensor  # [B, 3, h, w] in [-1, 1], each side at least MIN_SIDE
    parts: list[UpscaleInput]
    size: tuple[int, int]  # the inputs' (width, height)

    @classmethod
    def of(cls, images: Sequence[Image.Image]) -> ImageBatch:
        if not images:
            raise SR3Error("no images to upscale")
        if len({im.size for im in images}) != 1:
            raise SR3Error("a batch must hold images of one size")
        parts = [split_for_upscale(im) for im in images]
        lr = torch.stack([to_tensor(p.rgb) for p in parts])
        w, h = images[0].size
        lr = F.pad(lr, (0, max(0, MIN_SIDE - w), 0, max(0, MIN_SIDE - h)), mode="replicate")
        return cls(lr, parts, (w, h))

    def images(self, sr: torch.Tensor, out_scale: float | None = None) -> list[Image.Image]:
        """The PIL outputs of the model's [B, 3, H, W] result, resampled to `out_scale` times the input if given."""
        if out_scale is not None and out_scale <= 0:
            raise SR3Error(f"output scale must be positive; got {out_scale}")
        w, h = self.size
        scale = sr.shape[-1] // self.lr.shape[-1]
        sr = sr[..., : h * scale, : w * scale].cpu()
        size = (max(1, round(w * out_scale)), max(1, round(h * out_scale))) if out_scale else None
        return [join_upscaled(x, part, size) for x, part in zip(sr, self.parts)]


Denoise = float | str | Sequence[float]  # a strength in [0, 1] for every image, "auto", or one per image


def colour_fixed(sampler: SamplerConfig, denoise: Denoise) -> bool:
    """Whether the colour fix applies: the sampler's setting, except under a denoise strength, where it would
    pin the output to the input's noise."""
    return sampler.colour_fix and not denoise


class LRProjection:
    """A denoiser whose every image estimate is pulled onto the LR input (`low_frequency_fix`): CCDF's data
    consistency, so a refinement chain cannot drift from the measurement however many steps it takes."""

    def __init__(self, denoiser, lr: torch.Tensor, scale: int, residual: bool):
        self.denoiser, self.lr, self.scale, self.residual = denoiser, lr, scale, residual

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor, cond: Cond) -> torch.Tensor:
        image = undiffused_image(self.denoiser(x, sigma, cond), cond, self.residual)
        return diffused_image(low_frequency_fix(image, self.lr, self.scale), cond, self.residual)


class SR3Pipeline:
    """A trained SR3 denoiser plus the config it was trained with."""

    def __init__(
        self,
        net: torch.nn.Module,
        cfg: Config,
        device: str | torch.device = "cpu",
        precision: str = "fp32",
        predictor: Predictor | None = None,
    ):
        """`precision` "bf16" runs the network under bf16 autocast (fast on GPUs and AMX / AVX-512 BF16 CPUs).
        `predictor`: what the model refines (default: the one its config names, if that needs no network)."""
        self.cfg, self.device = cfg, resolve_device(device)
        self.precision = check_precision(precision, self.device)
        self.predictor = predictor or build_predictor(cfg, None, self.device, precision)
        # channels_last convolutions run about 1.3x faster in inference on CPUs (benchmarks/step_time.py)
        net = net.to(self.device, memory_format=torch.channels_last)
        self.denoiser = Denoiser(net, cfg.noise.parameterization, clip=True, precision=precision).eval()
        self.scale = cfg.data.scale
        self.multiple = net.downscale_factor
        self.tile_batch = 4 if self.device.type == "cpu" else 64  # tiles per network call: a GPU wants many

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "cpu", precision: str = "fp32") -> SR3Pipeline:
        """Load a shipped model by name, or the EMA weights of a run directory, checkpoint folder or weights file,
        with the predictor network the file carries."""
        file = resolve_model(path)
        stored = read_weights(file)
        device = resolve_device(device)
        predictor = build_predictor(stored.cfg, stored.predictor, device, precision)
        return cls(build_stored(stored, file), stored.cfg, device, precision, predictor)

    def sampler_config(
        self,
        steps: int | None = None,
        sampler: str | None = None,
        tile: int | None = None,
        colour_fix: bool | None = None,
        sigma_max: float | None = None,
    ) -> SamplerConfig:
        """The model's sampler settings with the caller's overrides; None keeps the model's own.

        A tuned `sigmas` grid (from `sr3 schedule`) is kept while the step count is the model's own. A
        regression model samples with the `regression` sampler, whose one evaluation takes no step count.
        `tile` is in LR pixels, 0 for whole images; `colour_fix` applies `low_frequency_fix`; `sigma_max`
        starts a refinement of the prediction at that noise (0: from pure noise).
        """
        cfg = self.cfg.sampler
        if self.cfg.noise.regression:
            cfg = dataclasses.replace(cfg, name="regression", sigmas=[])
        name = sampler or cfg.name
        steps = check_fits(name, self.cfg.noise.regression).fixed_steps or steps
        if steps is not None and steps != cfg.steps:
            cfg = dataclasses.replace(cfg, steps=steps, sigmas=[])
        if sigma_max is not None and sigma_max != cfg.sigma_max:
            if sigma_max < 0:
                raise SR3Error(f"sigma_max must be at least 0; got {sigma_max}")
            cfg = dataclasses.replace(cfg, sigma_max=sigma_max, sigmas=[])
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
            cond = denoise_condition(lr, self.cfg, self.predictor, strengths)
        else:
            cond = sampling_condition(lr, self.cfg, self.predictor, aug_level, noise, lr_noised)
        cond.labels = self._labels(labels, lr.shape[0])
        sigmas = sampling_sigmas(sampler, self.cfg.noise)
        shape = (lr.shape[0], self.cfg.model.out_channels, *cond.image.shape[2:])
        residual = self.cfg.noise.residual
        if sampler.sigma_max:  # refine the prediction: start at it (0 as a residual) noised to the grid's top
            start = diffused_image(cond.image[:, : shape[1]], cond, residual)
            x = start + float(sigmas[0]) * noise(start)
        else:
            x = initial_noise(noise, shape, float(sigmas[0]))
        denoiser = tiled(self.denoiser, sampler.tile, self.scale, self.multiple, self.tile_batch)
        measured = not (strengths.any() or lr_noised)  # an LR the output may be pinned to
        if sampler.project and measured:
            denoiser = LRProjection(denoiser, lr, self.scale, residual)
        x = run_sampler(sampler, denoiser, x, sigmas, cond, noise, callback=progress)
        x = undiffused_image(x, cond, residual)
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

    @torch.inference_mode()
    def predict(self, lr: torch.Tensor) -> torch.Tensor:
        """What the model refines, for LR tensors [B, C, h, w]: its predictor's output (the bicubic upsample for SR3)."""
        return self.predictor(lr.to(self.device, torch.float32)).clamp(-1, 1)

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
        if sampler is not None and (sampler.sigma_max or sampler.project):
            raise SR3Error("a base model has no prediction to refine or LR to project on: sampler.sigma_max and "
                           "sampler.project belong to SR stages")
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
        ICC profile is carried in `info` (`ImageBatch`). `steps`, `sampler`, `tile` and `colour_fix`
        override the model's settings (`sampler_config`). `out_scale` resamples the result to any other
        factor before its one rounding to 8 bits. `denoise`: see `super_resolve`.
        """
        single = isinstance(images, Image.Image)
        batch = ImageBatch.of([images] if single else list(images))
        seeds = [seed + i for i in range(len(batch.parts))] if isinstance(seed, int) else list(seed)
        sampler_cfg = self.sampler_config(steps, sampler, tile, colour_fix)
        out = batch.images(self.super_resolve(batch.lr, seeds, sampler_cfg, progress, denoise=denoise), out_scale)
        return out[0] if single else out
