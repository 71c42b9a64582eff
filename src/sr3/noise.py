"""Randomness with one torch.Generator per sample (cf. EDM's StackedRandomGenerator).

Every random draw of sampling and of training comes from the generator of its own sample, seeded
from that sample's seed (sampling) or global sample number (training). So a seed fixes an image
whatever the batch size, and a training step draws the same whatever the split into micro-batches
and processes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch


class PerSampleNoise:
    """Random draws for a batch, row i from generator i; `noise(like)` is standard normal noise shaped like `like`."""

    def __init__(self, seeds: Sequence[int], device: torch.device | str = "cpu"):
        self.device = torch.device(device)
        self.generators = [torch.Generator(self.device).manual_seed(int(s)) for s in seeds]

    def __len__(self) -> int:
        return len(self.generators)

    def __call__(self, like: torch.Tensor) -> torch.Tensor:
        return self.randn(like.shape[1:]).to(like.dtype)

    def randn(self, shape: Sequence[int]) -> torch.Tensor:
        """[B, *shape] standard normal float32."""
        return torch.stack([torch.randn(shape, generator=g, device=self.device) for g in self.generators])

    def rand(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """[B] uniform on [0, 1)."""
        return torch.cat([torch.rand(1, generator=g, device=self.device, dtype=dtype) for g in self.generators])

    def randint(self, low: int, high: int) -> torch.Tensor:
        """[B] integers uniform on [low, high)."""
        return torch.cat([torch.randint(low, high, (1,), generator=g, device=self.device) for g in self.generators])


def mix_seed(*values: int) -> int:
    """A 63-bit seed from several integers (splitmix-style), so nearby inputs give unrelated streams."""
    h = 0x9E3779B97F4A7C15
    for v in values:
        h = (h ^ (int(v) & 0xFFFFFFFFFFFFFFFF)) * 0xBF58476D1CE4E5B9 & 0xFFFFFFFFFFFFFFFF
        h ^= h >> 31
    return h & 0x7FFFFFFFFFFFFFFF


def seeded_generator(*values: int) -> torch.Generator:
    """A CPU generator seeded from a tuple of integers."""
    return torch.Generator().manual_seed(mix_seed(*values))


# Named streams: the value mixed in last, so that draws seeded by one (seed, index) never coincide.
PAIR_STREAM = 1  # a training sample's crop, flip and degradation, by its sample number
NOISE_STREAM = 2  # a training sample's noise level, noise and conditioning augmentation
CENTRE_STREAM = 3  # a validation pair's degradation


def stage_seed(seed: int, stage: int) -> int:
    """The seed of an image in cascade stage `stage`: its own in stage 0, so a cascade's first stage matches its
    model alone, and mixed with the stage above it."""
    return seed if stage == 0 else mix_seed(seed, stage)


def initial_noise(noise: PerSampleNoise, shape: Sequence[int], sigma_max: float) -> torch.Tensor:
    """Pure noise at the top of the grid: y_T ~ N(0, 1) in variance-preserving form, i.e. x = sqrt(1 + sigma^2) z."""
    z = noise(torch.empty(shape, device=noise.device))
    return z * math.sqrt(1 + sigma_max**2)
