"""U-Net building blocks: noise-level embedding, FiLM residual block, self-attention, resampling."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def sinusoidal_embedding(level: torch.Tensor, dim: int, scale: float = 1000.0) -> torch.Tensor:
    """Transformer-style sinusoidal features of a continuous level in [0, 1] (WaveGrad embeds sqrt(gamma) so)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=level.device, dtype=torch.float32) / half)
    args = scale * level.float()[:, None] * freqs[None]
    return torch.cat([args.sin(), args.cos()], dim=1)


class LevelEmbedding(nn.Module):
    """Sinusoidal features of a scalar level followed by a two-layer MLP."""

    def __init__(self, features: int, out_dim: int):
        super().__init__()
        self.features = features
        self.mlp = nn.Sequential(nn.Linear(features, out_dim), nn.SiLU(), nn.Linear(out_dim, out_dim))

    def forward(self, level: torch.Tensor) -> torch.Tensor:
        return self.mlp(sinusoidal_embedding(level, self.features))


def group_norm(channels: int, groups: int) -> nn.GroupNorm:
    """GroupNorm with `groups` groups, or fewer when the width does not divide (tiny test models)."""
    return nn.GroupNorm(math.gcd(groups, channels), channels, eps=1e-6)


class ResBlock(nn.Module):
    """BigGAN-style residual block conditioned on the embedding by FiLM, skip scaled by 1/sqrt(2) (SR3).

    `film="scale_shift"`: h = norm(h) * (1 + scale) + shift; `"additive"`: h = h + proj(emb) before the
    second norm (the popular SR3 reproduction's form).
    """

    def __init__(self, c_in: int, c_out: int, emb_dim: int, dropout: float, groups: int, film: str):
        super().__init__()
        self.film = film
        self.norm1 = group_norm(c_in, groups)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.emb = nn.Linear(emb_dim, 2 * c_out if film == "scale_shift" else c_out)
        self.norm2 = group_norm(c_out, groups)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        e = self.emb(F.silu(emb))[:, :, None, None].to(h.dtype)
        if self.film == "scale_shift":
            scale, shift = e.chunk(2, dim=1)
            h = self.norm2(h) * (1 + scale) + shift
        else:
            h = self.norm2(h + e)
        h = self.conv2(self.dropout(F.silu(h)))
        return (h + self.skip(x)) * (1 / math.sqrt(2))


class Attention(nn.Module):
    """Multi-head self-attention over spatial positions with fused scaled_dot_product_attention."""

    def __init__(self, channels: int, head_channels: int, groups: int):
        super().__init__()
        self.heads = max(1, channels // head_channels)
        self.norm = group_norm(channels, groups)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        qkv = self.qkv(self.norm(x)).reshape(b, 3, self.heads, c // self.heads, h * w)
        q, k, v = (t.transpose(-1, -2) for t in qkv.unbind(1))  # [b, heads, hw, d]
        out = chunked_attention(q, k, v)
        out = out.transpose(-1, -2).reshape(b, c, h, w)
        return (x + self.proj(out)) * (1 / math.sqrt(2))


def chunked_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, budget: int = 2**27) -> torch.Tensor:
    """SDPA over query chunks, so a large image never materialises more than `budget` attention scores."""
    b, heads, n, _ = q.shape
    chunk = max(1, budget // max(1, b * heads * k.shape[-2]))
    if chunk >= n:
        return F.scaled_dot_product_attention(q, k, v)
    return torch.cat([F.scaled_dot_product_attention(q[:, :, i : i + chunk], k, v) for i in range(0, n, chunk)], dim=2)


class Downsample(nn.Module):
    """Halve the resolution with a stride-2 3x3 convolution."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class Upsample(nn.Module):
    """Double the resolution: nearest-neighbour, then a 3x3 convolution."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))
