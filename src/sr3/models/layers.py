"""U-Net building blocks: noise-level embedding, normalisations, FiLM residual block, self-attention, resampling.

Blocks take their normalisation as a factory `norm(channels) -> nn.Module`, so one block serves networks
that pool statistics over the whole image (GroupNorm) and networks that must not (`WindowGroupNorm`).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

Norm = Callable[[int], nn.Module]


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


def box_sum(x: torch.Tensor, radius: int) -> torch.Tensor:
    """Sum of x [..., H, W] over the (2 radius + 1)^2 square around each position, clipped to the image,
    in O(HW) by integral images."""
    k = 2 * radius + 1
    c = F.pad(x, (radius + 1, radius, radius + 1, radius)).cumsum(-1).cumsum(-2)
    return c[..., k:, k:] - c[..., :-k, k:] - c[..., k:, :-k] + c[..., :-k, :-k]


@functools.lru_cache(maxsize=32)
def box_counts(h: int, w: int, radius: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """How many pixels of an H x W image each clipped square of `box_sum` holds: the same for every call
    at one size, so it is built once (outside inference mode, so training may save it for backward)."""
    with torch.inference_mode(False):
        return box_sum(torch.ones(h, w, device=device, dtype=dtype), radius)


def box_mean(x: torch.Tensor, radius: int) -> torch.Tensor:
    """Mean of x [..., H, W] over the (2 radius + 1)^2 square around each position, clipped to the image
    (an average of the pixels inside it)."""
    return box_sum(x, radius) / box_counts(*x.shape[-2:], radius, x.device, x.dtype)


class WindowGroupNorm(nn.Module):
    """GroupNorm whose statistics pool over the `window`-wide square around each pixel, not the whole image.

    Within one window it is GroupNorm (a feature map no wider than half a window normalises exactly as
    nn.GroupNorm does), so noise in the input averages out of the statistics as it does there; beyond it,
    the output at a pixel depends only on its neighbourhood, so a network trained on crops normalises a
    whole large image as it did its crops. (A per-pixel LayerNorm has that property too, but turns the
    additive noise of a diffusion input into a multiplicative noise on every feature.)
    """

    def __init__(self, channels: int, groups: int, window: int, eps: float = 1e-6):
        super().__init__()
        self.groups, self.radius, self.eps = math.gcd(groups, channels), window // 2, eps
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        xg = x.float().reshape(b, self.groups, c // self.groups, h, w)
        if max(h, w) <= self.radius + 1:  # every window holds the whole map
            mean = xg.mean(dim=(2, 3, 4), keepdim=True)
            var = xg.var(dim=(2, 3, 4), unbiased=False, keepdim=True)
        else:
            mean = box_mean(xg.mean(2), self.radius)[:, :, None]
            var = (box_mean(xg.square().mean(2), self.radius)[:, :, None] - mean.square()).clamp(min=0)
        y = ((xg - mean) * (var + self.eps).rsqrt()).reshape(b, c, h, w).to(x.dtype)
        return y * self.weight[:, None, None] + self.bias[:, None, None]


# Normalisations by name (`model.options.norm`): factory(channels, groups, window) -> nn.Module.
NORMS: dict[str, Callable[[int, int, int], nn.Module]] = {
    "group": lambda channels, groups, window: group_norm(channels, groups),  # SR3's: statistics of the whole map
    "window": WindowGroupNorm,  # statistics of each pixel's `window`-wide neighbourhood: size-independent
}


class ResBlock(nn.Module):
    """BigGAN-style residual block conditioned on the embedding by FiLM, skip scaled by 1/sqrt(2) (SR3).

    `film="scale_shift"`: h = norm(h) * (1 + scale) + shift; `"additive"`: h = h + proj(emb) before the
    second norm (the popular SR3 reproduction's form).
    """

    def __init__(self, c_in: int, c_out: int, emb_dim: int, dropout: float, norm: Norm, film: str):
        super().__init__()
        self.film = film
        self.norm1 = norm(c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.emb = nn.Linear(emb_dim, 2 * c_out if film == "scale_shift" else c_out)
        self.norm2 = norm(c_out)
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
    """Multi-head self-attention over spatial positions with fused scaled_dot_product_attention.

    `window` > 0 attends within non-overlapping window x window squares (a feature map no larger than one
    window attends globally): each position then sees the same context whatever the image size.
    """

    def __init__(self, channels: int, head_channels: int, norm: Norm, window: int = 0):
        super().__init__()
        self.heads = max(1, channels // head_channels)
        self.window = window
        self.norm = norm(channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        qkv = self.qkv(self.norm(x))
        if self.window and max(h, w) > self.window:
            out = self._windowed(qkv)
        else:
            qkv = qkv.reshape(b, 3, self.heads, c // self.heads, h * w)
            q, k, v = (t.transpose(-1, -2) for t in qkv.unbind(1))  # [b, heads, hw, d]
            out = chunked_attention(q, k, v).transpose(-1, -2).reshape(b, c, h, w)
        return (x + self.proj(out)) * (1 / math.sqrt(2))

    def _windowed(self, qkv: torch.Tensor) -> torch.Tensor:
        """Attention within windows; a ragged edge is padded and the padding masked out of every key set."""
        b, c3, h, w = qkv.shape
        s, c = self.window, c3 // 3
        ph, pw = -h % s, -w % s
        qkv = F.pad(qkv, (0, pw, 0, ph))
        nh, nw = (h + ph) // s, (w + pw) // s
        # [b, 3, heads, d, nh, s, nw, s] -> [3, b * nh * nw, heads, s * s, d]
        t = qkv.reshape(b, 3, self.heads, c // self.heads, nh, s, nw, s)
        t = t.permute(1, 0, 4, 6, 2, 5, 7, 3).reshape(3, b * nh * nw, self.heads, s * s, c // self.heads)
        mask = None
        if ph or pw:
            valid = F.pad(qkv.new_ones(1, 1, h, w), (0, pw, 0, ph)) > 0
            valid = valid.reshape(nh, s, nw, s).permute(0, 2, 1, 3).reshape(nh * nw, 1, 1, s * s)
            mask = valid.repeat(b, 1, 1, 1)
        out = F.scaled_dot_product_attention(t[0], t[1], t[2], attn_mask=mask)  # [b * nh * nw, heads, s * s, d]
        out = out.reshape(b, nh, nw, self.heads, s, s, c // self.heads).permute(0, 3, 6, 1, 4, 2, 5)
        return out.reshape(b, c, nh * s, nw * s)[:, :, :h, :w]


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
