"""Tests for sr3.samplers against a denoiser known in closed form.

For Gaussian data y_0 ~ N(mu, s^2) per pixel and x = y_0 + sigma * eps, the exact x0 estimate is
D(x, sigma) = mu + s^2 / (s^2 + sigma^2) (x - mu), and the probability-flow ODE has the exact solution
x(sigma) = mu + sqrt(s^2 + sigma^2) / sqrt(s^2 + sigma_max^2) (x(sigma_max) - mu). Every sampler must
then turn pure noise into N(mu, s^2), and the deterministic ones must track the exact ODE solution
with their order of accuracy.
"""

import math

import pytest
import torch
from torch import nn

from sr3.config import NoiseConfig, SamplerConfig
from sr3.diffusion import Cond, Denoiser
from sr3.errors import SR3Error
from sr3.noise import PerSampleNoise, initial_noise
from sr3.samplers import (
    SAMPLERS,
    get_sampler,
    network_evaluations,
    run_sampler,
)
from sr3.schedules import gamma_to_sigma, sampling_sigmas, training_gammas

MU, S = 0.3, 0.5
NOISE = NoiseConfig()  # SR3's linear schedule, T = 2000: sigma from ~151 down to 1e-3
DIFFUSION_SAMPLERS = sorted(name for name, s in SAMPLERS.items() if not s.regression)


def gaussian_denoiser(x: torch.Tensor, sigma: torch.Tensor, cond: Cond) -> torch.Tensor:
    s2 = sigma.double().reshape(-1, *([1] * (x.ndim - 1))) ** 2
    return (MU + S**2 / (S**2 + s2) * (x - MU)).to(x.dtype)


def exact_ode(x_start: torch.Tensor, sigma_start: float, sigma_end: float) -> torch.Tensor:
    return MU + math.sqrt(S**2 + sigma_end**2) / math.sqrt(S**2 + sigma_start**2) * (x_start - MU)


def grid(steps: int, schedule: str = "karras") -> torch.Tensor:
    return sampling_sigmas(SamplerConfig(steps=steps, schedule=schedule), NOISE)


def sample(name: str, steps: int, schedule: str = "karras", eta: float = 0.0, seeds=(0, 1), size: int = 128):
    sigmas = grid(steps, schedule)
    noise = PerSampleNoise(seeds)
    x = initial_noise(noise, (len(seeds), 1, size, size), float(sigmas[0])).double()
    return run_sampler(SamplerConfig(name=name, eta=eta), gaussian_denoiser, x, sigmas, Cond(), noise)


# --- every sampler lands on the data distribution -------------------------------------------------------------

# (name, eta, steps, tolerance on the std). Samples: 2 x 128 x 128 = 32,768 pixels, so the standard errors
# are 0.003 on the mean and 0.002 on the std; the rest of each std tolerance is the discretisation bias
# (first order: ~1.5% at these step counts; the ancestral samplers lose ~1.4% of the std at 500 steps).
CASES = [
    ("ddpm", 0.0, 500, 0.015),
    ("ddim", 0.0, 200, 0.012),
    ("ddim", 1.0, 500, 0.015),
    ("euler", 0.0, 200, 0.012),
    ("heun", 0.0, 50, 0.008),
    ("dpmpp_2m", 0.0, 50, 0.008),
]


def test_cases_cover_every_diffusion_sampler():
    assert {name for name, *_ in CASES} == set(DIFFUSION_SAMPLERS)


@pytest.mark.parametrize("name,eta,steps,tol", CASES, ids=["ddpm", "ddim-eta0", "ddim-eta1", "euler", "heun", "dpmpp_2m"])
def test_sampler_turns_noise_into_the_data_distribution(name, eta, steps, tol):
    out = sample(name, steps, eta=eta)
    assert abs(out.mean().item() - MU) < 0.01
    assert abs(out.std().item() - S) < tol


@pytest.mark.parametrize("name,steps", [("ddpm", 300), ("euler", 300), ("heun", 50)])
def test_sampler_on_the_spaced_grid(name, steps):
    out = sample(name, steps, schedule="spaced")
    assert abs(out.mean().item() - MU) < 0.01
    assert abs(out.std().item() - S) < 0.015


