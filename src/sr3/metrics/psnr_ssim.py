"""PSNR and SSIM as SR papers report them (BasicSR's convention).

Images are arrays [H, W] or [H, W, C] (uint8, or float on the [0, 255] scale), computed in float64, with
`crop_border` pixels removed on every side and, with `y_channel=True`, on the BT.601 luma of RGB images.
"""

from __future__ import annotations

import math

import numpy as np

from sr3.errors import SR3Error

# Wang et al. (2004): an 11x11 Gaussian window of sigma 1.5, C1 = (K1 L)^2, C2 = (K2 L)^2 with L = 255.
_WINDOW, _SIGMA = 11, 1.5
_C1, _C2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2


def _prepare(img: np.ndarray, ref: np.ndarray, crop_border: int, y_channel: bool) -> tuple[np.ndarray, np.ndarray]:
    """Both images as float64 [H, W, C], border cropped and, if asked, reduced to their Y channel."""
    img, ref = np.asarray(img, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    if img.shape != ref.shape:
        raise SR3Error(f"image shape {img.shape} differs from reference shape {ref.shape}")
    if img.ndim not in (2, 3):
        raise SR3Error(f"expected an image [H, W] or [H, W, C], got shape {img.shape}")
    if crop_border < 0 or 2 * crop_border >= min(img.shape[:2]):
        raise SR3Error(f"crop_border {crop_border} does not fit an image of shape {img.shape}")
    if crop_border:
        img = img[crop_border:-crop_border, crop_border:-crop_border]
        ref = ref[crop_border:-crop_border, crop_border:-crop_border]
    if y_channel:
        img, ref = rgb_to_y(img), rgb_to_y(ref)
    if img.ndim == 2:
        img, ref = img[:, :, None], ref[:, :, None]
    return img, ref


def psnr(img: np.ndarray, ref: np.ndarray, crop_border: int = 0, y_channel: bool = False) -> float:
    """Peak signal-to-noise ratio in dB, 10 log10(255^2 / MSE); infinite for identical images."""
    img, ref = _prepare(img, ref, crop_border, y_channel)
    mse = np.mean((img - ref) ** 2)
    return float("inf") if mse == 0 else 10 * math.log10(255.0**2 / mse)


def _gaussian_window() -> np.ndarray:
    """The 1-D factor of SSIM's separable Gaussian window, summing to 1."""
    t = np.arange(_WINDOW) - (_WINDOW - 1) / 2
    taps = np.exp(-(t**2) / (2 * _SIGMA**2))
    return taps / taps.sum()


def _filter_valid(x: np.ndarray, taps: np.ndarray) -> np.ndarray:
    """Separable 'valid' filtering of x [H, W, C] (no padding): the output shrinks by len(taps) - 1 per axis."""
    n = len(taps)
    rows = sum(w * x[k : x.shape[0] - n + 1 + k] for k, w in enumerate(taps))
    return sum(w * rows[:, k : x.shape[1] - n + 1 + k] for k, w in enumerate(taps))


def ssim(img: np.ndarray, ref: np.ndarray, crop_border: int = 0, y_channel: bool = False) -> float:
    """Structural similarity (Wang et al., 2004): the SSIM map's mean over windows inside the image, over channels."""
    img, ref = _prepare(img, ref, crop_border, y_channel)
    if min(img.shape[:2]) < _WINDOW:
        raise SR3Error(f"SSIM needs images of at least {_WINDOW}x{_WINDOW} after cropping, got {img.shape[:2]}")
    taps = _gaussian_window()
    mu_x, mu_y = _filter_valid(img, taps), _filter_valid(ref, taps)
    var_x = _filter_valid(img * img, taps) - mu_x**2
    var_y = _filter_valid(ref * ref, taps) - mu_y**2
    cov = _filter_valid(img * ref, taps) - mu_x * mu_y
    ssim_map = ((2 * mu_x * mu_y + _C1) * (2 * cov + _C2)) / ((mu_x**2 + mu_y**2 + _C1) * (var_x + var_y + _C2))
    return float(ssim_map.mean(axis=(0, 1)).mean())


def rgb_to_y(rgb: np.ndarray) -> np.ndarray:
    """Luma Y of ITU-R BT.601 as MATLAB's `rgb2ycbcr`: RGB [H, W, 3] in [0, 255] -> Y [H, W] in [16, 235], float64."""
    rgb = np.asarray(rgb, dtype=np.float64)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"rgb_to_y expects an array [H, W, 3], got shape {rgb.shape}")
    return rgb @ np.array([65.481, 128.553, 24.966]) / 255.0 + 16.0
