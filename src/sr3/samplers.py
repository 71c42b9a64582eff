"""Samplers: stateless functions of (denoiser, x, sigmas, cond, noise), chosen by name.

Each walks a descending sigma grid in variance-exploding form (x = y_0 + sigma * eps). A grid that
ends above 0 stops there and returns the partially denoised x (CDM's truncated conditioning
augmentation); a grid ending in 0 returns the clean sample. Randomness comes only from `noise`
(`sr3.noise.PerSampleNoise`), so a seed fixes an image whatever the batch size.

Each sampler is registered with its own facts (network evaluations per step count, its options), and
the module imports no torch, so the command line can list the samplers without loading it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sr3.errors import SR3Error

if TYPE_CHECKING:
    import torch

    from sr3.config import SamplerConfig
    from sr3.diffusion import Cond

DenoiserFn = Callable[["torch.Tensor", "torch.Tensor", "Cond"], "torch.Tensor"]
Callback = Callable[[int], None] | None


def _steps(sigmas) -> list[tuple[float, float]]:
    values = [float(s) for s in sigmas]
    return list(zip(values[:-1], values[1:]))


def _eval(denoiser: DenoiserFn, x: torch.Tensor, sigma: float, cond: Cond) -> torch.Tensor:
    return denoiser(x, x.new_full((x.shape[0],), sigma).float(), cond)


def ddim(denoiser, x, sigmas, cond, noise, eta: float = 0.0, callback: Callback = None):
    """DDIM (Song et al. 2021). eta=0 is deterministic; eta=1 is the DDPM ancestral step.

    With sigma_up^2 = eta^2 s'^2 (s^2 - s'^2) / s^2 this is exactly DDPM's posterior
    q(y_{t-1} | y_t, y_0_hat) written in variance-exploding coordinates.
    """
    for i, (s, s_next) in enumerate(_steps(sigmas)):
        x0 = _eval(denoiser, x, s, cond)
        if s_next == 0:
            x = x0
        else:
            sigma_up = eta * math.sqrt(s_next**2 * (s**2 - s_next**2) / s**2)
            sigma_down = math.sqrt(s_next**2 - sigma_up**2)
            x = x0 + sigma_down / s * (x - x0)
            if sigma_up > 0:
                x = x + sigma_up * noise(x)
        if callback:
            callback(i)
    return x


def ddpm(denoiser, x, sigmas, cond, noise, callback: Callback = None):
    """SR3's sampler: ancestral DDPM (Ho et al. 2020, SR3 Alg. 2) with the posterior variance."""
    return ddim(denoiser, x, sigmas, cond, noise, eta=1.0, callback=callback)


def euler(denoiser, x, sigmas, cond, noise, callback: Callback = None):
    """First-order solver of the probability-flow ODE dx/dsigma = (x - D(x)) / sigma."""
    for i, (s, s_next) in enumerate(_steps(sigmas)):
        d = (x - _eval(denoiser, x, s, cond)) / s
        x = x + (s_next - s) * d
        if callback:
            callback(i)
    return x


def heun(denoiser, x, sigmas, cond, noise, callback: Callback = None):
    """EDM's second-order Heun solver (Karras et al. 2022, Alg. 1, deterministic); Euler on the step to 0."""
    for i, (s, s_next) in enumerate(_steps(sigmas)):
        d = (x - _eval(denoiser, x, s, cond)) / s
        x_euler = x + (s_next - s) * d
        if s_next == 0:
            x = x_euler
        else:
            d_next = (x_euler - _eval(denoiser, x_euler, s_next, cond)) / s_next
            x = x + (s_next - s) * (d + d_next) / 2
        if callback:
            callback(i)
    return x


