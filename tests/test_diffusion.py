"""Tests for sr3.diffusion: eps / x0 / v conversions, the denoiser contract D(x, sigma, cond), the training loss."""

import dataclasses
import math

import pytest
import torch
from torch import nn

from sr3.config import NoiseConfig
from sr3.diffusion import (
    Cond,
    Denoiser,
    diffused_image,
    diffusion_loss,
    min_snr_weight,
    net_output,
    to_x0,
    training_target,
    undiffused_image,
)
from sr3.errors import SR3Error
from sr3.noise import PerSampleNoise
from sr3.schedules import linear_gammas, sample_sqrt_gamma, training_gammas

PARAMS = ["eps", "x0", "v"]


def _target(param: str, x0: torch.Tensor, y: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """The exact eps / x0 / v for a noisy y of a known x0 at level g = sqrt(gamma), in closed form."""
    eps = (y - g * x0) / (1 - g**2).sqrt()
    return {"eps": eps, "x0": x0, "v": g * eps - (1 - g**2).sqrt() * x0}[param]


class KnowsX0(nn.Module):
    """A perfect network for one known x0: returns the exact target for whatever y and level it is given."""

    def __init__(self, x0: torch.Tensor, param: str):
        super().__init__()
        self.x0, self.param, self.calls = x0, param, []

    def forward(self, inp, sqrt_gamma, labels=None, aug_level=None):
        self.calls.append((inp, sqrt_gamma, labels, aug_level))
        y = inp[:, : self.x0.shape[1]].double()
        g = sqrt_gamma.double().reshape(-1, 1, 1, 1)
        return _target(self.param, self.x0.double(), y, g).to(inp.dtype)


class Zero(nn.Module):
    def __init__(self, channels: int = 3):
        super().__init__()
        self.channels, self.calls = channels, []

    def forward(self, inp, sqrt_gamma, labels=None, aug_level=None):
        self.calls.append((inp, sqrt_gamma))
        return inp.new_zeros(inp.shape[0], self.channels, *inp.shape[2:])


# --- parameterisations ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("param", PARAMS)
def test_to_x0_inverts_training_target(param):
    gen = torch.Generator().manual_seed(0)
    x0 = torch.rand(6, 3, 5, 5, generator=gen, dtype=torch.float64) * 2 - 1
    eps = torch.randn(6, 3, 5, 5, generator=gen, dtype=torch.float64)
    g = torch.tensor([0.02, 0.3, 0.5, 0.9, 0.9999, 1.0], dtype=torch.float64).reshape(-1, 1, 1, 1)
    y = g * x0 + (1 - g**2).sqrt() * eps
    out = training_target(x0, eps, g, param)
    assert torch.allclose(to_x0(out, y, g, param), x0, rtol=0, atol=1e-12)


def test_training_targets_in_closed_form():
    x0 = torch.tensor([0.5, -0.25], dtype=torch.float64)
    eps = torch.tensor([1.5, 2.0], dtype=torch.float64)
    g = torch.tensor([0.6, 0.8], dtype=torch.float64)  # sqrt(1 - g^2) = 0.8, 0.6
    assert torch.equal(training_target(x0, eps, g, "eps"), eps)
    assert torch.equal(training_target(x0, eps, g, "x0"), x0)
    v = training_target(x0, eps, g, "v")
    assert torch.allclose(v, torch.tensor([0.6 * 1.5 - 0.8 * 0.5, 0.8 * 2.0 + 0.6 * 0.25], dtype=torch.float64))


def test_v_target_has_unit_variance_for_unit_variance_data():
    # Salimans & Ho: with Var(x0) = Var(eps) = 1, v = g eps - sqrt(1-g^2) x0 has unit variance at every level
    gen = torch.Generator().manual_seed(1)
    x0, eps = torch.randn(2, 200_000, generator=gen, dtype=torch.float64)
    for g in (0.1, 0.5, 0.95):
        assert training_target(x0, eps, torch.tensor(g, dtype=torch.float64), "v").var().item() == pytest.approx(
            1.0, abs=0.01
        )


# --- the denoiser contract ------------------------------------------------------------------------------------


@pytest.mark.parametrize("param", PARAMS)
def test_denoiser_with_a_perfect_network_returns_x0(param):
    gen = torch.Generator().manual_seed(2)
    x0 = torch.rand(4, 3, 8, 8, generator=gen, dtype=torch.float64) * 2 - 1
    sigma = torch.tensor([0.01, 0.3, 2.0, 80.0])
    x = x0 + sigma.double().reshape(-1, 1, 1, 1) * torch.randn(x0.shape, generator=gen, dtype=torch.float64)
    net = KnowsX0(x0, param)
    out = Denoiser(net, param)(x, sigma, Cond())
    assert out.dtype == torch.float64
    assert torch.allclose(out, x0, rtol=0, atol=1e-9)
    # the network sees the variance-preserving y = sqrt(gamma) x at sqrt(gamma) = 1 / sqrt(1 + sigma^2)
    inp, sqrt_gamma, _, _ = net.calls[0]
    expected = (1 + sigma.double() ** 2).rsqrt()
    assert sqrt_gamma.shape == (4,) and torch.allclose(sqrt_gamma.double(), expected, rtol=1e-7)
    assert torch.allclose(inp, x * sqrt_gamma.double().reshape(-1, 1, 1, 1), rtol=1e-12)


def test_denoiser_recovers_x0_from_the_true_noise():
    # An eps network that outputs the very eps used to noise x0: D must invert sigma -> gamma correctly.
    gen = torch.Generator().manual_seed(3)
    x0 = torch.rand(3, 1, 4, 4, generator=gen, dtype=torch.float64) * 2 - 1
    eps = torch.randn(x0.shape, generator=gen, dtype=torch.float64)
    sigma = torch.tensor([0.05, 1.0, 20.0])
    x = x0 + sigma.double().reshape(-1, 1, 1, 1) * eps

    class TrueEps(nn.Module):
        def forward(self, inp, sqrt_gamma, labels=None, aug_level=None):
            return eps

    out = Denoiser(TrueEps(), "eps")(x, sigma, Cond())
    # float32 sqrt(gamma) limits the agreement, not the formulas
    assert torch.allclose(out, x0, rtol=0, atol=2e-5)


def test_denoiser_clip_clamps_to_data_range():
    class Wild(nn.Module):  # an x0 network predicting values far outside [-1, 1]
        def forward(self, inp, sqrt_gamma, labels=None, aug_level=None):
            return 3 * inp

    x = torch.linspace(-2, 2, 2 * 3 * 4 * 4).reshape(2, 3, 4, 4)
    sigma = torch.tensor([0.5, 1.5])
    raw = Denoiser(Wild(), "x0")(x, sigma, Cond())
    clipped = Denoiser(Wild(), "x0", clip=True)(x, sigma, Cond())
    assert raw.abs().max() > 2
    assert torch.equal(clipped, raw.clamp(-1, 1))


def test_denoiser_autocast_runs_the_network_in_bf16_and_returns_float32():
    class Conv(nn.Module):  # records the dtype its convolution computes in
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 3, 3, padding=1)
            self.dtypes = []

        def forward(self, inp, sqrt_gamma, labels=None, aug_level=None):
            out = self.conv(inp)
            self.dtypes.append(out.dtype)
            return out

    torch.manual_seed(0)
    net = Conv()
    x, sigma = torch.randn(2, 3, 8, 8), torch.tensor([0.5, 2.0])
    full = Denoiser(net, "v")(x, sigma, Cond())
    mixed = Denoiser(net, "v", precision="bf16")(x, sigma, Cond())
    assert net.dtypes == [torch.float32, torch.bfloat16]
    assert mixed.dtype == torch.float32
    assert not torch.equal(mixed, full) and torch.allclose(mixed, full, atol=0.05)


