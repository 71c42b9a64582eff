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


def initial_noise(noise: PerSampleNoise, shape: Sequence[int], sigma_max: float) -> torch.Tensor:
    """Pure noise at the top of the grid: y_T ~ N(0, 1) in variance-preserving form, i.e. x = sqrt(1 + sigma^2) z."""
    z = noise(torch.empty(shape, device=noise.device))
    return z * math.sqrt(1 + sigma_max**2)