def dpmpp_2m(denoiser, x, sigmas, cond, noise, callback: Callback = None):
    """DPM-Solver++(2M) (Lu et al. 2022), multistep data-prediction solver in lambda = -log sigma.

    x' = (s'/s) x - expm1(-h) D_eff with D_eff = (1 + 1/2r) D_i - (1/2r) D_{i-1}, r = h_{i-1} / h_i;
    first order on the first step and on the final step to sigma = 0.
    """
    x0_prev, h_prev = None, None
    for i, (s, s_next) in enumerate(_steps(sigmas)):
        x0 = _eval(denoiser, x, s, cond)
        if s_next == 0:
            x = x0
        else:
            h = math.log(s / s_next)
            d = x0
            if x0_prev is not None:
                r = h_prev / h
                d = (1 + 1 / (2 * r)) * x0 - (1 / (2 * r)) * x0_prev
            x = (s_next / s) * x - math.expm1(-h) * d
            x0_prev, h_prev = x0, h
        if callback:
            callback(i)
    return x


def regression(denoiser, x, sigmas, cond, noise, callback: Callback = None):
    """A regression model's one evaluation (SR3's reference point): at infinite noise the network sees only the
    condition (an all-zero noisy image at level 0) and predicts the image; the grid and noise go unused."""
    x = denoiser(x.new_zeros(x.shape), x.new_full((x.shape[0],), math.inf).float(), cond)
    if callback:
        callback(0)
    return x


@dataclass(frozen=True)
class Sampler:
    """A sampler and its facts: NFE of a step count and back, its `SamplerConfig` options, which models it fits."""

    fn: Callable[..., object]
    nfe: Callable[[int], int] = lambda steps: steps
    steps_for_nfe: Callable[[int], int] = lambda nfe: nfe
    options: tuple[str, ...] = ()
    regression: bool = False  # for regression models (noise.regression), and only for them
    fixed_steps: int = 0  # > 0: the one step count it takes, whatever is asked


SAMPLERS: dict[str, Sampler] = {
    "ddpm": Sampler(ddpm),
    "ddim": Sampler(ddim, options=("eta",)),
    "euler": Sampler(euler),
    # Heun evaluates twice per step except on the final step to 0, so it cannot spend an even NFE
    "heun": Sampler(heun, nfe=lambda steps: 2 * steps - 1, steps_for_nfe=lambda nfe: (nfe + 1) // 2),
    "dpmpp_2m": Sampler(dpmpp_2m),
    "regression": Sampler(regression, nfe=lambda steps: 1, steps_for_nfe=lambda nfe: 1, regression=True, fixed_steps=1),
}


def get_sampler(name: str) -> Sampler:
    """The sampler registered under `name`."""
    if name not in SAMPLERS:
        raise SR3Error(f"unknown sampler '{name}'; choose from: {', '.join(SAMPLERS)}")
    return SAMPLERS[name]


def check_fits(name: str, regression: bool) -> Sampler:
    """The sampler `name`, if it samples this kind of model (regression or diffusion), else an SR3Error."""
    sampler = get_sampler(name)
    if sampler.regression != regression:
        kind = "regression" if regression else "diffusion"
        raise SR3Error(f"sampler '{name}' does not sample a {kind} model")
    return sampler


def network_evaluations(name: str, steps: int) -> int:
    """NFE of sampler `name` over `steps` grid intervals."""
    return get_sampler(name).nfe(steps)


def steps_for_nfe(name: str, nfe: int) -> int:
    """Grid steps spending `nfe` network evaluations; check the result with `network_evaluations`, since some
    samplers (Heun) cannot spend every count."""
    return get_sampler(name).steps_for_nfe(nfe)


def parse_sampler_spec(spec: str) -> tuple[str, int]:
    """(name, steps) of a 'SAMPLER:STEPS' string such as 'ddpm:1000'."""
    name, _, steps = spec.partition(":")
    if name not in SAMPLERS or not steps.isdigit() or int(steps) < 1:
        raise SR3Error(f"a sampler run must be SAMPLER:STEPS, e.g. ddpm:1000; got {spec}")
    return name, int(steps)


def run_sampler(cfg: SamplerConfig, denoiser, x, sigmas, cond, noise, callback: Callback = None):
    """Run the sampler `cfg.name` with the options it takes from `cfg` (DDIM's eta)."""
    sampler = get_sampler(cfg.name)
    options = {name: getattr(cfg, name) for name in sampler.options}
    return sampler.fn(denoiser, x, sigmas, cond, noise, callback=callback, **options)