def test_ddpm_std_converges_from_below_as_steps_grow():
    # with the exact posterior mean, ancestral sampling misses the x0 uncertainty of each step: fewer
    # steps, less variance. The deficit must shrink monotonically with the step count.
    stds = [sample("ddpm", steps, seeds=(3,), size=96).std().item() for steps in (20, 100, 500)]
    assert stds[0] < stds[1] < stds[2] < S + 0.01
    assert S - stds[2] < 0.015


def test_wrapped_eps_network_samples_the_data_distribution():
    # The same Gaussian, but as an eps-predicting network behind Denoiser, in float32 as at inference.
    class GaussianEps(nn.Module):
        def forward(self, y, sqrt_gamma, labels=None, aug_level=None):
            g = sqrt_gamma.double().reshape(-1, 1, 1, 1)
            sigma = (1 - g**2).sqrt() / g
            x0 = gaussian_denoiser(y.double() / g, sigma.flatten(), Cond())
            return ((y.double() - g * x0) / (1 - g**2).sqrt()).float()

    sigmas = grid(60)
    noise = PerSampleNoise([7, 8])
    x = initial_noise(noise, (2, 1, 96, 96), float(sigmas[0]))
    out = run_sampler(SamplerConfig(name="dpmpp_2m"), Denoiser(GaussianEps(), "eps"), x, sigmas, Cond(), noise)
    assert out.dtype == torch.float32
    assert abs(out.mean().item() - MU) < 0.01 and abs(out.std().item() - S) < 0.01


# --- deterministic samplers follow the exact ODE solution -----------------------------------------------------


def _ode_error(name: str, steps: int, schedule: str = "karras") -> float:
    """Relative error of the final sample against the exact ODE solution (D is affine, so one x suffices)."""
    sigmas = grid(steps, schedule)
    x_start = torch.full((1, 1, 1, 1), 2.0 * float(sigmas[0]), dtype=torch.float64)
    out = SAMPLERS[name].fn(gaussian_denoiser, x_start.clone(), sigmas, Cond(), None)
    exact = exact_ode(x_start, float(sigmas[0]), 0.0)
    return ((out - exact) / (exact - MU)).abs().item()


@pytest.mark.parametrize("name,order", [("euler", 1), ("ddim", 1), ("heun", 2), ("dpmpp_2m", 2)])
def test_deterministic_sampler_order_of_accuracy(name, order):
    e40, e80, e160 = (_ode_error(name, n) for n in (40, 80, 160))
    # halving the step size divides the error by 2^order
    for coarse, fine in ((e40, e80), (e80, e160)):
        assert 2**order * 0.85 < coarse / fine < 2**order * 1.25
    assert e160 < (0.025 if order == 1 else 1e-3)


IRREGULAR = torch.tensor([10.0, 6.0, 2.5, 2.0, 0.7, 0.3, 0.25], dtype=torch.float64)  # step ratios far from 1


def test_dpmpp_2m_extrapolates_a_denoiser_linear_in_log_sigma_to_the_midpoint():
    # DPM-Solver++ steps x' = (s'/s) x + (1 - s'/s) D_eff. Its 2M estimate D_eff extrapolates from the last two
    # evaluations by half a step in lambda = -log sigma, so for D = a + b lambda it must be D at the lambda
    # midpoint, sigma = sqrt(s s'), on every step after the first, whatever the step ratios.
    a, b = 0.2, 0.15
    lin = lambda x, sigma, cond: a - b * torch.log(sigma.double()).reshape(-1, 1, 1, 1).expand_as(x)  # noqa: E731
    x = torch.full((1, 1, 1, 1), 3.0, dtype=torch.float64)
    expected = x.clone()
    for i, (s, s_next) in enumerate(zip(IRREGULAR[:-1].tolist(), IRREGULAR[1:].tolist())):
        at = s if i == 0 else math.sqrt(s * s_next)
        expected = s_next / s * expected + (1 - s_next / s) * (a - b * math.log(at))
    out = SAMPLERS["dpmpp_2m"].fn(lin, x.clone(), IRREGULAR, Cond(), None)
    assert torch.allclose(out, expected, rtol=1e-12)
    assert not torch.allclose(SAMPLERS["ddim"].fn(lin, x.clone(), IRREGULAR, Cond(), None), expected, rtol=1e-3)


