"""Tests for sr3.schedules: SR3's linear gammas, gamma <-> sigma, continuous noise levels, sampling grids."""

import math

import pytest
import torch

from sr3.config import NoiseConfig, SamplerConfig
from sr3.errors import SR3Error
from sr3.noise import PerSampleNoise
from sr3.schedules import (
    capped_gammas,
    cosine_gammas,
    gamma_to_sigma,
    karras_sigmas,
    level_gamma,
    linear_gammas,
    sample_sqrt_gamma,
    sampling_sigmas,
    sigma_to_gamma,
    training_gammas,
)

# --- training schedules ---------------------------------------------------------------------------------------


def _hand_gamma(t: int, timesteps: int = 2000, beta_start: float = 1e-6, beta_end: float = 1e-2) -> float:
    """gamma_t = prod_{i=1..t} (1 - beta_i) with beta_i linear from beta_start to beta_end, in plain floats."""
    step = (beta_end - beta_start) / (timesteps - 1)
    return math.exp(math.fsum(math.log1p(-(beta_start + i * step)) for i in range(t)))


@pytest.mark.parametrize("t", [1, 2, 500, 1000, 1999, 2000])
def test_linear_gammas_match_hand_cumprod(t):
    gammas = linear_gammas(2000, 1e-6, 1e-2)
    assert gammas.shape == (2000,) and gammas.dtype == torch.float64
    assert gammas[t - 1].item() == pytest.approx(_hand_gamma(t), rel=1e-11)


def test_linear_gammas_known_values():
    gammas = linear_gammas(2000, 1e-6, 1e-2)
    assert gammas[0].item() == 1 - 1e-6  # gamma_1 = alpha_1 = 1 - beta_start
    # log gamma_T = sum log(1 - beta) ~ -sum beta - sum beta^2 / 2 = -1000 (1e-6 + 1e-2) - 2000 (1e-2)^2 / 6
    assert gammas[-1].item() == pytest.approx(math.exp(-1000 * (1e-6 + 1e-2) - 2000e-4 / 6), rel=1e-3)
    assert (gammas[1:] < gammas[:-1]).all()


