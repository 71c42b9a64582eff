"""The U-Net of every stage: SR3 (extra input channels), CDM base (class labels) and CDM SR (augmentation level).

DDPM layout with BigGAN residual blocks (Saharia et al. 2021, Sec. 2.2): `num_res_blocks` blocks per
level on the way down, one more on the way up, self-attention at the chosen feature resolutions.
The network never sees t, only the continuous noise level sqrt(gamma). Its options (`UNetOptions`) are
independent: by default it is SR3's (full resolution from the first level, GroupNorm, global attention);
a pixel-unshuffle stem runs the first level at 1/patch of the output size with wide channels (Hoogeboom
et al.'s simple diffusion); window norms and windowed attention make nothing depend on the image size, so
a model trained on crops samples any size as it trained.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from sr3.config import ModelConfig, check_range, from_dict
from sr3.errors import SR3Error
from sr3.models.layers import NORMS, Attention, Downsample, LevelEmbedding, ResBlock, Upsample


@dataclass(frozen=True)
class UNetOptions:
    """`model.options` of `unet`: the stem, the normalisation and the attention windows, each independent.

    `patch`: pixels per side the stem folds into channels (1: none); `attn_resolutions` then count
    feature-map sizes after the stem. `norm`: a name in `sr3.models.layers.NORMS`; `norm_window`: the feature
    pixels per side a `window` norm pools over. `attn_window`: attention within windows of this many
    feature pixels per side (0: global).
    """

    patch: int = 1
    norm: str = "group"
    norm_window: int = 0
    attn_window: int = 0

    def __post_init__(self):
        for key, (low, high) in OPTION_BOUNDS.items():
            check_range(f"model.options.{key}", getattr(self, key), low, high)
        if self.norm not in NORMS:
            raise SR3Error(f"unknown model.options.norm '{self.norm}'; choose from: {', '.join(NORMS)}")
        if self.norm == "window" and self.norm_window < 2:
            raise SR3Error("model.options.norm=window needs model.options.norm_window >= 2: the feature pixels it pools over")
        if self.norm != "window" and self.norm_window:
            raise SR3Error(f"model.options.norm_window is the window of norm=window, not of norm={self.norm}")


# Bounds of `UNetOptions`' numbers, inclusive.
OPTION_BOUNDS: dict[str, tuple[float, float]] = {"patch": (1, 16), "norm_window": (0, math.inf), "attn_window": (0, math.inf)}


def unet_options(cfg: ModelConfig) -> UNetOptions:
    """The checked `UNetOptions` of `cfg.options`."""
    return from_dict(UNetOptions, cfg.options, "model.options")


def downscale_factor(cfg: ModelConfig) -> int:
    """What H and W must be multiples of: the stem's patch times one halving per level below the first."""
    return unet_options(cfg).patch * 2 ** (len(cfg.channel_mults) - 1)


class UNet(nn.Module):
    """net(x, sqrt_gamma, labels=None, aug_level=None) -> prediction with `out_channels` channels.

    x holds the noisy image with any condition concatenated on channels ([B, in_channels, H, W]);
    H and W must be multiples of `downscale_factor`. A `patch` > 1 stem folds patch x patch pixels into
    channels before the first level and unfolds the output.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        opts = unet_options(cfg)
        ch, emb_dim, patch = cfg.base_channels, 4 * cfg.base_channels, opts.patch
        self.patch = patch
        self.downscale_factor = downscale_factor(cfg)
        self.noise_embed = LevelEmbedding(ch, emb_dim)
        # one extra row: the "no class" label of classifier-free guidance (index num_classes)
        self.class_embed = nn.Embedding(cfg.num_classes + 1, emb_dim) if cfg.num_classes else None
        self.aug_embed = LevelEmbedding(ch, emb_dim) if cfg.augment_embedding else None

        norm = lambda c: NORMS[opts.norm](c, cfg.norm_groups, opts.norm_window)  # noqa: E731
        block = lambda c_in, c_out: ResBlock(c_in, c_out, emb_dim, cfg.dropout, norm, cfg.film)  # noqa: E731
        attn = lambda c: Attention(c, cfg.attn_head_channels, norm, opts.attn_window)  # noqa: E731

        self.conv_in = nn.Conv2d(cfg.in_channels * patch**2, ch, 3, padding=1)
        self.down = nn.ModuleList()
        skips, c, res = [ch], ch, cfg.image_size // patch
        for level, mult in enumerate(cfg.channel_mults):
            for _ in range(cfg.num_res_blocks):
                layers = [block(c, ch * mult)]
                c = ch * mult
                if res in cfg.attn_resolutions:
                    layers.append(attn(c))
                self.down.append(nn.ModuleList(layers))
                skips.append(c)
            if level < len(cfg.channel_mults) - 1:
                self.down.append(nn.ModuleList([Downsample(c)]))
                skips.append(c)
                res //= 2

        self.mid = nn.ModuleList([block(c, c), attn(c), block(c, c)])

        self.up = nn.ModuleList()
        for level, mult in reversed(list(enumerate(cfg.channel_mults))):
            for _ in range(cfg.num_res_blocks + 1):
                layers = [block(c + skips.pop(), ch * mult)]
                c = ch * mult
                if res in cfg.attn_resolutions:
                    layers.append(attn(c))
                self.up.append(nn.ModuleList(layers))
            if level > 0:
                self.up.append(nn.ModuleList([Upsample(c)]))
                res *= 2

        self.norm_out = norm(c)
        self.conv_out = nn.Conv2d(c, cfg.out_channels * patch**2, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    def embed(self, sqrt_gamma: torch.Tensor, labels: torch.Tensor | None, aug_level: torch.Tensor | None):
        """Sum of the noise-level, class and augmentation-level embeddings."""
        emb = self.noise_embed(sqrt_gamma)
        if self.class_embed is not None:
            if labels is None:
                raise ValueError("this model is class-conditional: pass labels")
            emb = emb + self.class_embed(labels)
        if self.aug_embed is not None:
            level = aug_level if aug_level is not None else sqrt_gamma.new_zeros(sqrt_gamma.shape)
            emb = emb + self.aug_embed(level)
        return emb

    def forward(self, x, sqrt_gamma, labels=None, aug_level=None) -> torch.Tensor:
        f = self.downscale_factor
        if x.shape[-1] % f or x.shape[-2] % f:
            raise ValueError(f"input size {tuple(x.shape[-2:])} must be a multiple of {f}")
        emb = self.embed(sqrt_gamma, labels, aug_level)
        h = self.conv_in(F.pixel_unshuffle(x, self.patch))
        hs = [h]
        for layers in self.down:
            h = _apply(layers, h, emb)
            hs.append(h)
        h = _apply(self.mid, h, emb)
        for layers in self.up:
            if isinstance(layers[0], ResBlock):
                h = torch.cat([h, hs.pop()], dim=1)
            h = _apply(layers, h, emb)
        return F.pixel_shuffle(self.conv_out(F.silu(self.norm_out(h))), self.patch)


def _apply(layers: nn.ModuleList, h: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
    for layer in layers:
        h = layer(h, emb) if isinstance(layer, ResBlock) else layer(h)
    return h