def test_heun_is_exact_for_a_velocity_linear_in_sigma():
    # D = x - sigma (c + e sigma) makes dx/dsigma = c + e sigma: the trapezoid rule is exact, Euler is not
    c, e = 0.5, 0.2
    quad = lambda x, sigma, cond: x - (sigma.double() * (c + e * sigma.double())).reshape(-1, 1, 1, 1)  # noqa: E731
    x = torch.full((1, 1, 1, 1), 1.5, dtype=torch.float64)
    s0, s_end = float(IRREGULAR[0]), float(IRREGULAR[-1])
    exact = x + c * (s_end - s0) + e / 2 * (s_end**2 - s0**2)
    assert torch.allclose(SAMPLERS["heun"].fn(quad, x.clone(), IRREGULAR, Cond(), None), exact, rtol=1e-12)
    euler = SAMPLERS["euler"].fn(quad, x.clone(), IRREGULAR, Cond(), None)
    assert (euler - exact).abs().item() > 1  # = e / 2 * sum of squared step sizes


def test_ddim_eta0_is_euler_in_sigma():
    # DDIM's deterministic update x0 + (s'/s)(x - x0) is exactly an Euler step of dx/dsigma = (x - D) / sigma
    sigmas = grid(12)
    x = initial_noise(PerSampleNoise([0]), (1, 1, 8, 8), float(sigmas[0])).double()
    a = SAMPLERS["ddim"].fn(gaussian_denoiser, x, sigmas, Cond(), None, eta=0.0)
    b = SAMPLERS["euler"].fn(gaussian_denoiser, x, sigmas, Cond(), None)
    assert torch.allclose(a, b, rtol=1e-12, atol=1e-12)


def test_second_order_beats_first_order_at_10_steps():
    # on the Karras grid; on SR3's t-spaced grid the last step (sigma ~0.35 -> 1e-3 at 10 steps) is so long
    # in log sigma that dpmpp_2m's extrapolation overshoots and Euler wins at 10 steps
    euler, heun, dpm = (_ode_error(name, 10) for name in ("euler", "heun", "dpmpp_2m"))
    assert dpm < euler / 1.5
    assert heun < euler


def test_deterministic_samplers_match_the_exact_solution_sample_by_sample():
    sigmas = grid(100)
    x = initial_noise(PerSampleNoise([11, 12]), (2, 1, 32, 32), float(sigmas[0])).double()
    exact = exact_ode(x, float(sigmas[0]), 0.0)
    for name in ("heun", "dpmpp_2m"):
        out = SAMPLERS[name].fn(gaussian_denoiser, x.clone(), sigmas, Cond(), None)
        assert ((out - exact).abs() / (exact - MU).abs().clamp(min=0.05)).max() < 2e-3


# --- DDPM is the SR3 / Ho et al. ancestral step ---------------------------------------------------------------


def _vp_denoiser(x, sigma, cond):
    """Some nonlinear denoiser; the step's formulas must hold for any x0 estimate."""
    return torch.tanh(0.7 * x) + 0.1 * sigma.double().reshape(-1, 1, 1, 1)


