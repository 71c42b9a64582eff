"""The denoiser contract D(x, sigma, cond) -> x0_hat, its parameterisations, and the training loss.

The network sees SR3's variance-preserving input y = sqrt(gamma) y_0 + sqrt(1 - gamma) eps and the
noise level sqrt(gamma); samplers see the variance-exploding x = y / sqrt(gamma) and sigma. The
conversions between the two, and between the eps / x0 / v targets, live here and nowhere else.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from sr3.config import NoiseConfig
from sr3.device import autocast
from sr3.noise import PerSampleNoise
from sr3.schedules import capped_gammas, sample_sqrt_gamma


@dataclass
class Cond:
    """What a stage is conditioned on: the prediction from the low-res image (SR3's bicubic upsample, or a
    regression network's output, optionally followed by more channels), CDM's class labels and augmentation level."""

    image: torch.Tensor | None = None
    labels: torch.Tensor | None = None
    aug_level: torch.Tensor | None = None


def diffused_image(hr: torch.Tensor, cond: Cond, residual: bool) -> torch.Tensor:
    """What the forward process noises: the HR image, or its residual to the prediction (SRDiff, Li et al. 2022).

    The residual starts every sample from the prediction's quality, so a small model spends its capacity on
    detail. It is taken to the prediction as the network sees it (noised, under conditioning augmentation),
    so the network knows what its output is added to, and a truncated stage below works as well as a finished one.
    """
    if not residual:
        return hr
    if cond.image is None:
        raise ValueError("a residual model needs the prediction from the LR image (Cond.image)")
    return hr - cond.image[:, : hr.shape[1]]


def undiffused_image(x: torch.Tensor, cond: Cond, residual: bool) -> torch.Tensor:
    """The inverse of `diffused_image`: a sample back in image space."""
    return x + cond.image[:, : x.shape[1]] if residual else x


def _bcast(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """A per-sample [B] tensor shaped to broadcast over images [B, C, H, W]."""
    return v.reshape(-1, *([1] * (x.ndim - 1))).to(x.dtype)


class Denoiser(nn.Module):
    """Wraps a network predicting eps, x0 or v into D(x, sigma, cond) -> x0_hat.

    Args:
        net: called as net(y_and_condition, sqrt_gamma, labels=..., aug_level=...).
        parameterization: what the network predicts ("eps" as in SR3, "x0" or "v").
        clip: clamp x0_hat to the data range [-1, 1] (for sampling).
        precision: run the network under autocast at this precision (`sr3.device`, e.g. "bf16"); the
            sampler's arithmetic and x0_hat stay in x's dtype.
    """

    def __init__(self, net: nn.Module, parameterization: str = "eps", clip: bool = False, precision: str = "fp32"):
        super().__init__()
        if parameterization not in ("eps", "x0", "v"):
            raise ValueError(f"unknown parameterization {parameterization!r}")
        self.net, self.parameterization, self.clip, self.precision = net, parameterization, clip, precision

    def forward(self, x: torch.Tensor, sigma: torch.Tensor, cond: Cond) -> torch.Tensor:
        """x0_hat for variance-exploding x = y_0 + sigma * eps, sigma of shape [B]."""
        sqrt_g = (1 + sigma.float() ** 2).rsqrt()
        y = x * _bcast(sqrt_g, x)
        with autocast(x.device.type, self.precision):
            out = net_output(self.net, y, sqrt_g, cond)
        out = out.to(x.dtype)
        x0 = to_x0(out, y, _bcast(sqrt_g, x), self.parameterization)
        return x0.clamp(-1, 1) if self.clip else x0


def net_output(net: nn.Module, y: torch.Tensor, sqrt_gamma: torch.Tensor, cond: Cond) -> torch.Tensor:
    """The raw network prediction for variance-preserving input y at level sqrt(gamma), condition concatenated."""
    inp = y if cond.image is None else torch.cat([y, cond.image.to(y.dtype)], dim=1)
    return net(inp, sqrt_gamma, labels=cond.labels, aug_level=cond.aug_level)


def to_x0(out: torch.Tensor, y: torch.Tensor, sqrt_g: torch.Tensor, parameterization: str) -> torch.Tensor:
    """x0_hat from a network output: eps -> (y - sqrt(1-g) eps) / sqrt(g); v -> sqrt(g) y - sqrt(1-g) v."""
    sqrt_1mg = (1 - sqrt_g**2).clamp(min=0).sqrt()
    if parameterization == "eps":
        return (y - sqrt_1mg * out) / sqrt_g
    if parameterization == "v":
        return sqrt_g * y - sqrt_1mg * out
    return out


def training_target(x0: torch.Tensor, eps: torch.Tensor, sqrt_g: torch.Tensor, parameterization: str) -> torch.Tensor:
    """What the network must predict: eps, x0, or v = sqrt(g) eps - sqrt(1-g) x0 (Salimans & Ho 2022)."""
    if parameterization == "eps":
        return eps
    if parameterization == "v":
        return sqrt_g * eps - (1 - sqrt_g**2).sqrt() * x0
    return x0


def min_snr_weight(sqrt_g: torch.Tensor, parameterization: str, k: float) -> torch.Tensor:
    """Min-SNR-k loss weight per sample (Hang et al. 2023), SNR = gamma / (1 - gamma): the x0 loss weighted by
    min(SNR, k), written for the target the network predicts (eps: / SNR, v: / (SNR + 1), x0: as is)."""
    g = sqrt_g.double() ** 2
    snr = g / (1 - g)
    if parameterization == "eps":
        return (k / snr).clamp(max=1)  # min(SNR, k) / SNR, finite at SNR = 0 and at infinity
    clipped = snr.clamp(max=k)
    return clipped / (snr + 1) if parameterization == "v" else clipped


def diffusion_loss(
    net: nn.Module,
    x0: torch.Tensor,
    cond: Cond,
    gammas: torch.Tensor,
    cfg: NoiseConfig,
    rng: PerSampleNoise,
) -> torch.Tensor:
    """SR3's objective: E ||f(cond, y_t, gamma) - target||_p with continuous gamma (Saharia et al. Eq. 6).

    Algorithm (SR3 Alg. 1): draw sqrt(gamma) continuously between neighbouring steps (of those up to
    `cfg.sigma_max`), noise x0 to y = sqrt(gamma) x0 + sqrt(1-gamma) eps, predict the target, take the L1 or
    L2 distance (per sample weighted by `min_snr_weight` with `cfg.min_snr` > 0).
    """
    level = sample_sqrt_gamma(capped_gammas(gammas, cfg.sigma_max), rng)
    sqrt_g = level.to(device=x0.device, dtype=torch.float32)
    eps = rng.randn(x0.shape[1:]).to(x0.device)  # one generator per sample (on the CPU: the same on every device)
    g = _bcast(sqrt_g, x0)
    y = g * x0 + (1 - g**2).sqrt() * eps
    out = net_output(net, y, sqrt_g, cond).float()
    target = training_target(x0, eps, g, cfg.parameterization)
    diff = out - target
    per_value = diff.abs() if cfg.loss == "l1" else diff.pow(2)
    if cfg.min_snr <= 0:
        return per_value.mean()
    weight = min_snr_weight(level, cfg.parameterization, cfg.min_snr).to(per_value)
    return (per_value.flatten(1).mean(1) * weight).mean()


def regression_loss(net: nn.Module, x0: torch.Tensor, cond: Cond, cfg: NoiseConfig) -> torch.Tensor:
    """The regression baseline's objective: the same network at level sqrt(gamma) = 0 with an all-zero noisy
    image (no information), predicting x0 from the condition alone; L1 or L2 like the diffusion loss."""
    y = torch.zeros_like(x0)
    out = net_output(net, y, x0.new_zeros(x0.shape[0], dtype=torch.float32), cond).float()
    diff = out - x0
    return diff.abs().mean() if cfg.loss == "l1" else diff.pow(2).mean()


def training_loss(
    net: nn.Module, x0: torch.Tensor, cond: Cond, gammas: torch.Tensor, cfg: NoiseConfig, rng: PerSampleNoise
) -> torch.Tensor:
    """The loss a run trains on: `regression_loss` for regression models, `diffusion_loss` otherwise."""
    return regression_loss(net, x0, cond, cfg) if cfg.regression else diffusion_loss(net, x0, cond, gammas, cfg, rng)
