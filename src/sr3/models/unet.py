"""One U-Net for every stage: SR3 (extra input channels), CDM base (class labels) and CDM SR (augmentation level).

DDPM layout with BigGAN residual blocks (Saharia et al. 2021, Sec. 2.2): `num_res_blocks` blocks per
level on the way down, one more on the way up, self-attention at the chosen feature resolutions.
The network never sees t, only the continuous noise level sqrt(gamma).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sr3.config import ModelConfig
from sr3.models.layers import Attention, Downsample, LevelEmbedding, ResBlock, Upsample, group_norm


class UNet(nn.Module):
    """net(x, sqrt_gamma, labels=None, aug_level=None) -> prediction with `out_channels` channels.

    x holds the noisy image with any condition concatenated on channels ([B, in_channels, H, W]);
    H and W must be multiples of `downscale_factor`.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        ch, emb_dim = cfg.base_channels, 4 * cfg.base_channels
        self.downscale_factor = 2 ** (len(cfg.channel_mults) - 1)
        self.noise_embed = LevelEmbedding(ch, emb_dim)
        # one extra row: the "no class" label of classifier-free guidance (index num_classes)
        self.class_embed = nn.Embedding(cfg.num_classes + 1, emb_dim) if cfg.num_classes else None
        self.aug_embed = LevelEmbedding(ch, emb_dim) if cfg.augment_embedding else None

        block = lambda c_in, c_out: ResBlock(c_in, c_out, emb_dim, cfg.dropout, cfg.norm_groups, cfg.film)  # noqa: E731
        attn = lambda c: Attention(c, cfg.attn_head_channels, cfg.norm_groups)  # noqa: E731

        self.conv_in = nn.Conv2d(cfg.in_channels, ch, 3, padding=1)
        self.down = nn.ModuleList()
        skips, c, res = [ch], ch, cfg.image_size
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

        self.norm_out = group_norm(c, cfg.norm_groups)
        self.conv_out = nn.Conv2d(c, cfg.out_channels, 3, padding=1)
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
        h = self.conv_in(x)
        hs = [h]
        for layers in self.down:
            h = _apply(layers, h, emb)
            hs.append(h)
        h = _apply(self.mid, h, emb)
        for layers in self.up:
            if isinstance(layers[0], ResBlock):
                h = torch.cat([h, hs.pop()], dim=1)
            h = _apply(layers, h, emb)
        return self.conv_out(F.silu(self.norm_out(h)))


def _apply(layers: nn.ModuleList, h: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
    for layer in layers:
        h = layer(h, emb) if isinstance(layer, ResBlock) else layer(h)
    return h