@pytest.mark.parametrize("t,t_prev", [(1000, 999), (1500, 1400), (120, 1)])
def test_ddpm_step_is_the_posterior_of_sr3(t, t_prev):
    gammas = training_gammas(NOISE)
    g, g_prev = gammas[t - 1].item(), gammas[t_prev - 1].item()
    alpha = g / g_prev  # the (possibly skipped) step's alpha_t; beta_t = 1 - alpha_t
    beta = 1 - alpha
    s, s_prev = math.sqrt((1 - g) / g), math.sqrt((1 - g_prev) / g_prev)
    sigmas = torch.tensor([s, s_prev], dtype=torch.float64)  # one step, not ending in 0

    y_t = torch.linspace(-2, 2, 9, dtype=torch.float64).reshape(1, 1, 3, 3)  # variance-preserving input
    x = y_t / math.sqrt(g)
    x0 = _vp_denoiser(x, torch.tensor([s]), Cond())
    eps = (y_t - math.sqrt(g) * x0) / math.sqrt(1 - g)

    # SR3 Alg. 2: y_{t-1} = (y_t - (1 - alpha_t) / sqrt(1 - gamma_t) eps) / sqrt(alpha_t) + sqrt(var) z
    mean = (y_t - beta / math.sqrt(1 - g) * eps) / math.sqrt(alpha)
    # ... the same as the posterior mean of q(y_{t-1} | y_t, y_0) (Ho et al. Eq. 7)
    posterior = math.sqrt(g_prev) * beta / (1 - g) * x0 + math.sqrt(alpha) * (1 - g_prev) / (1 - g) * y_t
    assert torch.allclose(mean, posterior, rtol=1e-10)
    var = (1 - g_prev) / (1 - g) * beta  # beta_tilde

    # noise is any callable giving z shaped like x: zeros give the mean, ones the standard deviation
    y_mean = math.sqrt(g_prev) * SAMPLERS["ddpm"].fn(_vp_denoiser, x.clone(), sigmas, Cond(), torch.zeros_like)
    y_one = math.sqrt(g_prev) * SAMPLERS["ddpm"].fn(_vp_denoiser, x.clone(), sigmas, Cond(), torch.ones_like)
    assert torch.allclose(y_mean, mean, rtol=1e-9, atol=1e-12)
    assert torch.allclose(y_one - y_mean, torch.full_like(y_mean, math.sqrt(var)), rtol=1e-9)

    # and with real noise, the spread around the mean has variance beta_tilde (36,864 draws: +-0.7%)
    tiles = (1, 1, 64, 64)
    draws = math.sqrt(g_prev) * SAMPLERS["ddpm"].fn(_vp_denoiser, x.repeat(tiles), sigmas, Cond(), PerSampleNoise([0]))
    spread = draws - mean.repeat(tiles)
    assert spread.var().item() == pytest.approx(var, rel=0.03)
    assert abs(spread.mean().item()) < 4 * math.sqrt(var / spread.numel())


def test_ddim_eta_interpolates_the_noise():
    sigmas = torch.tensor([2.0, 1.0], dtype=torch.float64)
    x = torch.ones(1, 1, 1, 1, dtype=torch.float64)
    ddim = lambda noise, eta: SAMPLERS["ddim"].fn(_vp_denoiser, x, sigmas, Cond(), noise, eta=eta).item()  # noqa: E731
    spread = [ddim(torch.ones_like, eta) - ddim(torch.zeros_like, eta) for eta in (0.0, 0.5, 1.0)]
    # sigma_up = eta * s' sqrt(s^2 - s'^2) / s = eta * sqrt(3) / 2
    assert spread == pytest.approx([0.0, math.sqrt(3) / 4, math.sqrt(3) / 2], rel=1e-12)


# --- truncated grids ------------------------------------------------------------------------------------------


def test_grid_not_ending_in_zero_returns_the_noisy_sample():
    full = grid(100)
    cut = full[full >= 0.5]  # stop at sigma ~0.5 (CDM's truncated conditioning augmentation)
    end = float(cut[-1])
    assert 0.5 <= end < 0.6
    noise = PerSampleNoise([0, 1])
    x = initial_noise(noise, (2, 1, 128, 128), float(cut[0])).double()
    for name in ("euler", "dpmpp_2m", "ddpm"):
        out = run_sampler(SamplerConfig(name=name), gaussian_denoiser, x.clone(), cut, Cond(), PerSampleNoise([0, 1]))
        # x ~ N(mu, s^2 + sigma^2) (std 0.73), not N(mu, s^2); ancestral steps lose a little variance
        assert abs(out.std().item() - math.sqrt(S**2 + end**2)) < (0.03 if name == "ddpm" else 0.015)
        if name != "ddpm":
            exact = exact_ode(x, float(cut[0]), end)
            assert ((out - exact).abs().max() / (exact - MU).abs().max()).item() < 0.02


