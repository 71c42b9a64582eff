"""Noise schedules and the sigma grids samplers walk.

Notation (SR3, Saharia et al. 2021, arXiv 2104.07636):
    alpha_t = 1 - beta_t               per-step signal keep
    gamma_t = prod_{i<=t} alpha_i      DDPM's alpha-bar; y_t = sqrt(gamma) y_0 + sqrt(1 - gamma) eps
    sigma   = sqrt((1 - gamma) / gamma) the same noise level in variance-exploding form, x = y_t / sqrt(gamma)

Samplers work in sigma (x = y_0 + sigma * eps, as in Karras et al. 2022); the network sees sqrt(gamma).
"""

from __future__ import annotations

import math

import torch

from sr3.config import NoiseConfig, SamplerConfig
from sr3.errors import SR3Error
from sr3.noise import PerSampleNoise


def linear_gammas(timesteps: int, beta_start: float, beta_end: float) -> torch.Tensor:
    """gamma_1..gamma_T of a linear beta schedule (SR3 trains with T=2000, beta 1e-6 -> 1e-2)."""
    betas = torch.linspace(beta_start, beta_end, timesteps, dtype=torch.float64)
    return torch.cumprod(1.0 - betas, dim=0)


def cosine_gammas(timesteps: int, offset: float = 0.008) -> torch.Tensor:
    """gamma_1..gamma_T of the cosine schedule (Nichol & Dhariwal 2021), betas capped at 0.999."""
    t = torch.arange(timesteps + 1, dtype=torch.float64) / timesteps
    f = torch.cos((t + offset) / (1 + offset) * math.pi / 2) ** 2
    betas = (1 - f[1:] / f[:-1]).clamp(max=0.999)
    return torch.cumprod(1.0 - betas, dim=0)


def training_gammas(cfg: NoiseConfig) -> torch.Tensor:
    """The training schedule's gamma_1..gamma_T."""
    if cfg.schedule == "linear":
        return linear_gammas(cfg.timesteps, cfg.beta_start, cfg.beta_end)
    return cosine_gammas(cfg.timesteps)


def gamma_to_sigma(gamma: torch.Tensor) -> torch.Tensor:
    """sigma = sqrt((1 - gamma) / gamma)."""
    return ((1 - gamma) / gamma).sqrt()


def sigma_to_gamma(sigma: torch.Tensor) -> torch.Tensor:
    """gamma = 1 / (1 + sigma^2)."""
    return 1 / (1 + sigma**2)


def sample_sqrt_gamma(gammas: torch.Tensor, rng: PerSampleNoise) -> torch.Tensor:
    """Continuous noise level per sample: t ~ U{1..T}, then sqrt(gamma) ~ U[sqrt(gamma_t), sqrt(gamma_{t-1})].

    SR3 (Sec. 2.4) draws gamma itself in that interval; like WaveGrad and the common SR3 reproduction we
    draw sqrt(gamma). Either way, conditioning on a continuous level is what lets one model be sampled
    with any schedule and number of steps. gamma_0 = 1. One level per generator of `rng`.
    """
    sqrt_g = torch.cat([torch.ones(1, dtype=gammas.dtype), gammas.sqrt()])
    t = rng.randint(1, len(gammas) + 1).cpu()
    u = rng.rand(gammas.dtype).cpu()
    return sqrt_g[t] + u * (sqrt_g[t - 1] - sqrt_g[t])


def capped_gammas(gammas: torch.Tensor, sigma_max: float) -> torch.Tensor:
    """gamma_1..gamma_k, k the last step whose sigma is at most `sigma_max` (0: the whole schedule).

    The residual of a good prediction is small, so a refiner trains at low noise levels only (IR-SDE, SRDiff);
    `sample_sqrt_gamma` on these steps still draws continuously between them, up to sigma_k.
    """
    if sigma_max <= 0:
        return gammas
    sigmas = gamma_to_sigma(gammas)
    if sigma_max < float(sigmas[0]):
        raise SR3Error(f"noise.sigma_max {sigma_max} is below the schedule's first step (sigma {float(sigmas[0]):.3g})")
    return gammas[: int((sigmas <= sigma_max).sum())]  # sigma grows with t: the steps at most sigma_max lead


def level_gamma(level: torch.Tensor, gammas: torch.Tensor) -> torch.Tensor:
    """gamma at the continuous time t = level * T of a training schedule (log-linear between steps; gamma(0) = 1)."""
    log_g = torch.cat([gammas.new_zeros(1), gammas.log()])
    pos = level.to(gammas.device, torch.float64).clamp(0, 1) * len(gammas)
    lo = pos.floor().long().clamp(max=len(gammas) - 1)
    frac = pos - lo
    return (log_g[lo] * (1 - frac) + log_g[lo + 1] * frac).exp()