def test_denoiser_rejects_unknown_parameterization():
    with pytest.raises(ValueError, match="parameterization"):
        Denoiser(Zero(), "score")


def test_condition_is_concatenated_and_labels_passed_through():
    net = KnowsX0(torch.zeros(2, 3, 4, 4), "x0")
    image = torch.full((2, 3, 4, 4), 7.0)
    labels, aug = torch.tensor([1, 2]), torch.tensor([0.1, 0.2])
    y = torch.ones(2, 3, 4, 4)
    net_output(net, y, torch.tensor([0.5, 0.5]), Cond(image=image, labels=labels, aug_level=aug))
    inp, _, got_labels, got_aug = net.calls[0]
    assert inp.shape == (2, 6, 4, 4)
    assert torch.equal(inp[:, :3], y) and torch.equal(inp[:, 3:], image)
    assert got_labels is labels and got_aug is aug


# --- the training loss ----------------------------------------------------------------------------------------


def _rng(seed: int, x0: torch.Tensor) -> PerSampleNoise:
    """One generator per sample of the batch x0, as training draws them."""
    return PerSampleNoise(range(seed * 10**6, seed * 10**6 + len(x0)))


def _data(batch: int = 16, seed: int = 4) -> torch.Tensor:
    return torch.rand(batch, 3, 4, 4, generator=torch.Generator().manual_seed(seed)) * 2 - 1


