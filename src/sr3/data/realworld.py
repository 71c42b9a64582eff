"""A real-world degradation model in the spirit of Real-ESRGAN (Wang et al. 2021) and BSRGAN (Zhang et al. 2021).

Camera photos are not bicubic downsamples: lenses and motion blur them, sensors add noise, and JPEG
compresses them, often more than once. `degrade_real` applies that chain twice (second order, as
Real-ESRGAN does): blur by a random kernel (isotropic or anisotropic Gaussian, generalised Gaussian,
plateau), resize by a random factor and mode, Gaussian or Poisson noise (colour or grey), JPEG at a random
quality; then the final resize to 1/scale, before or after a last JPEG at random (BSRGAN shuffles its
order; Real-ESRGAN randomises this last pair). Every draw comes from the per-sample generator, so a
training pair is a pure function of its sample number. JPEG goes through Pillow's libjpeg.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from sr3.imaging import quantize
from sr3.resize import imresize

KERNELS = ("iso", "aniso", "generalized_iso", "generalized_aniso", "plateau_iso", "plateau_aniso")
RESIZE_MODES = ("area", "bilinear", "bicubic")


@dataclass(frozen=True)
class StageConfig:
    """One blur -> resize -> noise -> JPEG pass; a probability of 0 skips that operation."""

    blur_prob: float = 1.0
    kernel_sizes: tuple[int, int] = (7, 21)  # odd sizes drawn in this range
    kernel_probs: tuple[float, ...] = (0.45, 0.25, 0.12, 0.03, 0.12, 0.03)  # over KERNELS
    sigma: tuple[float, float] = (0.2, 3.0)
    beta_generalized: tuple[float, float] = (0.5, 4.0)
    beta_plateau: tuple[float, float] = (1.0, 2.0)
    resize_probs: tuple[float, float, float] = (0.2, 0.7, 0.1)  # up, down, keep
    resize_up: tuple[float, float] = (1.0, 1.5)
    resize_down: tuple[float, float] = (0.15, 1.0)
    noise_prob: float = 1.0
    gaussian_prob: float = 0.5  # else Poisson
    noise_sigma: tuple[float, float] = (1.0, 30.0)  # Gaussian, in 8-bit grey levels
    poisson_scale: tuple[float, float] = (0.05, 3.0)
    grey_noise_prob: float = 0.4
    jpeg_prob: float = 1.0
    jpeg_quality: tuple[int, int] = (30, 95)


@dataclass(frozen=True)
class RealWorldConfig:
    """Real-ESRGAN's second-order settings (for 4x) by default; `second_prob` is the chance of the second pass."""

    first: StageConfig = field(default_factory=StageConfig)
    second: StageConfig = field(default_factory=lambda: StageConfig(
        blur_prob=0.8, sigma=(0.2, 1.5), resize_probs=(0.3, 0.4, 0.3), resize_up=(1.0, 1.2),
        resize_down=(0.3, 1.2), noise_sigma=(1.0, 25.0), poisson_scale=(0.05, 2.5)))
    second_prob: float = 1.0
    clean_prob: float = 0.0  # the chance of a plain MATLAB-style bicubic pair instead, so clean inputs stay clean
    final_modes: tuple[str, ...] = RESIZE_MODES  # "matlab": sr3's MATLAB-style bicubic
    final_jpeg_prob: float = 1.0
    final_jpeg_quality: tuple[int, int] = (30, 95)
    jpeg_first_prob: float = 0.5  # the last JPEG before the final resize rather than after it


