"""Tiled denoising: large images in bounded memory without seams.

`TiledDenoiser` is itself a denoiser D(x, sigma, cond) -> x0_hat. It evaluates the wrapped network on
overlapping tiles and blends their x0 predictions with smooth weights into one full-size estimate, so a
sampler still walks the whole image: every step sees one coherent canvas and one noise field, and the
tiles agree at every step instead of being sampled apart and stitched (which leaves seams).
"""

from __future__ import annotations

import math

import torch

from sr3.diffusion import Cond


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Evenly spread start offsets of tiles of size `tile` covering [0, length) with at least `overlap` shared."""
    if length <= tile:
        return [0]
    count = math.ceil((length - overlap) / (tile - overlap))
    return [round(i * (length - tile) / (count - 1)) for i in range(count)]


def ramp(length: int, overlap: int, device=None) -> torch.Tensor:
    """1-D blending weights: rising linearly over `overlap` pixels at both ends, 1 in the middle, never 0."""
    i = torch.arange(length, device=device, dtype=torch.float32)
    edge = torch.minimum(i + 0.5, length - i - 0.5) / max(overlap, 1)
    return edge.clamp(max=1.0)


class TiledDenoiser:
    """Wraps a denoiser to run on `tile` x `tile` windows (a multiple of the network's downscale factor), `batch` windows per call."""

    def __init__(self, denoiser, tile: int, overlap: int, batch: int = 4):
        if not 0 <= overlap < tile:
            raise ValueError(f"overlap {overlap} must be in [0, tile {tile})")
        self.denoiser, self.tile, self.overlap, self.batch = denoiser, tile, overlap, batch

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor, cond: Cond) -> torch.Tensor:
        b, _, height, width = x.shape
        th, tw = min(self.tile, height), min(self.tile, width)
        if (th, tw) == (height, width):
            return self.denoiser(x, sigma, cond)
        weight = ramp(th, self.overlap, x.device)[:, None] * ramp(tw, self.overlap, x.device)[None, :]
        boxes = [(t, s) for t in tile_starts(height, th, self.overlap) for s in tile_starts(width, tw, self.overlap)]
        total = torch.zeros_like(x)
        norm = torch.zeros(height, width, device=x.device, dtype=x.dtype)
        for first in range(0, len(boxes), self.batch):
            chunk = boxes[first : first + self.batch]
            crop = lambda t: None if t is None else torch.cat([t[..., i : i + th, j : j + tw] for i, j in chunk])  # noqa: E731
            repeat = lambda t: None if t is None else t.repeat(len(chunk), *([1] * (t.ndim - 1)))  # noqa: E731
            sub = Cond(crop(cond.image), repeat(cond.labels), repeat(cond.aug_level))
            x0 = self.denoiser(crop(x), repeat(sigma), sub).reshape(len(chunk), b, *x.shape[1:2], th, tw)
            for k, (i, j) in enumerate(chunk):
                total[..., i : i + th, j : j + tw] += x0[k] * weight
                norm[i : i + th, j : j + tw] += weight
        return total / norm


def tiled(denoiser, tile: int, scale: int, multiple: int, batch: int):
    """`denoiser` over HR windows of `tile` LR pixels (rounded to the network's factor `multiple`), or itself for 0."""
    if tile == 0:
        return denoiser
    tile_hr = max(multiple, tile * scale // multiple * multiple)
    return TiledDenoiser(denoiser, tile_hr, overlap=tile_hr // 4, batch=batch)
