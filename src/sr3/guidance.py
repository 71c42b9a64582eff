"""Classifier-free guidance as a denoiser wrapper, like `sr3.tiling.TiledDenoiser`: samplers see a plain denoiser."""

from __future__ import annotations

import torch

from sr3.diffusion import Cond


class ClassifierFreeGuidance:
    """D_w(x) = (1 + w) D(x | c) - w D(x | no class) (Ho & Salimans 2021), both halves in one batch."""

    def __init__(self, denoiser, scale: float, null_label: int):
        self.denoiser, self.scale, self.null_label = denoiser, scale, null_label

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor, cond: Cond) -> torch.Tensor:
        null = torch.full_like(cond.labels, self.null_label)
        both = Cond(
            image=None if cond.image is None else torch.cat([cond.image, cond.image]),
            labels=torch.cat([cond.labels, null]),
            aug_level=None if cond.aug_level is None else torch.cat([cond.aug_level, cond.aug_level]),
        )
        conditional, unconditional = self.denoiser(torch.cat([x, x]), torch.cat([sigma, sigma]), both).chunk(2)
        return conditional + self.scale * (conditional - unconditional)
