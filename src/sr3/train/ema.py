"""Exponential moving average of model weights, kept in float32 beside the trained model."""

from __future__ import annotations

import torch
from torch import nn


class EMA:
    """Shadow weights w_ema <- d * w_ema + (1 - d) * w, with d warmed up as min(decay, (1 + n) / (10 + n)).

    `rampup` > 0 also caps the half-life at that fraction of the samples seen (EDM's ema_rampup_ratio, Karras
    et al. 2022), so early averages forget the random initialisation in proportion to the run so far.
    """

    def __init__(self, model: nn.Module, decay: float, rampup: float = 0.0):
        self.decay, self.rampup = decay, rampup
        self.shadow = {k: v.detach().float().clone() for k, v in model.state_dict().items()}

    def decay_at(self, step: int) -> float:
        """The decay used after `step` optimiser steps; the warm-up keeps early averages from lagging.

        With `rampup` r the decay is at most 0.5 ** (B / max(r * n, tiny)), n = step * B samples seen, B the
        samples per step; B cancels, so it is a function of the step alone and a resumed run stays exact.
        """
        decay = min(self.decay, (1 + step) / (10 + step))
        if self.rampup > 0:
            decay = min(decay, 0.5 ** (1 / max(self.rampup * step, 1e-8)))
        return decay

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        d = self.decay_at(step)
        live = model.state_dict()
        keys = [k for k, v in self.shadow.items() if v.is_floating_point()]
        torch._foreach_lerp_([self.shadow[k] for k in keys], [live[k].float() for k in keys], 1 - d)

    def load(self, state: dict[str, torch.Tensor]) -> None:
        self.shadow = {k: v.float().clone() for k, v in state.items()}
