"""What an SR stage refines: its predictor, chosen by name (`predictor.name`), run once per batch before sampling.

SR3 refines the bicubic upsample of the LR image. DvSR, SRDiff and IR-SDE refine a regression network's
prediction instead (predict, then refine): the diffusion model then only adds what regression cannot
predict. A predictor maps an LR batch [B, C, h, w] in [-1, 1] to a prediction [B, C, h * scale, w * scale];
the residual a stage diffuses is taken to it (`sr3.diffusion.diffused_image`).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from sr3.checkpoint import StoredModel, build_stored, read_weights
from sr3.conditioning import upsample
from sr3.config import Config
from sr3.diffusion import Cond, Denoiser, undiffused_image
from sr3.errors import SR3Error
from sr3.pretrained import resolve_model
from sr3.resize import low_frequency_fix, pad_to_multiple
from sr3.tiling import tiled

Predictor = Callable[[torch.Tensor], torch.Tensor]


class Bicubic:
    """SR3's prediction: the (MATLAB-compatible) bicubic upsample."""

    def __init__(self, scale: int):
        self.scale = scale

    def __call__(self, lr: torch.Tensor) -> torch.Tensor:
        return upsample(lr, self.scale)


class Regression:
    """A regression model's one evaluation at its own sampling settings (tile, colour fix): the image
    `sr3 upscale --model` gives for that model alone."""

    def __init__(self, net: torch.nn.Module, cfg: Config, device: torch.device, precision: str = "fp32", batch: int = 4):
        if not cfg.noise.regression:
            raise SR3Error("a regression predictor must be a regression model (noise.regression: true)")
        if cfg.predictor.name != "bicubic":
            raise SR3Error("a regression predictor must itself refine bicubic: predictors do not nest")
        net = net.to(device, memory_format=torch.channels_last)
        self.denoiser = Denoiser(net, cfg.noise.parameterization, clip=True, precision=precision).eval()
        self.cfg, self.scale, self.multiple, self.batch = cfg, cfg.data.scale, net.downscale_factor, batch

    @torch.no_grad()  # not inference_mode: training feeds its output to a network that learns
    def __call__(self, lr: torch.Tensor) -> torch.Tensor:
        h, w = lr.shape[-2:]
        lr = pad_to_multiple(lr, self.multiple // math.gcd(self.multiple, self.scale))
        cond = Cond(image=upsample(lr, self.scale))
        denoiser = tiled(self.denoiser, self.cfg.sampler.tile, self.scale, self.multiple, self.batch)
        # the `regression` sampler's one evaluation: an all-zero image at infinite noise, the condition alone
        x = denoiser(torch.zeros_like(cond.image), cond.image.new_full((lr.shape[0],), math.inf), cond)
        x = undiffused_image(x, cond, self.cfg.noise.residual)
        if self.cfg.sampler.colour_fix:
            x = low_frequency_fix(x, lr, self.scale)
        return x[..., : h * self.scale, : w * self.scale].clamp(-1, 1)


def _bicubic(cfg: Config, stored: StoredModel | None, device: torch.device, precision: str) -> Predictor:
    return Bicubic(cfg.data.scale)


def _regression(cfg: Config, stored: StoredModel | None, device: torch.device, precision: str) -> Predictor:
    if stored is None:
        raise SR3Error("this stage refines a regression network's prediction, but no predictor network was given")
    p = stored.cfg
    if p.data.scale != cfg.data.scale or p.model.out_channels != cfg.model.out_channels:
        raise SR3Error(f"the predictor upscales x{p.data.scale} to {p.model.out_channels} channels; this stage needs "
                       f"x{cfg.data.scale} to {cfg.model.out_channels}")
    return Regression(build_stored(stored, cfg.predictor.model or "the predictor"), p, device, precision)


PREDICTORS: dict[str, Callable[[Config, StoredModel | None, torch.device, str], Predictor]] = {
    "bicubic": _bicubic,  # SR3
    "regression": _regression,  # DvSR / SRDiff: a trained regression network's output
}


def build_predictor(
    cfg: Config, stored: StoredModel | None = None, device: torch.device | str = "cpu", precision: str = "fp32"
) -> Predictor:
    """The predictor `cfg.predictor.name` names; `stored`: the network a weights file carries for it."""
    if cfg.predictor.name not in PREDICTORS:
        raise SR3Error(f"unknown predictor '{cfg.predictor.name}'; choose from: {', '.join(PREDICTORS)}")
    if stored is not None and cfg.predictor.name == "bicubic":
        raise SR3Error("this model carries a predictor network, but its config says predictor.name=bicubic")
    return PREDICTORS[cfg.predictor.name](cfg, stored, torch.device(device), precision)


def named_predictor(cfg: Config) -> StoredModel | None:
    """The predictor network `predictor.model` names (a shipped model or a path), which training starts from and
    stores with every checkpoint; None for predictors without a network."""
    if cfg.predictor.name == "bicubic":
        if cfg.predictor.model:
            raise SR3Error("predictor.model names a network, but predictor.name=bicubic takes none")
        return None
    if not cfg.predictor.model:
        raise SR3Error(f"predictor.name={cfg.predictor.name} needs predictor.model: a shipped regression model or its path")
    return read_weights(resolve_model(cfg.predictor.model))