# `photo`: the milder mixture the photo-4x model trains on. Real-ESRGAN's settings (the default above) are
# made for heavily damaged web images; its models fall well below bicubic on PSNR of camera photos, so
# here a fifth of the pairs are clean, the first pass downsizes at most 2x, noise and JPEG are lighter and
# the second pass runs half the time.
PHOTO = RealWorldConfig(
    first=StageConfig(resize_down=(0.5, 1.0), noise_sigma=(1.0, 15.0), poisson_scale=(0.05, 1.5), jpeg_quality=(50, 95)),
    second=StageConfig(blur_prob=0.5, sigma=(0.2, 1.2), resize_probs=(0.2, 0.3, 0.5), resize_up=(1.0, 1.2),
                       resize_down=(0.7, 1.0), noise_prob=0.5, noise_sigma=(1.0, 10.0), poisson_scale=(0.05, 1.0),
                       jpeg_prob=0.5, jpeg_quality=(60, 95)),
    second_prob=0.5,
    clean_prob=0.2,
    final_jpeg_prob=0.7,
    final_jpeg_quality=(50, 95),
)


def _uniform(gen: torch.Generator, low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand((), generator=gen))


def _chance(gen: torch.Generator, p: float) -> bool:
    return p > 0 and float(torch.rand((), generator=gen)) < p


def _choice(gen: torch.Generator, options, probs=None):
    weights = torch.tensor(probs if probs is not None else [1.0] * len(options), dtype=torch.float64)
    return options[int(torch.multinomial(weights, 1, generator=gen))]


def blur_kernel(kind: str, size: int, sigma_x: float, sigma_y: float, angle: float, beta: float) -> torch.Tensor:
    """A normalised size x size kernel: Gaussian (beta unused), generalised Gaussian exp(-(d^2/2)^beta) or
    plateau 1 / (1 + (d^2)^beta), d the Mahalanobis distance under the rotated covariance; iso kinds use sigma_x."""
    if kind.endswith("iso") and not kind.endswith("aniso"):
        sigma_y, angle = sigma_x, 0.0
    r = (size - 1) / 2
    y, x = torch.meshgrid(torch.arange(size) - r, torch.arange(size) - r, indexing="ij")
    c, s = math.cos(angle), math.sin(angle)
    u, v = c * x + s * y, -s * x + c * y
    d2 = (u / sigma_x) ** 2 + (v / sigma_y) ** 2
    if kind.startswith("generalized"):
        k = torch.exp(-0.5 * d2.pow(beta))
    elif kind.startswith("plateau"):
        k = 1 / (1 + d2.pow(beta))
    else:
        k = torch.exp(-0.5 * d2)
    return (k / k.sum()).float()


