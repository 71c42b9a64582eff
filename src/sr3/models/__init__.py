"""The networks a model config can name (`model.arch`), and the contract every one of them meets.

A network is an `nn.Module` built from a `ModelConfig` and called as

    net(x, sqrt_gamma, labels=None, aug_level=None) -> prediction [B, out_channels, H, W]

- x [B, in_channels, H, W]: the noisy image (`out_channels` channels) with, for an SR stage, the
  upsampled LR image concatenated on channels (so `in_channels = 2 * out_channels` there);
- sqrt_gamma [B]: the continuous noise level in [0, 1] (SR3); the network never sees a step index;
- labels [B] (int64): class labels when `num_classes > 0`, index `num_classes` meaning "no class" (CFG);
- aug_level [B]: CDM's conditioning-augmentation level in [0, 1) when `augment_embedding` is set.

It has a `downscale_factor` attribute: H and W must be multiples of it. What it predicts (eps, x0 or
v) is the noise config's business, converted by `sr3.diffusion.Denoiser`, never the network's.
The keys every network shares are `ModelConfig`'s; a network's own keys are `model.options`, parsed into
its entry's options dataclass (as EDM's `model_kwargs`, k-diffusion's per-type config keys).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

from sr3.config import ModelConfig, from_dict
from sr3.errors import SR3Error
from sr3.models.unet import UNet, UNetOptions


@dataclass(frozen=True)
class Network:
    """A registry entry: the module, built from a `ModelConfig`, and the dataclass its `model.options` parse into."""

    build: Callable[[ModelConfig], nn.Module]
    options: type


NETWORKS: dict[str, Network] = {
    "unet": Network(UNet, UNetOptions),  # SR3's BigGAN-block U-Net; optionally a stem and size-independent windows
}


def network_options(cfg: ModelConfig) -> Any:
    """The typed options of the network `cfg.arch` names: an unknown name or key, a bad type or a value out of
    range is an SR3Error, so a config is checked before any network is built or any data read."""
    if cfg.arch not in NETWORKS:
        raise SR3Error(f"unknown network model.arch '{cfg.arch}'; choose from: {', '.join(NETWORKS)}")
    return from_dict(NETWORKS[cfg.arch].options, cfg.options, "model.options")


def build_network(cfg: ModelConfig) -> nn.Module:
    """The network `cfg.arch` names, freshly initialised."""
    network_options(cfg)  # every entry's options checked, whatever its module does with them
    return NETWORKS[cfg.arch].build(cfg)
