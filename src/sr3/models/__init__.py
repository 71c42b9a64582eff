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
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from sr3.config import ModelConfig
from sr3.errors import SR3Error
from sr3.models.unet import SpaceToDepthUNet, UNet

NETWORKS: dict[str, Callable[[ModelConfig], nn.Module]] = {
    "unet": UNet,  # SR3's BigGAN-block U-Net
    "sdunet": SpaceToDepthUNet,  # the same body on a pixel-unshuffle stem, per-pixel norms: size-independent
}


def build_network(cfg: ModelConfig) -> nn.Module:
    """The network `cfg.arch` names, freshly initialised."""
    if cfg.arch not in NETWORKS:
        raise SR3Error(f"unknown network model.arch '{cfg.arch}'; choose from: {', '.join(NETWORKS)}")
    return NETWORKS[cfg.arch](cfg)