def gamma_level(log_gamma: float, gammas: torch.Tensor) -> float | None:
    """The level at which a training schedule reaches log(gamma) = `log_gamma`, the inverse of `level_gamma`
    (log-linear between steps); None when the schedule never gets that noisy."""
    log_g = torch.cat([gammas.new_zeros(1), gammas.log()]).to(torch.float64)
    if log_gamma < float(log_g[-1]):
        return None
    hi = int(torch.searchsorted(-log_g, torch.tensor([-log_gamma], dtype=torch.float64))[0])
    if hi == 0:
        return 0.0
    lo = hi - 1
    frac = (log_gamma - float(log_g[lo])) / (float(log_g[hi]) - float(log_g[lo]))
    return (lo + frac) / len(gammas)


def equivalent_level(level: float, gammas: torch.Tensor, other: torch.Tensor) -> float:
    """The level of schedule `other` whose gamma is that of `gammas` at `level` (log-linear between steps).

    Two stages trained on different schedules name the same noise by different levels; a hand-over
    between them (CDM's truncated augmentation) must meet at the same gamma, not the same level.
    """
    found = gamma_level(float(level_gamma(torch.tensor([level], dtype=torch.float64), gammas)[0].log()), other)
    if found is None:
        raise SR3Error(f"level {level} is noisier than the other schedule ever gets")
    return found


def karras_sigmas(steps: int, sigma_min: float, sigma_max: float, rho: float = 7.0) -> torch.Tensor:
    """Karras et al. (2022) grid: uniform in sigma^(1/rho) from sigma_max down to sigma_min."""
    ramp = torch.linspace(0, 1, steps, dtype=torch.float64)
    inv_max, inv_min = sigma_max ** (1 / rho), sigma_min ** (1 / rho)
    return (inv_max + ramp * (inv_min - inv_max)) ** rho


def _spaced(gammas: torch.Tensor, steps: int) -> torch.Tensor:
    """`steps` noise levels of a discrete schedule, evenly spaced in t from T down to 1 (trailing spacing)."""
    if steps > len(gammas):
        raise SR3Error(f"the spaced schedule has at most {len(gammas)} steps (the training T); got {steps}")
    t = torch.linspace(len(gammas), 1, steps, dtype=torch.float64).round().long() - 1
    return gamma_to_sigma(gammas[t])


def sampling_sigmas(sampler: SamplerConfig, noise: NoiseConfig, stop_level: float = 0.0) -> torch.Tensor:
    """Descending sigmas for `sampler.steps` network evaluations, ending in 0.

    The range always matches the training schedule's (sigma at t=T down to t=1), so the first step
    starts from what the model saw as pure noise, unless `sampler.sigma_max` > 0 starts it lower (a
    refinement of the prediction). An explicit `sampler.sigmas` list wins.
    `stop_level` s > 0 truncates the grid: `steps` intervals end at the level s (a fraction of T) instead
    of 0, and a sampler then returns the partially denoised sample there (CDM's truncated augmentation).
    """
    if not 0 <= stop_level < 1:
        raise SR3Error(f"the stopping level must be in [0, 1); got {stop_level}")
    if sampler.steps < 1:
        raise SR3Error(f"sampler.steps must be at least 1; got {sampler.steps}")
    gammas = training_gammas(noise)
    if stop_level > 0:
        if sampler.sigmas:
            raise SR3Error("an explicit sampler.sigmas grid cannot be truncated; use a karras or spaced schedule")
        sigma_stop = float(gamma_to_sigma(level_gamma(torch.tensor([stop_level]), gammas))[0])
        if sampler.schedule == "karras":
            return karras_sigmas(sampler.steps + 1, sigma_min=sigma_stop, sigma_max=float(gamma_to_sigma(gammas[-1])))
        levels = torch.linspace(1.0, stop_level, sampler.steps + 1, dtype=torch.float64)
        return gamma_to_sigma(level_gamma(levels, gammas))
    if sampler.sigmas:
        if sampler.sigma_max:
            raise SR3Error("an explicit sampler.sigmas grid starts where it says; leave sampler.sigma_max at 0")
        sig = torch.tensor(sampler.sigmas, dtype=torch.float64)
        if (sig <= 0).any() or (sig[1:] >= sig[:-1]).any():
            raise SR3Error("sampler.sigmas must be positive and strictly decreasing")
        return torch.cat([sig, sig.new_zeros(1)])
    sig_all = gamma_to_sigma(gammas)
    if sampler.sigma_max:  # a refinement: the training schedule's steps up to that sigma
        if sampler.sigma_max <= sig_all[0]:
            raise SR3Error(f"sampler.sigma_max {sampler.sigma_max} is below the schedule's least noise ({float(sig_all[0]):.3g})")
        gammas, sig_all = gammas[sig_all <= sampler.sigma_max], sig_all[sig_all <= sampler.sigma_max]
    if sampler.schedule == "karras":
        top = sampler.sigma_max or float(sig_all[-1])
        sig = karras_sigmas(sampler.steps, sigma_min=float(sig_all[0]), sigma_max=top)
    else:
        sig = _spaced(gammas, sampler.steps)
    return torch.cat([sig, sig.new_zeros(1)])