@pytest.mark.parametrize("param", PARAMS)
@pytest.mark.parametrize("loss", ["l1", "l2"])
def test_loss_of_a_perfect_network_is_zero(param, loss):
    # a coarse schedule keeps sqrt(1 - gamma) away from 0, so the closed-form eps is exact in float32
    gammas = linear_gammas(8, 0.05, 0.3)
    x0 = _data()
    cfg = NoiseConfig(parameterization=param, loss=loss)
    value = diffusion_loss(KnowsX0(x0, param), x0, Cond(), gammas, cfg, _rng(0, x0))
    assert value.item() < 1e-5
    zero = diffusion_loss(Zero(), x0, Cond(), gammas, cfg, _rng(0, x0))
    assert zero.item() > 0.1


def test_loss_of_the_perfect_x0_network_is_exactly_zero_on_the_sr3_schedule():
    x0 = _data()
    cfg = NoiseConfig(parameterization="x0")
    value = diffusion_loss(KnowsX0(x0, "x0"), x0, Cond(), training_gammas(cfg), cfg, _rng(0, x0))
    assert value.item() == 0.0


def test_zero_network_x0_loss_is_the_data_norm():
    x0 = _data()
    gammas = training_gammas(NoiseConfig())
    for loss, expected in (("l1", x0.abs().mean()), ("l2", x0.pow(2).mean())):
        cfg = NoiseConfig(parameterization="x0", loss=loss)
        value = diffusion_loss(Zero(), x0, Cond(), gammas, cfg, _rng(0, x0))
        assert value.item() == pytest.approx(expected.item(), rel=1e-6)


def test_zero_network_eps_loss_l1_vs_l2():
    # the eps target is standard normal: E|eps| = sqrt(2 / pi), E eps^2 = 1 (12,288 values: +-0.01)
    x0 = torch.zeros(256, 3, 4, 4)
    gammas = training_gammas(NoiseConfig())
    l1 = diffusion_loss(Zero(), x0, Cond(), gammas, NoiseConfig(loss="l1"), _rng(5, x0))
    l2 = diffusion_loss(Zero(), x0, Cond(), gammas, NoiseConfig(loss="l2"), _rng(5, x0))
    assert l1.item() == pytest.approx(math.sqrt(2 / math.pi), abs=0.02)
    assert l2.item() == pytest.approx(1.0, abs=0.04)