def test_one_step_truncated_heun_evaluates_at_both_ends():
    calls = []

    def counting(x, sigma, cond):
        calls.append(float(sigma[0]))
        return gaussian_denoiser(x, sigma, cond)

    SAMPLERS["heun"].fn(counting, torch.zeros(1, 1, 2, 2), torch.tensor([3.0, 1.0]), Cond(), None)
    assert calls == [3.0, 1.0]


# --- seeds ----------------------------------------------------------------------------------------------------


def _ddpm_sample(seeds, steps: int = 8) -> torch.Tensor:
    sigmas = grid(steps)
    noise = PerSampleNoise(seeds)
    x = initial_noise(noise, (len(seeds), 2, 6, 6), float(sigmas[0]))
    return run_sampler(SamplerConfig(name="ddpm"), gaussian_denoiser, x, sigmas, Cond(), noise)


def test_same_seeds_same_samples():
    assert torch.equal(_ddpm_sample([4, 5]), _ddpm_sample([4, 5]))


def test_a_seed_fixes_a_sample_whatever_the_batch():
    batch = _ddpm_sample([10, 11, 12, 13])
    assert torch.equal(_ddpm_sample([10])[0], batch[0])
    assert torch.equal(_ddpm_sample([12])[0], batch[2])
    assert torch.equal(_ddpm_sample([13, 10])[1], batch[0])


def test_different_seeds_differ():
    batch = _ddpm_sample([10, 11, 12, 13])
    for i in range(4):
        for j in range(i + 1, 4):
            assert (batch[i] - batch[j]).abs().max() > 0.1


def test_per_sample_noise_draws_per_generator():
    noise = PerSampleNoise([0, 1, 0])
    z = noise(torch.empty(3, 2, 4, 4, dtype=torch.float64))
    assert z.shape == (3, 2, 4, 4) and z.dtype == torch.float64
    assert torch.equal(z[0], z[2]) and not torch.equal(z[0], z[1])
    assert torch.equal(z[0].float(), torch.randn(2, 4, 4, generator=torch.Generator().manual_seed(0)))
    assert not torch.equal(noise(z)[0], z[0])  # each call advances the generators


def test_initial_noise_is_unit_variance_in_vp_form():
    # y_T = sqrt(gamma) x ~ N(0, 1) as in training, i.e. x = sqrt(1 + sigma^2) z, not sigma z
    x = initial_noise(PerSampleNoise([0, 5]), (2, 1, 64, 64), 1.0)
    z = torch.stack([torch.randn(1, 64, 64, generator=torch.Generator().manual_seed(s)) for s in (0, 5)])
    assert torch.allclose(x, math.sqrt(2) * z, rtol=1e-6)
    assert x.std().item() == pytest.approx(math.sqrt(2), rel=0.03)


# --- choosing by name -----------------------------------------------------------------------------------------


def test_unknown_sampler_lists_the_names():
    with pytest.raises(SR3Error) as err:
        get_sampler("nope")
    for name in ("ddpm", "ddim", "euler", "heun", "dpmpp_2m"):
        assert name in str(err.value)
    assert "nope" in str(err.value)
    with pytest.raises(SR3Error):
        run_sampler(SamplerConfig(name="nope"), gaussian_denoiser, torch.zeros(1, 1, 1, 1), grid(2), Cond(), None)


def test_get_sampler_returns_the_registered_entry():
    for name, entry in SAMPLERS.items():
        assert get_sampler(name) is entry


@pytest.mark.parametrize("name", DIFFUSION_SAMPLERS)
def test_network_evaluations_match_the_calls_made(name):
    calls, steps_seen = [], []

    def counting(x, sigma, cond):
        calls.append(1)
        return gaussian_denoiser(x, sigma, cond)

    sigmas = grid(10)
    x = torch.zeros(1, 1, 2, 2)
    run_sampler(SamplerConfig(name=name), counting, x, sigmas, Cond(), PerSampleNoise([0]), callback=steps_seen.append)
    assert len(calls) == network_evaluations(name, 10)
    assert steps_seen == list(range(10))  # one callback per grid interval


