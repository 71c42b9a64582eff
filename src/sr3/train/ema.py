"""Exponential moving average of model weights, kept in float32 beside the trained model."""

from __future__ import annotations

import torch
from torch import nn


class EMA:
    """Shadow weights w_ema <- d * w_ema + (1 - d) * w, with d warmed up as min(decay, (1 + n) / (10 + n))."""

    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        self.shadow = {k: v.detach().float().clone() for k, v in model.state_dict().items()}

    def decay_at(self, step: int) -> float:
        """The decay used after `step` optimiser steps; the warm-up keeps early averages from lagging."""
        return min(self.decay, (1 + step) / (10 + step))

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        d = self.decay_at(step)
        live = model.state_dict()
        keys = [k for k, v in self.shadow.items() if v.is_floating_point()]
        torch._foreach_lerp_([self.shadow[k] for k in keys], [live[k].float() for k in keys], 1 - d)

    def load(self, state: dict[str, torch.Tensor]) -> None:
        self.shadow = {k: v.float().clone() for k, v in state.items()}