def test_loss_matches_sr3_algorithm_1_draw_for_draw():
    # Alg. 1: sqrt(gamma) ~ continuous level, eps ~ N(0, I), y = sqrt(gamma) x0 + sqrt(1-gamma) eps,
    # loss = || f(cond, y, sqrt(gamma)) - eps ||_p, with all randomness from the given per-sample generators.
    x0 = _data(8)
    image = torch.rand(8, 3, 4, 4, generator=torch.Generator().manual_seed(9))
    gammas = training_gammas(NoiseConfig())

    class Affine(nn.Module):
        def forward(self, inp, sqrt_gamma, labels=None, aug_level=None):
            return 0.5 * inp[:, :3] - 0.25 * inp[:, 3:] + sqrt_gamma.reshape(-1, 1, 1, 1)

    rng = _rng(6, x0)
    sqrt_g = sample_sqrt_gamma(gammas, rng).float().reshape(-1, 1, 1, 1)
    eps = rng.randn(x0.shape[1:])
    y = sqrt_g * x0 + (1 - sqrt_g**2).sqrt() * eps
    pred = 0.5 * y - 0.25 * image + sqrt_g
    for loss, expected in (("l1", (pred - eps).abs().mean()), ("l2", (pred - eps).pow(2).mean())):
        got = diffusion_loss(
            Affine(), x0, Cond(image=image), gammas, NoiseConfig(loss=loss), _rng(6, x0)
        )
        assert got.item() == pytest.approx(expected.item(), rel=1e-5)


def test_loss_noises_the_data_as_sr3_does():
    # whatever the draw order, the network must see y = g x0 + sqrt(1-g^2) eps with eps ~ N(0, 1)
    x0 = torch.full((512, 1, 4, 4), 0.5)
    gammas = linear_gammas(8, 0.05, 0.3)
    net = Zero(1)
    diffusion_loss(net, x0, Cond(), gammas, NoiseConfig(), _rng(7, x0))
    y, sqrt_g = net.calls[0]
    assert sqrt_g.shape == (512,) and sqrt_g.dtype == torch.float32
    assert sqrt_g.min() >= gammas[-1].sqrt() and sqrt_g.max() <= 1
    g = sqrt_g.double().reshape(-1, 1, 1, 1)
    z = (y.double() - g * 0.5) / (1 - g**2).sqrt()
    assert abs(z.mean().item()) < 0.03 and z.std().item() == pytest.approx(1.0, abs=0.03)


def test_loss_is_seeded():
    x0 = _data()
    gammas = training_gammas(NoiseConfig())

    class Half(nn.Module):
        def forward(self, inp, sqrt_gamma, labels=None, aug_level=None):
            return 0.5 * inp

    def run(seed):
        return diffusion_loss(Half(), x0, Cond(), gammas, NoiseConfig(), _rng(seed, x0)).item()

    assert run(1) == run(1) and run(1) != run(2)


def test_each_sample_draws_from_its_own_generator():
    # what makes gradient accumulation and any split over processes exact: a sample's level and noise
    # depend on its own seed only, not on which other samples share its batch
    x0 = _data(4)
    gammas = training_gammas(NoiseConfig())
    net = Zero()
    diffusion_loss(net, x0, Cond(), gammas, NoiseConfig(), PerSampleNoise([10, 11, 12, 13]))
    diffusion_loss(net, x0[2:], Cond(), gammas, NoiseConfig(), PerSampleNoise([12, 13]))
    (y_all, g_all), (y_half, g_half) = net.calls
    assert torch.equal(y_all[2:], y_half) and torch.equal(g_all[2:], g_half)


def test_residual_images_round_trip_and_need_the_upsampled_lr():
    hr, base = torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8)
    cond = Cond(image=base)
    r = diffused_image(hr, cond, residual=True)
    assert torch.allclose(r, hr - base) and torch.allclose(undiffused_image(r, cond, residual=True), hr)
    assert diffused_image(hr, Cond(), residual=False) is hr
    with pytest.raises(ValueError, match="prediction from the LR"):
        diffused_image(hr, Cond(), residual=True)