def test_regression_is_one_evaluation_of_the_condition_alone():
    seen = []

    def recording(x, sigma, cond):
        seen.append((x.clone(), sigma.clone()))
        return x + 0.5

    x = torch.randn(2, 1, 4, 4)
    steps = []
    out = run_sampler(SamplerConfig(name="regression"), recording, x, grid(10), Cond(), None, callback=steps.append)
    assert len(seen) == 1 and steps == [0] and network_evaluations("regression", 10) == 1
    assert torch.equal(seen[0][0], torch.zeros_like(x)) and torch.isinf(seen[0][1]).all()  # no noisy image
    assert torch.equal(out, torch.full_like(x, 0.5))


def test_network_evaluations_of_heun():
    assert network_evaluations("heun", 10) == 19
    assert network_evaluations("dpmpp_2m", 10) == 10 and network_evaluations("ddpm", 50) == 50


def test_run_sampler_passes_eta_to_ddim_only():
    a = _run_with("ddim", eta=1.0)
    assert torch.equal(a, _run_with("ddpm", eta=0.0))  # DDIM with eta 1 is DDPM; ddpm ignores eta
    assert not torch.equal(a, _run_with("ddim", eta=0.0))


def _run_with(name, eta):
    sigmas = grid(6)
    noise = PerSampleNoise([3])
    x = initial_noise(noise, (1, 1, 4, 4), float(sigmas[0]))
    return run_sampler(SamplerConfig(name=name, eta=eta), gaussian_denoiser, x, sigmas, Cond(), noise)


def test_sampler_grid_starts_where_training_noise_ends():
    # sanity of the fixture: the samplers above start at SR3's sigma(t = T) ~ 151
    assert float(grid(10)[0]) == pytest.approx(float(gamma_to_sigma(training_gammas(NOISE))[-1]), rel=1e-12)
    assert 140 < float(grid(10)[0]) < 160


def test_truncated_generation_returns_the_forward_process_at_the_level():
    """A base model stopped at level s gives z_s = sqrt(g_s) x0 + sqrt(1 - g_s) eps: the CDM truncated condition."""
    from sr3.config import load_config
    from sr3.schedules import level_gamma

    from conftest import untrained_pipeline

    cfg = load_config("tiny", ["model.in_channels=3", "data.mode=classes", "model.num_classes=2", "sampler.steps=3"])
    pipe = untrained_pipeline(cfg)
    x0_seen = []
    inner = pipe.denoiser

    def recording(x, sigma, cond):
        out = inner(x, sigma, cond)
        x0_seen.append((x, sigma, out))
        return out

    pipe.denoiser = recording
    ddim = pipe.sampler_config(sampler="ddim")
    z = pipe.generate(2, [0, 1], ddim, labels=torch.tensor([0, 1]), stop_level=0.25)
    assert len(x0_seen) == 3  # `steps` evaluations, none at the stopping level itself
    g = float(level_gamma(torch.tensor([0.25]), training_gammas(cfg.noise))[0])
    x_last, sigma_last, x0_last = x0_seen[-1]
    s_end = math.sqrt((1 - g) / g)
    expected = (x0_last + s_end * (x_last - x0_last) / sigma_last[0]) * math.sqrt(g)  # DDIM's last step, in VP form
    assert torch.allclose(z, expected, atol=1e-5)
    assert z.shape == (2, 3, 32, 32) and z.abs().max() > 1  # noisy, unclipped
    assert pipe.generate(2, [0, 1], ddim, labels=torch.tensor([0, 1])).abs().max() <= 1


def test_nfe_to_steps_and_sampler_specs():
    from sr3.samplers import parse_sampler_spec, steps_for_nfe

    for name in DIFFUSION_SAMPLERS:
        for nfe in (1, 3, 7):
            assert network_evaluations(name, steps_for_nfe(name, nfe)) == nfe
    assert network_evaluations("heun", steps_for_nfe("heun", 4)) != 4  # Heun cannot spend an even count
    assert parse_sampler_spec("ddpm:1000") == ("ddpm", 1000)
    for bad in ("ddpm", "nope:10", "ddpm:0", "ddpm:x"):
        with pytest.raises(SR3Error, match="SAMPLER:STEPS"):
            parse_sampler_spec(bad)
