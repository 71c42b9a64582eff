"""Tests for sr3.metrics: PSNR and SSIM against hand computations and scikit-image; SR3 consistency."""

import math

import numpy as np
import pytest
import torch

from sr3.errors import SR3Error
from skimage import data
from skimage.filters import gaussian
from skimage.metrics import structural_similarity

from sr3.metrics.psnr_ssim import rgb_to_y

from sr3.resize import imresize
from sr3.metrics.consistency import consistency
from sr3.metrics.psnr_ssim import psnr, ssim


@pytest.fixture(scope="module")
def astronaut_pair() -> tuple[np.ndarray, np.ndarray]:
    """A real photo and a blurred, noisy 8-bit copy of it."""
    ref = data.astronaut()[:256, 128:384]
    rng = np.random.default_rng(0)
    blurred = gaussian(ref.astype(np.float64), sigma=1.0, channel_axis=-1, preserve_range=True)
    noisy = np.clip(np.round(blurred + rng.normal(0, 8, ref.shape)), 0, 255).astype(np.uint8)
    return noisy, ref


def test_psnr_identical_is_infinite(astronaut_pair):
    _, ref = astronaut_pair
    assert psnr(ref, ref.copy()) == math.inf


def test_psnr_matches_hand_computation():
    ref = np.zeros((4, 4), dtype=np.uint8)
    img = ref.copy()
    img[1, 2] = 10
    mse = 10**2 / 16
    assert psnr(img, ref) == pytest.approx(10 * math.log10(255**2 / mse))


def test_psnr_y_channel_of_uniform_offset():
    ref = np.full((8, 8, 3), 100.0)
    # Adding d to R, G and B adds d * 219 / 255 to Y (the BT.601 weights sum to 219 / 255).
    mse = (6 * 219 / 255) ** 2
    assert psnr(ref + 6, ref, y_channel=True) == pytest.approx(10 * math.log10(255**2 / mse))
    assert psnr(ref + 6, ref) == pytest.approx(10 * math.log10(255**2 / 36))


def test_ssim_identical_is_one(astronaut_pair):
    _, ref = astronaut_pair
    assert ssim(ref, ref) == pytest.approx(1.0, abs=1e-12)


def _skimage_ssim(img: np.ndarray, ref: np.ndarray, channel_axis: int | None) -> float:
    # skimage filters with padding ('same' size) and then averages the map with a (11 - 1) / 2 = 5 pixel border
    # cropped: exactly the windows that fit inside the image, i.e. the mean of our 'valid' SSIM map.
    return structural_similarity(
        img.astype(np.float64), ref.astype(np.float64), gaussian_weights=True, sigma=1.5,
        use_sample_covariance=False, data_range=255, channel_axis=channel_axis,
    )


def test_ssim_matches_skimage_rgb(astronaut_pair):
    img, ref = astronaut_pair
    ours = ssim(img, ref)
    assert 0.3 < ours < 0.95
    assert ours == pytest.approx(_skimage_ssim(img, ref, channel_axis=-1), abs=1e-9)


def test_ssim_matches_skimage_y_channel_and_gray(astronaut_pair):
    img, ref = astronaut_pair
    expected = _skimage_ssim(rgb_to_y(img), rgb_to_y(ref), channel_axis=None)
    assert ssim(img, ref, y_channel=True) == pytest.approx(expected, abs=1e-9)
    camera = data.camera()[:128, :128]
    blurred = gaussian(camera.astype(np.float64), sigma=1.5, preserve_range=True)
    assert ssim(blurred, camera) == pytest.approx(_skimage_ssim(blurred, camera, channel_axis=None), abs=1e-9)


@pytest.mark.parametrize("metric", [psnr, ssim])
def test_crop_border_ignores_border_pixels(astronaut_pair, metric):
    img, ref = astronaut_pair
    changed = img.copy()
    changed[:4] = 0
    changed[:, -4:] = 255
    assert metric(changed, ref, crop_border=4) == metric(img, ref, crop_border=4)
    assert metric(changed, ref, crop_border=3) != metric(img, ref, crop_border=3)


@pytest.mark.parametrize("metric", [psnr, ssim])
def test_shape_mismatch_names_both_shapes(metric):
    with pytest.raises(SR3Error, match=r"\(16, 16, 3\).*\(16, 15, 3\)"):
        metric(np.zeros((16, 16, 3)), np.zeros((16, 15, 3)))


def test_consistency_zero_for_exact_downsample():
    sr = torch.rand(2, 3, 32, 24) * 2 - 1
    lr = imresize(sr, scale=1 / 4)
    assert consistency(sr, lr, 4) == pytest.approx(0.0, abs=1e-12)
    assert consistency(sr[0], lr[0], 4) == pytest.approx(0.0, abs=1e-12)


def test_consistency_positive_and_batch_mean():
    sr = torch.rand(2, 3, 32, 24, dtype=torch.float64) * 2 - 1
    lr = imresize(sr, scale=1 / 4) + 0.2  # +0.2 on [-1, 1] is +0.1 on [0, 1]: an MSE of 0.01
    assert consistency(sr, lr, 4) == pytest.approx(0.01)
    lr[1] += 0.2
    per_sample = [consistency(sr[b], lr[b], 4) for b in range(2)]
    assert per_sample == pytest.approx([0.01, 0.04])
    assert consistency(sr, lr, 4) == pytest.approx(np.mean(per_sample))


def test_consistency_shape_mismatch():
    with pytest.raises(SR3Error, match="upscaled by 4"):
        consistency(torch.zeros(3, 32, 32), torch.zeros(3, 16, 16), 4)