def random_kernel(cfg: StageConfig, gen: torch.Generator) -> tuple[torch.Tensor, dict]:
    kind = _choice(gen, KERNELS, cfg.kernel_probs)
    lo, hi = cfg.kernel_sizes
    size = 2 * int(torch.randint(lo // 2, hi // 2 + 1, (), generator=gen)) + 1
    sx, sy = _uniform(gen, *cfg.sigma), _uniform(gen, *cfg.sigma)
    angle = _uniform(gen, -math.pi, math.pi)
    beta = _uniform(gen, *(cfg.beta_plateau if kind.startswith("plateau") else cfg.beta_generalized))
    return blur_kernel(kind, size, sx, sy, angle, beta), {"kernel": kind, "size": size, "sigma": (sx, sy)}


def convolve(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """x [C, H, W] convolved with a 2D kernel per channel, reflect-padded (replicate where too small)."""
    p = kernel.shape[-1] // 2
    mode = "reflect" if min(x.shape[-2:]) > p else "replicate"
    padded = F.pad(x[None], (p, p, p, p), mode=mode)
    weight = kernel[None, None].expand(x.shape[0], 1, -1, -1)
    return F.conv2d(padded, weight, groups=x.shape[0])[0]


def resize(x: torch.Tensor, size: tuple[int, int], mode: str) -> torch.Tensor:
    if mode == "matlab":
        return imresize(x, size=size)
    kwargs = {} if mode == "area" else {"align_corners": False}
    return F.interpolate(x[None], size=size, mode=mode, **kwargs)[0]


def add_noise(x: torch.Tensor, cfg: StageConfig, gen: torch.Generator) -> tuple[torch.Tensor, dict]:
    """Gaussian noise of a drawn sigma (grey levels) or Poisson noise of a drawn scale, colour or grey, on [-1, 1]."""
    grey = _chance(gen, cfg.grey_noise_prob)
    shape = (1, *x.shape[1:]) if grey else x.shape
    if _chance(gen, cfg.gaussian_prob):
        sigma = _uniform(gen, *cfg.noise_sigma)
        noise = torch.randn(shape, generator=gen) * (2 * sigma / 255)
        return x + noise, {"noise": "gaussian", "sigma": sigma, "grey": grey}
    scale = _uniform(gen, *cfg.poisson_scale)
    unit = ((x + 1) / 2).clamp(0, 1)
    source = unit.mean(0, keepdim=True) if grey else unit
    noise = torch.poisson(source * 255, generator=gen) / 255 - source
    return x + 2 * scale * noise, {"noise": "poisson", "scale": scale, "grey": grey}


def jpeg(x: torch.Tensor, quality: int) -> torch.Tensor:
    """x [3, H, W] in [-1, 1] through Pillow's JPEG encoder and decoder at `quality` (4:2:0, as cameras save)."""
    array = ((quantize(x.clamp(-1, 1)) + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="JPEG", quality=quality)
    decoded = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"), dtype=np.float32)
    return torch.from_numpy(decoded).permute(2, 0, 1) / 127.5 - 1


def _stage(x: torch.Tensor, cfg: StageConfig, gen: torch.Generator, trace: list) -> torch.Tensor:
    if _chance(gen, cfg.blur_prob):
        kernel, info = random_kernel(cfg, gen)
        x = convolve(x, kernel)
        trace.append({"op": "blur", **info})
    direction = _choice(gen, ("up", "down", "keep"), cfg.resize_probs)
    if direction != "keep":
        factor = _uniform(gen, *(cfg.resize_up if direction == "up" else cfg.resize_down))
        mode = _choice(gen, RESIZE_MODES)
        size = (max(1, round(x.shape[1] * factor)), max(1, round(x.shape[2] * factor)))
        x = resize(x, size, mode)
        trace.append({"op": "resize", "factor": factor, "mode": mode})
    if _chance(gen, cfg.noise_prob):
        x, info = add_noise(x, cfg, gen)
        trace.append({"op": "noise", **info})
    if _chance(gen, cfg.jpeg_prob):
        quality = int(torch.randint(cfg.jpeg_quality[0], cfg.jpeg_quality[1] + 1, (), generator=gen))
        x = jpeg(x, quality)
        trace.append({"op": "jpeg", "quality": quality})
    return x.clamp(-1, 1)


def degrade_real(hr: torch.Tensor, scale: int, gen: torch.Generator, cfg: RealWorldConfig = RealWorldConfig(),
                 trace: list | None = None) -> torch.Tensor:
    """The LR image [C, H/scale, W/scale] of `hr` [C, H, W] under the second-order real-world model, 8-bit
    rounded; `trace`, when given, receives every operation and its drawn parameters, in order."""
    trace = [] if trace is None else trace
    target = (hr.shape[1] // scale, hr.shape[2] // scale)
    if _chance(gen, cfg.clean_prob):
        trace.append({"op": "resize", "size": target, "mode": "matlab"})
        return quantize(imresize(hr.float(), size=target))
    x = _stage(hr.float(), cfg.first, gen, trace)
    if _chance(gen, cfg.second_prob):
        x = _stage(x, cfg.second, gen, trace)
    mode = _choice(gen, cfg.final_modes)
    quality = int(torch.randint(cfg.final_jpeg_quality[0], cfg.final_jpeg_quality[1] + 1, (), generator=gen))
    with_jpeg, jpeg_first = _chance(gen, cfg.final_jpeg_prob), _chance(gen, cfg.jpeg_first_prob)
    if with_jpeg and jpeg_first:
        x = jpeg(x, quality)
        trace.append({"op": "jpeg", "quality": quality})
    x = resize(x, target, mode).clamp(-1, 1)
    trace.append({"op": "resize", "size": target, "mode": mode})
    if with_jpeg and not jpeg_first:
        x = jpeg(x, quality)
        trace.append({"op": "jpeg", "quality": quality})
    return quantize(x.clamp(-1, 1))
