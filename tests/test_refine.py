"""Refinement sampling: start at the prediction noised to sampler.sigma_max, optionally projecting every estimate
onto the LR input (CCDF's data consistency)."""

import dataclasses

import pytest
import torch

from sr3.config import SamplerConfig, load_config
from sr3.conditioning import upsample
from sr3.errors import SR3Error
from sr3.imaging import to_tensor
from sr3.metrics.consistency import consistency
from sr3.schedules import gamma_to_sigma, sampling_sigmas, training_gammas

from conftest import photo, untrained_pipeline

RESIDUAL = ["noise.residual=true", "noise.parameterization=v", "sampler.colour_fix=false"]


def test_a_refinement_grid_starts_at_sigma_max():
    noise = load_config("tiny").noise
    least = float(gamma_to_sigma(training_gammas(noise))[0])
    grid = sampling_sigmas(SamplerConfig(steps=4, schedule="karras", sigma_max=0.3), noise)
    assert len(grid) == 5 and float(grid[0]) == pytest.approx(0.3) and grid[-1] == 0 and (grid[1:] < grid[:-1]).all()
    spaced = sampling_sigmas(SamplerConfig(steps=4, schedule="spaced", sigma_max=0.3), noise)
    assert least < float(spaced[0]) <= 0.3 and len(spaced) == 5
    with pytest.raises(SR3Error, match="below the schedule's least noise"):
        sampling_sigmas(SamplerConfig(steps=2, sigma_max=least / 2), noise)
    with pytest.raises(SR3Error, match="starts where it says"):
        sampling_sigmas(SamplerConfig(steps=2, sigmas=[1.0, 0.1], sigma_max=0.5), noise)


def test_a_refinement_stays_near_its_prediction_and_pure_noise_does_not():
    pipe = untrained_pipeline(load_config("tiny", RESIDUAL))
    lr = to_tensor(photo("coffee").resize((12, 8)))[None]
    prediction = upsample(lr, 4).clamp(-1, 1)
    near = pipe.super_resolve(lr, [0], pipe.sampler_config(steps=2, sampler="ddpm", sigma_max=0.05))
    far = pipe.super_resolve(lr, [0], pipe.sampler_config(steps=2, sampler="ddpm"))
    assert (near - prediction).abs().mean() < 0.05 < (far - prediction).abs().mean()
    again = pipe.super_resolve(lr, [0], pipe.sampler_config(steps=2, sampler="ddpm", sigma_max=0.05))
    assert torch.equal(near, again)


def test_projection_keeps_every_step_consistent_with_the_lr():
    pipe = untrained_pipeline(load_config("tiny", RESIDUAL))
    lr = to_tensor(photo("chelsea").resize((12, 8)))[None]
    base = pipe.sampler_config(steps=4, sampler="ddpm", sigma_max=0.5)
    free = pipe.super_resolve(lr, [3], base)
    projected = pipe.super_resolve(lr, [3], dataclasses.replace(base, project=True))
    assert consistency(projected, lr, 4) < 0.1 * consistency(free, lr, 4)
    with pytest.raises(SR3Error, match="belong to SR stages"):
        untrained_pipeline(load_config("tiny", ["model.in_channels=3"])).generate(1, [0], base)