# --- capped noise levels and Min-SNR weighting ----------------------------------------------------------------


def test_capped_loss_sees_only_levels_up_to_sigma_max_and_draws_as_many_numbers():
    x0 = _data(64)
    gammas = training_gammas(NoiseConfig())
    net, rngs = Zero(), [_rng(3, x0), _rng(3, x0), _rng(3, x0)]
    diffusion_loss(net, x0, Cond(), gammas, NoiseConfig(sigma_max=0.5), rngs[0])
    diffusion_loss(net, x0, Cond(), gammas, NoiseConfig(), rngs[1])
    diffusion_loss(net, x0, Cond(), gammas, NoiseConfig(sigma_max=1e9), rngs[2])
    (_, g_cap), (y_all, g_all), (y_huge, g_huge) = net.calls
    sigma = lambda g: ((1 - g.double() ** 2) / g.double() ** 2).sqrt()  # noqa: E731
    assert sigma(g_cap).max() <= 0.5 < sigma(g_all).max()
    assert torch.equal(g_all, g_huge) and torch.equal(y_all, y_huge)  # a cap above the schedule changes nothing
    nxt = [r.rand() for r in rngs]  # the same number of draws per generator, capped or not (exact resume)
    assert torch.equal(nxt[0], nxt[1]) and torch.equal(nxt[1], nxt[2])
    with pytest.raises(SR3Error, match="below the schedule's first step"):
        diffusion_loss(net, x0, Cond(), gammas, NoiseConfig(sigma_max=1e-4), _rng(3, x0))


def test_min_snr_weights_in_closed_form():
    sqrt_g = torch.tensor([0.5, 0.8, 0.99], dtype=torch.float64)  # SNR = g / (1 - g): 1/3, 16/9, 0.9801/0.0199
    snr = sqrt_g**2 / (1 - sqrt_g**2)
    clipped = snr.clamp(max=5)
    assert torch.allclose(min_snr_weight(sqrt_g, "x0", 5), clipped)
    assert torch.allclose(min_snr_weight(sqrt_g, "eps", 5), torch.tensor([1, 1, 5 / snr[2]], dtype=torch.float64))
    assert torch.allclose(min_snr_weight(sqrt_g, "v", 5), clipped / (snr + 1))
    ends = torch.tensor([0.0, 1.0])  # gamma = 0 and 1: finite weights
    assert torch.isfinite(min_snr_weight(ends, "eps", 5)).all() and torch.isfinite(min_snr_weight(ends, "v", 5)).all()


@pytest.mark.parametrize("param", PARAMS)
def test_min_snr_loss_is_min_snr_times_the_x0_error_whatever_the_target(param):
    # an estimate x0 + delta, expressed as each parameterisation's output: with min_snr k the L2 loss is
    # mean_b min(SNR_b, k) * mean(delta^2) for all three (the weighting is on the x0 error, Hang et al. Eq. 9)
    gammas = linear_gammas(8, 0.05, 0.3)
    x0 = _data()
    delta = 0.1 * torch.randn(x0.shape, generator=torch.Generator().manual_seed(2))
    cfg = NoiseConfig(parameterization=param, loss="l2", min_snr=2.0)
    got = diffusion_loss(KnowsX0(x0 + delta, param), x0, Cond(), gammas, cfg, _rng(8, x0))
    g = sample_sqrt_gamma(gammas, _rng(8, x0)) ** 2
    expected = ((g / (1 - g)).clamp(max=2.0) * delta.double().pow(2).flatten(1).mean(1)).mean()
    assert got.item() == pytest.approx(expected.item(), rel=1e-4)
    unweighted = dataclasses.replace(cfg, min_snr=0.0)
    plain = diffusion_loss(KnowsX0(x0 + delta, param), x0, Cond(), gammas, unweighted, _rng(8, x0))
    assert plain.item() != pytest.approx(got.item(), rel=1e-2)  # the weight does something
