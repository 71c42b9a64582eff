"""SR3's consistency metric: how well the super-resolved output, downsampled again, reproduces its input."""

from __future__ import annotations

import torch

from sr3.errors import SR3Error
from sr3.resize import imresize


def consistency(sr: torch.Tensor, lr: torch.Tensor, scale: int) -> float:
    """MSE between `imresize(sr, 1/scale)` and `lr`, both mapped from [-1, 1] to [0, 1] (Saharia et al., 2021).

    sr: output [C, H, W] or [B, C, H, W] in [-1, 1]; lr: input [C, H/scale, W/scale] or batched, in [-1, 1].
    Batches give the mean over all samples. The MSE on the [0, 1] scale is a quarter of that on [-1, 1].
    """
    expected = (*lr.shape[:-2], lr.shape[-2] * scale, lr.shape[-1] * scale)
    if tuple(sr.shape) != expected:
        raise SR3Error(f"sr shape {tuple(sr.shape)} is not lr shape {tuple(lr.shape)} upscaled by {scale}")
    dtype = torch.promote_types(torch.promote_types(sr.dtype, lr.dtype), torch.float32)
    sr01, lr01 = (sr.to(dtype) + 1) / 2, (lr.to(dtype) + 1) / 2
    return torch.mean((imresize(sr01, scale=1 / scale) - lr01) ** 2).item()
