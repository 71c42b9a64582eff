import numpy as np
import torch

from sr3.config import load_config
from sr3.diffusion import Cond
from sr3.tiling import TiledDenoiser, ramp, tile_starts

from conftest import photo, untrained_pipeline


def test_tiles_cover_the_image_with_the_requested_overlap():
    for length, tile, overlap in [(100, 32, 8), (64, 32, 8), (33, 32, 8), (257, 64, 16)]:
        starts = tile_starts(length, tile, overlap)
        assert starts[0] == 0 and starts[-1] + tile == length
        assert all(b - a <= tile - overlap for a, b in zip(starts, starts[1:]))
    assert tile_starts(20, 32, 8) == [0]
    assert ramp(16, 4).min() > 0 and ramp(16, 4).max() == 1


def test_tiling_a_pointwise_denoiser_changes_nothing():
    """With a denoiser that acts per pixel, blended tiles must reproduce the whole-image result exactly."""
    def pointwise(x, sigma, cond):
        s = sigma.view(-1, 1, 1, 1)
        return (x + cond.image) / (1 + s**2)

    x, image = torch.randn(2, 3, 40, 56), torch.randn(2, 3, 40, 56)
    sigma = torch.tensor([0.5, 2.0])
    whole = pointwise(x, sigma, Cond(image=image))
    tiled = TiledDenoiser(pointwise, tile=16, overlap=4, batch=3)(x, sigma, Cond(image=image))
    assert torch.allclose(whole, tiled, atol=1e-6)


def _seam_ratio(img: np.ndarray, borders: list[int]) -> float:
    """Mean squared horizontal gradient on the columns around tile borders, over its mean elsewhere."""
    grad = np.diff(img.astype(np.float64).mean(axis=2), axis=1) ** 2
    at = sorted({c for b in borders for c in range(b - 2, b + 2) if 0 <= c < grad.shape[1]})
    rest = [c for c in range(grad.shape[1]) if c not in at]
    return grad[:, at].mean() / grad[:, rest].mean()


def test_tiled_upscale_has_no_seams():
    pipe = untrained_pipeline(load_config("tiny"))
    lr = photo("astronaut").resize((48, 48))
    whole = np.asarray(pipe.upscale(lr, steps=4, seed=1))
    tiled = np.asarray(pipe.upscale(lr, steps=4, seed=1, tile=16))  # 64-px tiles on a 192-px output
    assert tiled.shape == whole.shape == (192, 192, 3)
    starts = tile_starts(192, 64, 16)
    borders = [s for s in starts[1:]] + [s + 64 for s in starts[:-1]]  # where one tile's window begins or ends
    assert _seam_ratio(tiled, borders) < 1.3
    # tiles see less context than the whole image, but the result stays close to it
    assert np.abs(tiled.astype(int) - whole.astype(int)).mean() < 12


def test_the_models_sampling_tile_is_the_default_and_zero_means_whole_images():
    cfg = load_config("tiny", ["sampler.tile=16"])
    pipe = untrained_pipeline(cfg)
    lr = photo("astronaut").resize((48, 48))
    default = np.asarray(pipe.upscale(lr, steps=3, seed=2))
    assert np.array_equal(default, np.asarray(pipe.upscale(lr, steps=3, seed=2, tile=16)))
    whole = np.asarray(pipe.upscale(lr, steps=3, seed=2, tile=0))
    assert not np.array_equal(default, whole)
    assert np.array_equal(whole, np.asarray(untrained_pipeline(load_config("tiny")).upscale(lr, steps=3, seed=2)))
