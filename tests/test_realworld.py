"""The real-world degradation model: exact identity, JPEG blocks, the drawn noise level, kernels, determinism."""

import math

import pytest
import torch

from sr3.config import DataConfig
from sr3.data.degradations import DEGRADATIONS, bicubic
from sr3.data.pairs import SRPairs
from sr3.noise import seeded_generator
from sr3.data.realworld import KERNELS, RealWorldConfig, StageConfig, blur_kernel, degrade_real, jpeg
from sr3.imaging import to_tensor
from sr3.resize import gaussian_kernel1d, imresize

from conftest import photo

OFF = StageConfig(blur_prob=0, resize_probs=(0, 0, 1), noise_prob=0, jpeg_prob=0)


def _hr(name="coffee", size=(96, 64)):
    return imresize(to_tensor(photo(name)), size=size[::-1]).clamp(-1, 1)


def test_identity_settings_give_the_bicubic_pair_exactly():
    cfg = RealWorldConfig(first=OFF, second_prob=0, final_modes=("matlab",), final_jpeg_prob=0)
    hr = _hr()
    assert torch.equal(degrade_real(hr, 4, seeded_generator(1), cfg), bicubic(hr, 4, seeded_generator(1)))


def test_the_default_pipeline_is_a_deterministic_function_of_the_generator():
    hr = _hr()
    trace = []
    a = degrade_real(hr, 4, seeded_generator(7), trace=trace)
    assert a.shape == (3, 16, 24) and torch.equal(a, degrade_real(hr, 4, seeded_generator(7)))
    assert not torch.equal(a, degrade_real(hr, 4, seeded_generator(8)))
    assert torch.equal(a, ((a + 1) * 127.5).round() / 127.5 - 1)  # 8-bit, as a saved file
    assert trace[-1]["op"] in ("resize", "jpeg") and any(t["op"] == "blur" for t in trace)
    # over many draws every kind of operation and kernel occurs
    ops, kernels = set(), set()
    for seed in range(40):
        trace = []
        degrade_real(_hr(size=(32, 32)), 4, seeded_generator(seed), trace=trace)
        ops |= {t["op"] + (":" + t["noise"] if t["op"] == "noise" else "") for t in trace}
        kernels |= {t["kernel"] for t in trace if t["op"] == "blur"}
    assert ops == {"blur", "resize", "noise:gaussian", "noise:poisson", "jpeg"}
    assert kernels == set(KERNELS)


def test_jpeg_leaves_8x8_block_boundaries():
    x = _hr("astronaut", (128, 128))
    out = jpeg(x, 10)
    steps = (out[:, :, 1:] - out[:, :, :-1]).abs().mean(dim=(0, 1))  # column differences, index i: i | i+1
    steps_hr = (x[:, :, 1:] - x[:, :, :-1]).abs().mean(dim=(0, 1))
    excess = steps - steps_hr
    boundary = excess[7::8].mean()
    inside = torch.cat([excess[i::8] for i in range(7)]).mean()
    assert boundary > inside + 0.01
    assert (jpeg(x, 95) - x).abs().mean() < (out - x).abs().mean() / 2  # quality matters


@pytest.mark.parametrize("grey", [0.0, 1.0])
def test_gaussian_noise_has_the_drawn_sigma(grey):
    stage = StageConfig(blur_prob=0, resize_probs=(0, 0, 1), gaussian_prob=1, noise_sigma=(5, 30),
                        grey_noise_prob=grey, jpeg_prob=0)
    cfg = RealWorldConfig(first=stage, second_prob=0, final_modes=("area",), final_jpeg_prob=0)
    flat = torch.zeros(3, 256, 256)
    trace = []
    out = degrade_real(flat, 1, seeded_generator(3), cfg, trace)
    (noise,) = [t for t in trace if t["op"] == "noise"]
    measured = (out * 127.5).std().item()
    assert measured == pytest.approx(noise["sigma"], rel=0.03)
    channel_spread = (out[0] - out[1]).abs().mean().item()
    assert (channel_spread < 1e-6) == bool(grey)


def test_kernels_are_normalised_and_shaped_as_named():
    gauss = blur_kernel("iso", 11, 1.5, 1.5, 0.0, 1.0)
    g1 = gaussian_kernel1d(11, 1.5)
    torch.testing.assert_close(gauss, torch.outer(g1, g1), atol=1e-6, rtol=1e-5)
    for kind in KERNELS:
        k = blur_kernel(kind, 15, 2.0, 0.7, 0.3, 1.5)
        assert k.sum().item() == pytest.approx(1.0, abs=1e-5) and (k >= 0).all()
    # anisotropic: spread along the rotated long axis exceeds the short one
    k = blur_kernel("aniso", 21, 3.0, 0.8, math.pi / 2, 1.0)
    r = torch.arange(21) - 10.0
    var_rows = (k.sum(1) * r**2).sum()
    var_cols = (k.sum(0) * r**2).sum()
    assert var_rows > 4 * var_cols  # rotated 90 degrees: long along y
    # plateau has heavier tails than the Gaussian of the same sigma
    plateau, gauss = blur_kernel("plateau_iso", 21, 1.5, 1.5, 0, 1.0), blur_kernel("iso", 21, 1.5, 1.5, 0, 1)
    assert plateau[0, 10] > 10 * gauss[0, 10]


def test_training_pairs_use_the_registered_pipeline_and_stay_resumable(photo_dir):
    assert "realworld" in DEGRADATIONS
    data = SRPairs(photo_dir, DataConfig(degradation="realworld", scale=4, hr_size=32), seed=0)
    a, b = data[5], data[5]
    assert a["lr"].shape == (3, 8, 8) and torch.equal(a["lr"], b["lr"]) and torch.equal(a["hr"], b["hr"])
    assert not torch.equal(a["lr"], data[6]["lr"])
