import numpy as np
import pytest
import torch
from PIL import Image

from sr3.config import load_config
from sr3.errors import SR3Error
from sr3.imaging import to_tensor
from sr3.models.unet import UNet
from sr3.pipeline import SR3Pipeline

from conftest import photo


@pytest.fixture(scope="module")
def pipe():
    torch.manual_seed(0)
    net = UNet(load_config("tiny").model)
    for p in net.parameters():  # an untrained but non-trivial network: the zero-init output layer too
        p.data.add_(0.02 * torch.randn_like(p))
    return SR3Pipeline(net, load_config("tiny"))


def test_output_is_scale_times_input_for_any_size(pipe):
    lr = photo("chelsea").crop((0, 0, 13, 21))  # sizes not multiples of the U-Net factor
    out = pipe.upscale(lr, steps=2)
    assert out.size == (13 * 4, 21 * 4)


def test_same_seed_same_image_whatever_the_batch(pipe):
    crops = [photo("coffee").crop((i * 20, 0, i * 20 + 16, 16)) for i in range(3)]
    lr = torch.stack([to_tensor(c) for c in crops])
    batch = pipe.super_resolve(lr, [5, 6, 7], pipe.sampler_config(steps=3))
    single = pipe.super_resolve(lr[1:2], [6], pipe.sampler_config(steps=3))
    # convolution kernels may sum in a batch-dependent order: equal up to float rounding, far below 1/255
    assert (batch[1] - single[0]).abs().max() < 1e-4
    alone = pipe.upscale(crops[1], steps=3, seed=6)
    again = pipe.upscale(crops[1], steps=3, seed=6)
    assert np.array_equal(np.asarray(alone), np.asarray(again))
    other = pipe.upscale(crops[1], steps=3, seed=8)
    assert not np.array_equal(np.asarray(alone), np.asarray(other))


def test_gray_input_is_upscaled_as_rgb(pipe):
    out = pipe.upscale(photo("astronaut").convert("L").resize((16, 16)), steps=1)
    assert out.mode == "RGB" and out.size == (64, 64)


def test_bad_requests(pipe):
    with pytest.raises(SR3Error, match="unknown sampler 'nope'"):
        pipe.upscale(photo().resize((16, 16)), sampler="nope")
    with pytest.raises(SR3Error, match="too small"):
        pipe.upscale(Image.new("RGB", (1, 5)))
