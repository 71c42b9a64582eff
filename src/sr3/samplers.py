"""Samplers: stateless functions of (denoiser, x, sigmas, cond, noise), chosen by name.

Each walks a descending sigma grid in variance-exploding form (x = y_0 + sigma * eps). A grid that
ends above 0 stops there and returns the partially denoised x (CDM's truncated conditioning
augmentation); a grid ending in 0 returns the clean sample. Randomness comes only from `noise`,
which draws from one generator per sample, so a seed fixes an image whatever the batch size.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch

from sr3.diffusion import Cond
from sr3.errors import SR3Error

DenoiserFn = Callable[[torch.Tensor, torch.Tensor, Cond], torch.Tensor]
Callback = Callable[[int], None] | None


class PerSampleNoise:
    """Standard normal noise with one torch.Generator per sample (cf. EDM's StackedRandomGenerator)."""

    def __init__(self, seeds: Sequence[int], device: torch.device | str = "cpu"):
        self.device = torch.device(device)
        self.generators = [torch.Generator(self.device).manual_seed(int(s)) for s in seeds]

    def __call__(self, like: torch.Tensor) -> torch.Tensor:
        shape = like.shape[1:]
        return torch.stack(
            [torch.randn(shape, generator=g, device=self.device, dtype=torch.float32) for g in self.generators]
        ).to(like.dtype)


def initial_noise(noise: PerSampleNoise, shape: Sequence[int], sigma_max: float) -> torch.Tensor:
    """Pure noise at the top of the grid: y_T ~ N(0, 1) in variance-preserving form, i.e. x = sqrt(1 + sigma^2) z."""
    z = noise(torch.empty(shape, device=noise.device))
    return z * math.sqrt(1 + sigma_max**2)


def _steps(sigmas: torch.Tensor) -> list[tuple[float, float]]:
    values = [float(s) for s in sigmas]
    return list(zip(values[:-1], values[1:]))


def _eval(denoiser: DenoiserFn, x: torch.Tensor, sigma: float, cond: Cond) -> torch.Tensor:
    return denoiser(x, x.new_full((x.shape[0],), sigma, dtype=torch.float32), cond)


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


SAMPLERS: dict[str, Callable[..., torch.Tensor]] = {
    "ddpm": ddpm,
    "ddim": ddim,
    "euler": euler,
    "heun": heun,
    "dpmpp_2m": dpmpp_2m,
}


def get_sampler(name: str) -> Callable[..., torch.Tensor]:
    """The sampler function registered under `name`."""
    if name not in SAMPLERS:
        raise SR3Error(f"unknown sampler '{name}'; choose from: {', '.join(SAMPLERS)}")
    return SAMPLERS[name]


def network_evaluations(name: str, steps: int) -> int:
    """NFE of a sampler over `steps` grid intervals (Heun evaluates twice except on the final step to 0)."""
    return 2 * steps - 1 if name == "heun" else steps


def steps_for_nfe(name: str, nfe: int) -> int:
    """Grid steps spending `nfe` network evaluations (Heun's last step to 0 costs one); check the result with
    `network_evaluations`, since Heun cannot spend an even count."""
    return (nfe + 1) // 2 if name == "heun" else nfe


def parse_sampler_spec(spec: str) -> tuple[str, int]:
    """(name, steps) of a 'SAMPLER:STEPS' string such as 'ddpm:1000'."""
    name, _, steps = spec.partition(":")
    if name not in SAMPLERS or not steps.isdigit() or int(steps) < 1:
        raise SR3Error(f"a sampler run must be SAMPLER:STEPS, e.g. ddpm:1000; got {spec}")
    return name, int(steps)


def run_sampler(name: str, denoiser, x, sigmas, cond, noise, eta: float = 0.0, callback: Callback = None):
    """Run the sampler `name` (eta applies to DDIM only)."""
    fn = get_sampler(name)
    if name == "ddim":
        return fn(denoiser, x, sigmas, cond, noise, eta=eta, callback=callback)
    return fn(denoiser, x, sigmas, cond, noise, callback=callback)
