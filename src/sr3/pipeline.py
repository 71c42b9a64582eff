"""Super-resolve images with a trained SR3 model: conditioning, padding, batching, seeds, progress.

    model = SR3Pipeline.load("natural-4x")   # a shipped model, run dir, checkpoint dir or .safetensors file
    hr = model.upscale(Image.open("photo.png"), seed=0)
"""

from __future__ import annotations

import dataclasses
import math
import platform
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image

from sr3.checkpoint import load_unet
from sr3.config import Config, SamplerConfig
from sr3.diffusion import Cond, Denoiser, undiffused_image
from sr3.errors import SR3Error
from sr3.conditioning import noise_augment, upsample
from sr3.imaging import UpscaleInput, imresize, resize_plane, split_for_upscale, to_pil, to_tensor
from sr3.pretrained import resolve_model
from sr3.samplers import PerSampleNoise, get_sampler, initial_noise, run_sampler
from sr3.schedules import sampling_sigmas, training_gammas
from sr3.tiling import TiledDenoiser

Progress = Callable[[int], None] | None


def resolve_device(device: str | torch.device) -> torch.device:
    """A torch device that exists here, or an SR3Error naming the problem."""
    try:
        device = torch.device(device)
    except RuntimeError:
        raise SR3Error(f"unknown device '{device}'") from None
    accelerator = torch.accelerator.current_accelerator()
    if device.type != "cpu" and (accelerator is None or accelerator.type != device.type):
        raise SR3Error(f"device '{device}' is not available on this machine")
    return device


PRECISIONS = {"fp32": None, "bf16": torch.bfloat16}  # the network's autocast dtype; None: plain float32


def slow_bf16_reason(device: torch.device) -> str | None:
    """Why bf16 would run slower than fp32 on `device` (no bf16 instructions or tensor cores), or None."""
    if device.type == "cuda":
        major, minor = torch.cuda.get_device_capability(device)
        return None if major >= 8 else f"this GPU (compute capability {major}.{minor}) has no bf16 tensor cores"
    if device.type != "cpu":
        return None  # other accelerators: nothing known against bf16
    if platform.machine().lower() in ("x86_64", "amd64", "i386", "i686"):
        fast = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    else:
        fast = torch.ops.mkldnn._is_mkldnn_bf16_supported()  # e.g. ARM's BF16 extension
    return None if fast else "this CPU has no bf16 instructions (AMX or AVX-512 BF16)"


def low_frequency_fix(sr: torch.Tensor, lr: torch.Tensor, scale: int) -> torch.Tensor:
    """Match the output's low frequencies (its colours) to the LR input: add back the upsampled LR residual.

    sr + up(lr - down(sr)) leaves detail above the LR band untouched while pulling the downsampled output
    onto the input, against the hue shifts diffusion SR can drift into.
    """
    return sr + imresize(lr - imresize(sr, scale=1 / scale), scale=scale)


class ClassifierFreeGuidance:
    """D_w(x) = (1 + w) D(x | c) - w D(x | no class) (Ho & Salimans 2021), both halves in one batch."""

    def __init__(self, denoiser, scale: float, null_label: int):
        self.denoiser, self.scale, self.null_label = denoiser, scale, null_label

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor, cond: Cond) -> torch.Tensor:
        null = torch.full_like(cond.labels, self.null_label)
        both = Cond(
            image=None if cond.image is None else torch.cat([cond.image, cond.image]),
            labels=torch.cat([cond.labels, null]),
            aug_level=None if cond.aug_level is None else torch.cat([cond.aug_level, cond.aug_level]),
        )
        conditional, unconditional = self.denoiser(torch.cat([x, x]), torch.cat([sigma, sigma]), both).chunk(2)
        return conditional + self.scale * (conditional - unconditional)