def test_cosine_gammas_follow_the_squared_cosine_and_cap_beta():
    gammas = cosine_gammas(1000)
    f = lambda t: math.cos((t / 1000 + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
    # away from the capped end, gamma_t = f(t) / f(0)
    for t in (1, 250, 500, 900):
        assert gammas[t - 1].item() == pytest.approx(f(t) / f(0), rel=1e-9)
    betas = 1 - gammas[1:] / gammas[:-1]
    assert betas.max().item() == pytest.approx(0.999, rel=1e-12)
    assert (gammas[1:] < gammas[:-1]).all() and gammas[0] < 1


def test_training_gammas_picks_the_schedule():
    lin = NoiseConfig(schedule="linear", timesteps=100, beta_start=1e-4, beta_end=2e-2)
    cos = NoiseConfig(schedule="cosine", timesteps=100)
    assert torch.equal(training_gammas(lin), linear_gammas(100, 1e-4, 2e-2))
    assert torch.equal(training_gammas(cos), cosine_gammas(100))


# --- gamma <-> sigma ------------------------------------------------------------------------------------------


def test_gamma_sigma_known_values():
    g = torch.tensor([0.5, 0.2, 0.8], dtype=torch.float64)
    assert torch.allclose(gamma_to_sigma(g), torch.tensor([1.0, 2.0, 0.5], dtype=torch.float64), rtol=1e-15)
    assert torch.allclose(sigma_to_gamma(torch.tensor([1.0, 2.0, 0.5], dtype=torch.float64)), g, rtol=1e-15)


def test_gamma_sigma_round_trip():
    g = torch.cat([torch.logspace(-6, 0, 50, dtype=torch.float64)[:-1], linear_gammas(2000, 1e-6, 1e-2)])
    assert torch.allclose(sigma_to_gamma(gamma_to_sigma(g)), g, rtol=1e-12, atol=0)
    s = torch.logspace(-3, 4, 50, dtype=torch.float64)  # SR3's sigmas run from 1e-3 to ~150
    assert torch.allclose(gamma_to_sigma(sigma_to_gamma(s)), s, rtol=1e-9, atol=0)


def test_sigma_is_the_variance_exploding_noise_level():
    # y = sqrt(g) y0 + sqrt(1 - g) eps  <=>  y / sqrt(g) = y0 + sigma eps
    g = torch.tensor(0.3, dtype=torch.float64)
    assert (gamma_to_sigma(g) * g.sqrt()).item() == pytest.approx(math.sqrt(0.7), rel=1e-14)


# --- SR3's continuous noise level -----------------------------------------------------------------------------


def test_sample_sqrt_gamma_is_uniform_over_steps_and_within_each_interval():
    gammas = torch.tensor([0.9, 0.6, 0.3, 0.1], dtype=torch.float64)
    n = 10_000
    draws = sample_sqrt_gamma(gammas, PerSampleNoise(range(n)))
    assert draws.shape == (n,) and draws.dtype == torch.float64
    edges = torch.cat([torch.ones(1, dtype=torch.float64), gammas.sqrt()])  # sqrt(gamma_0..gamma_T), descending
    assert draws.min() >= edges[-1] and draws.max() <= 1.0
    assert draws.min() < edges[-1] + 1e-3 and draws.max() > 1 - 1e-3  # the whole range is reached
    counts, positions = [], []
    for t in range(1, 5):
        lo, hi = edges[t], edges[t - 1]
        inside = draws[(draws >= lo) & (draws <= hi)]
        counts.append(len(inside))
        positions.append(((inside - lo) / (hi - lo)).mean().item())
    assert sum(counts) == n  # every draw falls in some interval [sqrt(gamma_t), sqrt(gamma_{t-1})]
    for c in counts:  # t ~ U{1..4}: 2,500 +- 43 each
        assert abs(c - n / 4) < 200
    for p in positions:  # uniform within the interval: mean position 0.5 +- 0.006
        assert abs(p - 0.5) < 0.025


def test_sample_sqrt_gamma_on_the_training_schedule():
    gammas = linear_gammas(2000, 1e-6, 1e-2)
    draws = sample_sqrt_gamma(gammas, PerSampleNoise(range(10_000, 20_000)))
    assert draws.min() >= gammas[-1].sqrt() and draws.max() <= 1
    # t uniform: the fraction of draws below sqrt(gamma_1000) is the fraction of t > 1000, i.e. 1/2
    assert abs((draws < gammas[999].sqrt()).double().mean().item() - 0.5) < 0.02


def test_sample_sqrt_gamma_is_seeded():
    gammas = linear_gammas(100, 1e-4, 2e-2)
    a = sample_sqrt_gamma(gammas, PerSampleNoise(range(64)))
    b = sample_sqrt_gamma(gammas, PerSampleNoise(range(64)))
    c = sample_sqrt_gamma(gammas, PerSampleNoise(range(1, 65)))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(a[1:], c[:-1])  # one generator per sample: a draw depends on its own seed only


def test_capped_gammas_keep_the_steps_up_to_sigma_max():
    gammas = training_gammas(NoiseConfig())
    sigmas = gamma_to_sigma(gammas)
    assert capped_gammas(gammas, 0.0) is gammas  # 0: the whole schedule
    assert torch.equal(capped_gammas(gammas, 1e9), gammas)
    kept = capped_gammas(gammas, 0.5)
    k = len(kept)
    assert 1 < k < len(gammas) and torch.equal(kept, gammas[:k])
    assert sigmas[k - 1] <= 0.5 < sigmas[k]  # the last step at most sigma_max, and no further
    assert len(capped_gammas(gammas, float(sigmas[k]))) == k + 1  # a cap exactly on a step keeps it
    assert len(capped_gammas(gammas, float(sigmas[0]))) == 1
    with pytest.raises(SR3Error, match="below the schedule's first step"):
        capped_gammas(gammas, float(sigmas[0]) * 0.99)


def test_capped_draws_stay_below_sigma_max_and_reach_it():
    gammas = training_gammas(NoiseConfig())
    kept = capped_gammas(gammas, 0.5)
    draws = sample_sqrt_gamma(kept, PerSampleNoise(range(4000)))
    sigmas = gamma_to_sigma(draws**2)
    top = float(gamma_to_sigma(kept[-1]))
    assert sigmas.max() <= top <= 0.5 and sigmas.max() > 0.98 * top
    # uncapped, most draws of this schedule are noisier than 0.5: the cap is what keeps them out
    full = sample_sqrt_gamma(gammas, PerSampleNoise(range(4000)))
    assert (gamma_to_sigma(full**2) > 0.5).double().mean() > 0.5


# --- sampling grids -------------------------------------------------------------------------------------------


def test_karras_sigmas_endpoints_spacing_and_order():
    sig = karras_sigmas(12, sigma_min=0.002, sigma_max=80.0, rho=7.0)
    assert sig.shape == (12,) and sig.dtype == torch.float64
    assert sig[0].item() == pytest.approx(80.0, rel=1e-12)
    assert sig[-1].item() == pytest.approx(0.002, rel=1e-12)
    assert (sig[1:] < sig[:-1]).all()
    diffs = (sig ** (1 / 7)).diff()  # uniform in sigma^(1/rho)
    assert torch.allclose(diffs, diffs[0].expand_as(diffs), rtol=1e-9)
    assert karras_sigmas(1, 0.002, 80.0).tolist() == pytest.approx([80.0])


@pytest.mark.parametrize("schedule", ["spaced", "karras"])
@pytest.mark.parametrize(
    "noise", [NoiseConfig(), NoiseConfig(schedule="cosine", timesteps=1000)], ids=["linear", "cosine"]
)
@pytest.mark.parametrize("steps", [1, 2, 10, 100])
def test_sampling_sigmas_shape_order_and_range(schedule, noise, steps):
    sig = sampling_sigmas(SamplerConfig(steps=steps, schedule=schedule), noise)
    train_sigmas = gamma_to_sigma(training_gammas(noise))
    assert sig.shape == (steps + 1,)
    assert sig[-1] == 0
    assert (sig[1:] < sig[:-1]).all()
    # the first step starts from the noise level the model was trained on as pure noise (t = T)
    assert sig[0].item() == pytest.approx(train_sigmas[-1].item(), rel=1e-12)
    if steps > 1:  # ... and the last nonzero level is the schedule's t = 1
        assert sig[-2].item() == pytest.approx(train_sigmas[0].item(), rel=1e-12)


def test_spaced_sigmas_are_training_levels_evenly_spaced_in_t():
    noise = NoiseConfig()
    train_sigmas = gamma_to_sigma(training_gammas(noise))
    sig = sampling_sigmas(SamplerConfig(steps=5, schedule="spaced"), noise)
    # t = 2000, 1500.25, 1000.5, 500.75, 1 -> rounded to 2000, 1500, 1000 (half to even), 501, 1
    expected = train_sigmas[torch.tensor([1999, 1499, 999, 500, 0])]
    assert torch.equal(sig[:-1], expected)


def test_explicit_sigmas_are_used_as_given():
    sig = sampling_sigmas(SamplerConfig(steps=99, schedule="karras", sigmas=[50.0, 3.0, 0.5, 0.01]), NoiseConfig())
    assert sig.tolist() == [50.0, 3.0, 0.5, 0.01, 0.0]


@pytest.mark.parametrize("sigmas", [[1.0, 2.0, 0.5], [2.0, 2.0, 1.0], [3.0, 1.0, 0.0], [1.0, -0.5]])
def test_invalid_explicit_sigmas_raise(sigmas):
    with pytest.raises(SR3Error, match="strictly decreasing"):
        sampling_sigmas(SamplerConfig(sigmas=sigmas), NoiseConfig())


def test_zero_steps_raise():
    with pytest.raises(SR3Error, match="steps"):
        sampling_sigmas(SamplerConfig(steps=0), NoiseConfig())


def test_spaced_grid_with_more_steps_than_timesteps_is_rejected_or_strictly_decreasing():
    # More steps than training timesteps repeats t values; a repeated sigma gives dpmpp_2m a zero step h
    # (ZeroDivisionError). Either refuse the request or keep the grid strictly decreasing.
    cfg = SamplerConfig(steps=150, schedule="spaced")
    noise = NoiseConfig(timesteps=100, beta_start=1e-4, beta_end=2e-2)
    try:
        sig = sampling_sigmas(cfg, noise)
    except SR3Error:
        return
    assert (sig[1:] < sig[:-1]).all(), "spaced grid repeats sigmas when steps > timesteps"


@pytest.mark.parametrize("schedule", ["karras", "spaced"])
def test_truncated_grid_stops_at_the_level(schedule):
    noise = NoiseConfig()
    sigmas = sampling_sigmas(SamplerConfig(steps=12, schedule=schedule), noise, stop_level=0.3)
    gammas = training_gammas(noise)
    assert len(sigmas) == 13 and (sigmas[1:] < sigmas[:-1]).all()  # 12 intervals, no trailing 0
    assert float(sigmas[-1]) == pytest.approx(float(gamma_to_sigma(level_gamma(torch.tensor([0.3]), gammas))[0]))
    assert float(sigmas[0]) == pytest.approx(float(gamma_to_sigma(gammas[-1])))
    with pytest.raises(SR3Error, match="cannot be truncated"):
        sampling_sigmas(SamplerConfig(sigmas=[3.0, 1.0]), noise, stop_level=0.3)


def test_equivalent_level_meets_at_the_same_gamma():
    from sr3.schedules import equivalent_level, level_gamma

    linear = training_gammas(NoiseConfig())
    cosine = training_gammas(NoiseConfig(schedule="cosine", timesteps=1000))
    for level in (0.0, 0.05, 0.1, 0.3, 0.7):
        other = equivalent_level(level, linear, cosine)
        assert float(level_gamma(torch.tensor([other], dtype=torch.float64), cosine)[0]) == pytest.approx(
            float(level_gamma(torch.tensor([level], dtype=torch.float64), linear)[0]), rel=1e-9)
    assert equivalent_level(0.1, linear, linear) == pytest.approx(0.1, abs=1e-12)
    assert equivalent_level(0.1, linear, cosine) > 0.1  # the cosine schedule keeps more signal early on
