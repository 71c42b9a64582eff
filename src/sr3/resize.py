"""Resampling on tensors in [-1, 1]: MATLAB-compatible bicubic resize, Gaussian blur, padding and cropping to
multiples, and the low-frequency (colour) fix that pulls an output onto its LR input.

SR test sets make their low-resolution inputs with MATLAB's antialiased `imresize(..., 'bicubic')`; PIL's BICUBIC
differs from it by many grey levels, so `imresize` reimplements MATLAB's kernel, boundary rule and order of axes.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from PIL import Image

from sr3.errors import SR3Error
from sr3.imaging import to_pil, to_tensor


def _cubic(x: torch.Tensor) -> torch.Tensor:
    """Keys' cubic convolution kernel with a = -0.5, the kernel of MATLAB's 'bicubic'."""
    ax = x.abs()
    ax2, ax3 = ax**2, ax**3
    near = (1.5 * ax3 - 2.5 * ax2 + 1) * (ax <= 1)
    far = (-0.5 * ax3 + 2.5 * ax2 - 4 * ax + 2) * ((ax > 1) & (ax <= 2))
    return near + far


def _resize_matrix(in_length: int, out_length: int, scale: float) -> torch.Tensor:
    """The [out, in] float64 matrix of MATLAB's `contributions` for one axis: antialiased, mirrored at the edges.

    Dense rather than banded: one matmul per axis runs on any device and dtype, and image sides keep it small.
    """
    # Antialiasing: when shrinking, stretch the kernel by 1/scale so it low-passes to the output's Nyquist rate.
    stretch = scale if scale < 1 else 1.0
    width = 4.0 / stretch
    x = torch.arange(1, out_length + 1, dtype=torch.float64)  # 1-based output coordinates, as in MATLAB
    u = x / scale + 0.5 * (1 - 1 / scale)  # the input coordinate each output pixel centre maps to
    left = torch.floor(u - width / 2)
    taps = math.ceil(width) + 2
    indices = left[:, None] + torch.arange(taps, dtype=torch.float64)
    weights = stretch * _cubic(stretch * (u[:, None] - indices))
    weights = weights / weights.sum(dim=1, keepdim=True)
    # Half-sample symmetric boundary: index into [1..n, n..1] cyclically (0-based below).
    folded = torch.remainder(indices.long() - 1, 2 * in_length)
    folded = torch.where(folded < in_length, folded, 2 * in_length - 1 - folded)
    rows = torch.arange(out_length)[:, None].expand_as(folded)
    matrix = torch.zeros(out_length, in_length, dtype=torch.float64)
    return matrix.index_put_((rows, folded), weights, accumulate=True)


def imresize(
    x: torch.Tensor, scale: float | None = None, size: tuple[int, int] | None = None
) -> torch.Tensor:
    """Resize like MATLAB's `imresize(x, scale or size, 'bicubic')`, antialiased when shrinking.

    x: float tensor [..., H, W] (e.g. [B, C, H, W]), any value range, device and dtype; gradients pass through.
    scale: one factor for both axes; the output is ceil(scale * H) x ceil(scale * W), as in MATLAB.
    size: the output (height, width) instead. Give exactly one of `scale` and `size`.
    """
    if (scale is None) == (size is None):
        raise ValueError("give exactly one of scale and size")
    if not x.is_floating_point() or x.ndim < 2:
        raise ValueError(f"imresize expects a float tensor [..., H, W], got {x.dtype} of shape {tuple(x.shape)}")
    in_h, in_w = x.shape[-2:]
    if scale is not None:
        if scale <= 0:
            raise ValueError(f"scale must be positive, got {scale}")
        scales = (float(scale), float(scale))
        out_h, out_w = math.ceil(scale * in_h), math.ceil(scale * in_w)
    else:
        out_h, out_w = size
        if out_h < 1 or out_w < 1:
            raise ValueError(f"size must be positive, got {size}")
        scales = (out_h / in_h, out_w / in_w)
    # MATLAB resizes the axis with the smaller scale first (height on a tie); the order changes the rounding.
    for axis in sorted((0, 1), key=lambda a: scales[a]):
        if axis == 0:
            matrix = _resize_matrix(in_h, out_h, scales[0]).to(device=x.device, dtype=x.dtype)
            x = matrix @ x
        else:
            matrix = _resize_matrix(in_w, out_w, scales[1]).to(device=x.device, dtype=x.dtype)
            x = x @ matrix.T
    return x


def resize_plane(img: Image.Image, size: tuple[int, int]) -> Image.Image:
    """Resize an 8-bit PIL image to (width, height) with the MATLAB-compatible bicubic."""
    x = to_tensor(img)
    return to_pil(imresize(x, size=(size[1], size[0])).clamp(-1, 1))


def pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """x [B, C, H, W] padded at the bottom and right to multiples of `multiple`: mirrored, or repeated where
    the image is too small to mirror. Crop the result of a size-preserving network back to [..., :H, :W]."""
    h, w = x.shape[-2:]
    pad_h, pad_w = -h % multiple, -w % multiple
    if not (pad_h or pad_w):
        return x
    mode = "reflect" if pad_h < h and pad_w < w else "replicate"
    return F.pad(x, (0, pad_w, 0, pad_h), mode=mode)


def mod_crop(img: Image.Image, multiple: int) -> Image.Image:
    """Crop the bottom and right edges so both sides are multiples of `multiple` (SR sets' "GTmod" crop)."""
    if multiple < 1:
        raise ValueError(f"multiple must be positive, got {multiple}")
    width, height = img.size
    if width < multiple or height < multiple:
        raise SR3Error(f"image of size {width}x{height} is smaller than the crop multiple {multiple}")
    return img.crop((0, 0, width - width % multiple, height - height % multiple))


def gaussian_kernel1d(kernel_size: int, sigma: float | torch.Tensor) -> torch.Tensor:
    """Normalised 1-D Gaussian taps: shape [kernel_size] for a float sigma, [B, kernel_size] for a sigma tensor [B].

    A tensor sigma of 0 gives the identity kernel (no blur), which lets a batch mix blurred and clean samples.
    """
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be odd and positive, got {kernel_size}")
    if isinstance(sigma, torch.Tensor):
        device, dtype = sigma.device, torch.float64 if sigma.dtype == torch.float64 else torch.float32
        sigma = sigma.to(dtype).clamp_min(1e-12)[..., None]
    else:
        if sigma <= 0:
            raise ValueError(f"sigma must be positive, got {sigma}")
        device, dtype = None, torch.float32
    t = torch.arange(kernel_size, device=device, dtype=dtype) - (kernel_size - 1) / 2
    taps = torch.exp(-(t**2) / (2 * sigma**2))
    return taps / taps.sum(dim=-1, keepdim=True)


def gaussian_blur(x: torch.Tensor, sigma: float | torch.Tensor, kernel_size: int) -> torch.Tensor:
    """Separable Gaussian blur of x [..., H, W] with reflect padding; the output has x's shape.

    sigma: one float for all images, or a tensor [B] giving each sample x[b] its own blur (CDM's augmentation).
    """
    per_sample = isinstance(sigma, torch.Tensor) and sigma.ndim > 0
    if per_sample and (sigma.ndim != 1 or x.ndim < 3 or sigma.shape[0] != x.shape[0]):
        raise ValueError(f"sigma of shape {tuple(sigma.shape)} does not match a batch of shape {tuple(x.shape)}")
    height, width = x.shape[-2:]
    pad = kernel_size // 2
    if pad >= height or pad >= width:
        raise ValueError(f"kernel_size {kernel_size} is too large for an image of size {height}x{width}")
    taps = gaussian_kernel1d(kernel_size, sigma).to(device=x.device, dtype=x.dtype).reshape(-1, kernel_size)
    # Each sample's planes form a group of a depthwise convolution, all groups sharing their sample's taps.
    groups = x.numel() // (height * width)
    taps = taps.repeat_interleave(groups // taps.shape[0], dim=0)
    planes = F.pad(x.reshape(1, groups, height, width), (pad, pad, pad, pad), mode="reflect")
    planes = F.conv2d(planes, taps[:, None, :, None], groups=groups)
    planes = F.conv2d(planes, taps[:, None, None, :], groups=groups)
    return planes.reshape(x.shape)


def low_frequency_fix(sr: torch.Tensor, lr: torch.Tensor, scale: int) -> torch.Tensor:
    """Match the output's low frequencies (its colours) to the LR input: add back the upsampled LR residual.

    sr + up(lr - down(sr)) leaves detail above the LR band untouched while pulling the downsampled output
    onto the input, against the hue shifts diffusion SR can drift into.
    """
    return sr + imresize(lr - imresize(sr, scale=1 / scale), scale=scale)