class SR3Pipeline:
    """A trained SR3 denoiser plus the config it was trained with."""

    def __init__(self, net: torch.nn.Module, cfg: Config, device: str | torch.device = "cpu", precision: str = "fp32"):
        """`precision` "bf16" runs the network under bf16 autocast (fast on GPUs and AMX / AVX-512 BF16 CPUs)."""
        if precision not in PRECISIONS:
            raise SR3Error(f"precision must be one of {', '.join(PRECISIONS)}; got {precision!r}")
        self.cfg, self.device, self.precision = cfg, resolve_device(device), precision
        # channels_last convolutions run about 1.3x faster in inference on CPUs (benchmarks/step_time.py)
        net = net.to(self.device, memory_format=torch.channels_last)
        self.denoiser = Denoiser(net, cfg.noise.parameterization, clip=True, autocast=PRECISIONS[precision]).eval()
        self.scale = cfg.data.scale
        self.multiple = net.downscale_factor
        self.tile_batch = 4 if self.device.type == "cpu" else 64  # tiles per network call: a GPU wants many

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "cpu", precision: str = "fp32") -> SR3Pipeline:
        """Load a shipped model by name, or the EMA weights of a run directory, checkpoint folder or weights file."""
        net, cfg = load_unet(resolve_model(path))
        return cls(net, cfg, device, precision)

    def sampler_config(self, steps: int | None = None, sampler: str | None = None) -> SamplerConfig:
        """The model's configured sampler with optional overrides of the step count and sampler name.

        A tuned `sigmas` grid (from `sr3 schedule`) is kept while the step count is the model's own.
        """
        cfg = self.cfg.sampler
        if sampler is not None:
            get_sampler(sampler)  # fail before any work on an unknown name
        if steps is not None and steps != cfg.steps:
            cfg = dataclasses.replace(cfg, steps=steps, sigmas=[])
        if sampler is not None:
            cfg = dataclasses.replace(cfg, name=sampler)
        return cfg

    @torch.inference_mode()
    def super_resolve(
        self,
        lr: torch.Tensor,
        seeds: Sequence[int],
        sampler: SamplerConfig | None = None,
        progress: Progress = None,
        tile: int | None = None,
        aug_level: float = 0.0,
        colour_fix: bool = False,
        labels: torch.Tensor | None = None,
        lr_noised: bool = False,
    ) -> torch.Tensor:
        """SR of a batch of LR tensors [B, C, h, w] in [-1, 1] -> [B, C, h*scale, w*scale], one seed per image.

        The LR batch is reflect-padded so the HR size is a multiple of the U-Net's downscale factor,
        and the result cropped back. `tile` (LR pixels; default the sampler's, 0 for whole images) bounds
        the network's input size: larger images are denoised as overlapping tiles blended at every step
        (see `sr3.tiling`). `aug_level` > 0 noises the condition to that level first (CDM's conditioning
        augmentation at sampling time), unless `lr_noised` says the LR already is at that level (the
        truncated output of a base model).
        `colour_fix` applies `low_frequency_fix` against colour drift.
        """
        sampler = sampler or self.cfg.sampler
        if len(seeds) != lr.shape[0]:
            raise ValueError(f"{len(seeds)} seeds for a batch of {lr.shape[0]}")
        h, w = lr.shape[-2:]
        lr_multiple = self.multiple // math.gcd(self.multiple, self.scale)
        pad_h, pad_w = -h % lr_multiple, -w % lr_multiple
        lr = lr.to(self.device, torch.float32)
        if pad_h or pad_w:
            mode = "reflect" if pad_h < h and pad_w < w else "replicate"
            lr = F.pad(lr, (0, pad_w, 0, pad_h), mode=mode)
        noise = PerSampleNoise(seeds, self.device)
        cond = self.condition(lr, aug_level, noise, lr_noised)
        cond.labels = self._labels(labels, lr.shape[0])
        sigmas = sampling_sigmas(sampler, self.cfg.noise)
        x = initial_noise(noise, cond.image.shape[:1] + (self.cfg.model.out_channels,) + cond.image.shape[2:], float(sigmas[0]))
        denoiser = self.denoiser
        tile = sampler.tile if tile is None else tile
        if tile < 0:
            raise SR3Error(f"tile must be 0 (whole images) or a positive number of input pixels; got {tile}")
        if tile > 0:
            tile_hr = max(self.multiple, tile * self.scale // self.multiple * self.multiple)
            denoiser = TiledDenoiser(self.denoiser, tile_hr, overlap=tile_hr // 4, batch=self.tile_batch)
        if self.cfg.noise.regression:  # one evaluation at infinite noise: the network sees only the condition
            x = denoiser(torch.zeros_like(x), x.new_full(x.shape[:1], math.inf), cond)
        else:
            x = run_sampler(sampler.name, denoiser, x, sigmas, cond, noise, eta=sampler.eta, callback=progress)
        x = undiffused_image(x, cond, self.cfg.noise.residual)
        if colour_fix:
            x = low_frequency_fix(x, lr, self.scale)
        return x[..., : h * self.scale, : w * self.scale].clamp(-1, 1)

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
        sampler = sampler or self.cfg.sampler
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
        x = run_sampler(sampler.name, denoiser, x, sigmas, cond, noise, eta=sampler.eta, callback=progress)
        if stop_level > 0:  # variance-exploding x_s -> the forward process's z_s
            return x / math.sqrt(1 + float(sigmas[-1]) ** 2)
        return x.clamp(-1, 1)

    def condition(self, lr: torch.Tensor, aug_level: float, noise: PerSampleNoise, lr_noised: bool = False) -> Cond:
        """The upsampled LR condition, noised at low resolution to `aug_level` (a fraction of T) for
        augmentation-aware models. `lr_noised`: the LR is already at that level (a truncated stage below)."""
        if aug_level == 0:
            return Cond(image=upsample(lr, self.scale))
        if not self.cfg.model.augment_embedding:
            raise SR3Error("this model was not trained with conditioning augmentation; aug_level must be 0")
        if not 0 < aug_level <= 1:
            raise SR3Error(f"aug_level must be in [0, 1]; got {aug_level}")
        level = torch.full((lr.shape[0],), aug_level, dtype=torch.float64)
        if lr_noised:
            return Cond(image=upsample(lr, self.scale), aug_level=level.float().to(lr.device))
        noised = noise_augment(lr, level, training_gammas(self.cfg.noise), noise(lr))
        return Cond(image=upsample(noised, self.scale), aug_level=level.float().to(lr.device))

    def upscale(
        self,
        images: Image.Image | Sequence[Image.Image],
        steps: int | None = None,
        sampler: str | None = None,
        seed: int | Sequence[int] = 0,
        progress: Progress = None,
        tile: int | None = None,
        colour_fix: bool = True,
        out_scale: float | None = None,
    ) -> Image.Image | list[Image.Image]:
        """Upscale one PIL image, or a batch of same-size images (image i gets seed + i, or seeds[i]).

        Any mode: colour goes through the model; alpha is resized apart by bicubic; grey stays grey; the
        ICC profile is carried in `info`. `out_scale` resamples the result to any other factor. `colour_fix`
        (default on, as it measures better) pins the output's low frequencies to the input.
        """
        single = isinstance(images, Image.Image)
        batch = [images] if single else list(images)
        seeds = [seed + i for i in range(len(batch))] if isinstance(seed, int) else list(seed)
        if len({im.size for im in batch}) != 1:
            raise ValueError("a batch must hold images of one size")
        if min(batch[0].size) < 2:
            raise SR3Error(f"image of size {batch[0].size} is too small to upscale")
        if out_scale is not None and out_scale <= 0:
            raise SR3Error(f"output scale must be positive; got {out_scale}")
        parts = [split_for_upscale(im) for im in batch]
        lr = torch.stack([to_tensor(p.rgb) for p in parts])
        sampler_cfg = self.sampler_config(steps, sampler)
        sr = self.super_resolve(lr, seeds, sampler_cfg, progress, tile, colour_fix=colour_fix).cpu()
        out = [self._finish(to_pil(x), part, out_scale) for x, part in zip(sr, parts)]
        return out[0] if single else out

    def _finish(self, rgb: Image.Image, part: UpscaleInput, out_scale: float | None) -> Image.Image:
        """Resample to `out_scale`, restore grey, alpha and the ICC profile."""
        w, h = part.rgb.size
        size = (max(1, round(w * out_scale)), max(1, round(h * out_scale))) if out_scale else rgb.size
        if size != rgb.size:
            rgb = resize_plane(rgb, size)
        image = rgb.convert("L") if part.gray else rgb
        if part.alpha is not None:
            image.putalpha(resize_plane(part.alpha, size))
        if part.icc_profile:
            image.info["icc_profile"] = part.icc_profile
        return image
