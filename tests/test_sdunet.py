"""Tests for the U-Net's options (`model.options`): pixel-unshuffle stem, windowed GroupNorm, windowed attention,
each independent, and that with windows its output at a pixel depends only on a neighbourhood, never on the image
size. (The options were once a separate `sdunet` network.)"""

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from sr3.config import ModelConfig, load_config
from sr3.errors import SR3Error
from sr3.models import build_network, network_options
from torch import nn

from sr3.models.layers import Attention, WindowGroupNorm, box_counts, box_mean, box_sum
from sr3.models.unet import UNet, UNetOptions, downscale_factor

WINDOWS = {"patch": 2, "norm": "window", "norm_window": 4, "attn_window": 4}
TINY = ModelConfig(
    image_size=32,
    in_channels=6,
    base_channels=16,
    channel_mults=[1, 2],
    num_res_blocks=1,
    attn_resolutions=[8],
    attn_head_channels=16,
    norm_groups=8,
    options=WINDOWS,
)


IDENTITY = lambda c: nn.Identity()  # noqa: E731  (attention tests compare crops: no statistic may pool over them)


pytestmark = pytest.mark.usefixtures("one_thread")


def _net(**changes) -> torch.nn.Module:
    """A tiny network with its zero-initialised output conv given random weights, so outputs are nonzero."""
    torch.manual_seed(0)
    net = build_network(dataclasses.replace(TINY, **changes)).eval()
    with torch.no_grad():
        net.conv_out.weight.normal_(0, 0.05)
        net.conv_out.bias.normal_(0, 0.05)
    return net


def _randn(*shape, seed=1):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def test_output_has_the_input_size_and_the_stem_sets_the_multiple():
    net = _net()
    assert net.downscale_factor == 4  # patch 2 times one downsampling
    out = net(_randn(2, 6, 24, 40), torch.tensor([0.3, 0.9]))
    assert out.shape == (2, 3, 24, 40) and torch.isfinite(out).all()
    with pytest.raises(ValueError, match="multiple of 4"):
        net(_randn(1, 6, 22, 24), torch.tensor([0.5]))


def test_output_is_zero_at_init_and_every_parameter_learns():
    torch.manual_seed(0)
    net = build_network(TINY)
    x, level = _randn(2, 6, 16, 16), torch.tensor([0.2, 0.7])
    assert net(x, level).abs().max() == 0
    with torch.no_grad():
        net.conv_out.weight.normal_(0, 0.05)
    net(x, level).square().mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.parameters())


def test_box_mean_averages_the_square_clipped_to_the_image():
    x = _randn(2, 3, 7, 9)
    out = box_mean(x, 2)
    torch.testing.assert_close(out[..., 3, 4], x[..., 1:6, 2:7].mean(dim=(-2, -1)))
    torch.testing.assert_close(out[..., 0, 0], x[..., :3, :3].mean(dim=(-2, -1)))  # clipped at the corner
    torch.testing.assert_close(out[..., 6, 8], x[..., 4:, 6:].mean(dim=(-2, -1)))


def test_window_group_norm_is_group_norm_within_a_window_and_local_beyond():
    x = _randn(2, 16, 9, 13)
    gn = nn.GroupNorm(4, 16, eps=1e-6)
    with torch.no_grad():
        gn.weight.uniform_(0.5, 1.5)
        gn.bias.uniform_(-0.5, 0.5)
    wide = WindowGroupNorm(16, 4, window=40)
    wide.load_state_dict(gn.state_dict())
    torch.testing.assert_close(wide(x), gn(x), atol=1e-5, rtol=1e-5)
    # a window of 4 (radius 2): pixel (4, 6) normalised by the statistics of its 5x5 square alone
    local = WindowGroupNorm(16, 4, window=4)
    xg = x.reshape(2, 4, 4, 9, 13)
    square = xg[..., 2:7, 4:9]
    mean, var = square.mean(dim=(2, 3, 4)), square.var(dim=(2, 3, 4), unbiased=False)
    expected = (xg[..., 4, 6] - mean[..., None]) / (var[..., None] + 1e-6).sqrt()
    torch.testing.assert_close(local(x)[..., 4, 6], expected.reshape(2, 16), atol=1e-5, rtol=1e-5)
    # so a crop normalised alone matches the whole image's normalisation away from the crop's border
    torch.testing.assert_close(local(x[..., :, 1:12])[..., 2:-2, 3:-3], local(x)[..., 2:-2, 4:-4], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(gn(x[..., :, 1:12])[..., 2:-2, 3:-3], gn(x)[..., 2:-2, 4:-4], atol=1e-3)


def _attention_pair():
    """Attention in windows of 4 and the same weights attending globally."""
    torch.manual_seed(0)
    windowed = Attention(16, 8, IDENTITY, window=4).eval()
    full = Attention(16, 8, IDENTITY, window=0).eval()
    full.load_state_dict(windowed.state_dict())
    return windowed, full


def test_windowed_attention_is_global_attention_within_each_window():
    windowed, full = _attention_pair()
    x = _randn(2, 16, 8, 12)
    out = windowed(x)
    for top in (0, 4):
        for left in (0, 4, 8):
            crop = x[..., top : top + 4, left : left + 4]
            torch.testing.assert_close(out[..., top : top + 4, left : left + 4], full(crop), atol=1e-5, rtol=1e-5)
    small = x[..., :4, :4]  # no larger than a window: plain global attention
    torch.testing.assert_close(windowed(small), full(small))


def test_ragged_windows_mask_their_padding():
    """A 6x7 map in windows of 4: the edge windows are partial and attend only to their real positions."""
    windowed, full = _attention_pair()
    x = _randn(1, 16, 6, 7)
    out = windowed(x)
    assert out.shape == x.shape
    torch.testing.assert_close(out[..., 4:, 4:], full(x[..., 4:, 4:]), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out[..., :4, 4:], full(x[..., :4, 4:]), atol=1e-5, rtol=1e-5)


def test_output_depends_on_a_neighbourhood_only_not_on_the_image_size():
    """What makes a crop-trained model sample a whole photo as it trained: changing pixels far away (beyond
    the receptive field, in other attention and norm windows) leaves the output unchanged. SR3's U-Net, whose
    GroupNorm pools over the whole image, changes everywhere."""
    x = _randn(1, 6, 32, 192)
    far = x.clone()
    far[..., 128:] = _randn(1, 6, 32, 64, seed=2)
    level = torch.tensor([0.5])
    with torch.no_grad():
        net = _net()
        torch.testing.assert_close(net(x, level)[..., :16], net(far, level)[..., :16])
        unet = _net(options={}, attn_resolutions=[])
        assert (unet(x, level)[..., :16] - unet(far, level)[..., :16]).abs().max() > 1e-4


def test_stem_norm_and_attention_windows_are_independent_options():
    stem = _net(options={"patch": 2})
    assert stem.downscale_factor == 4 and isinstance(stem.norm_out, nn.GroupNorm)
    assert stem.conv_in.in_channels == 6 * 4 and stem.mid[1].window == 0
    norms = _net(options={"norm": "window", "norm_window": 4})
    assert norms.downscale_factor == 2 and norms.conv_in.in_channels == 6 and isinstance(norms.norm_out, WindowGroupNorm)
    attn = _net(options={"attn_window": 4})
    assert attn.mid[1].window == 4 and isinstance(attn.mid[1].norm, nn.GroupNorm)
    for net in (stem, norms, attn):
        assert net(_randn(1, 6, 16, 24), torch.tensor([0.5])).shape == (1, 3, 16, 24)
    assert downscale_factor(TINY) == 4 and network_options(TINY) == UNetOptions(**WINDOWS)


@pytest.mark.parametrize(
    "options, message",
    [
        ({"patchh": 2}, r"unknown config key 'model.options.patchh'; valid keys: attn_window, norm, norm_window, patch"),
        ({"patch": 0}, r"'model.options.patch' must be in \[1, 16\]; got 0"),
        ({"attn_window": -1}, r"'model.options.attn_window' must be in \[0, inf\]"),
        ({"patch": "two"}, r"'model.options.patch' must be int"),
        ({"norm": "layer"}, "unknown model.options.norm 'layer'; choose from: group, window"),
        ({"norm": "window"}, "norm=window needs model.options.norm_window >= 2"),
        ({"norm_window": 8}, "norm_window is the window of norm=window, not of norm=group"),
    ],
)
def test_options_are_checked_when_the_network_is_built(options, message):
    cfg = dataclasses.replace(TINY, options=options)
    for check in (network_options, build_network, UNet):
        with pytest.raises(SR3Error, match=message):
            check(cfg)


def test_an_unknown_network_lists_the_known_ones():
    with pytest.raises(SR3Error, match="unknown network model.arch 'sdunet'; choose from: unet"):
        build_network(dataclasses.replace(TINY, arch="sdunet"))


def test_box_counts_are_built_once_per_size_and_serve_training_after_inference():
    box_counts.cache_clear()
    x = _randn(1, 2, 7, 9)
    with torch.inference_mode():
        box_mean(x, 2)
    assert box_counts.cache_info().currsize == 1
    x.requires_grad_(True)
    box_mean(x, 2).sum().backward()  # the count map cached under inference mode is saved for backward
    assert box_counts.cache_info().hits == 1
    torch.testing.assert_close(x.grad, box_sum(1 / box_counts(7, 9, 2, x.device, x.dtype), 2).expand_as(x))
    assert torch.equal(box_counts(7, 9, 2, x.device, x.dtype), box_sum(torch.ones(7, 9), 2))


def test_class_and_augmentation_conditioning():
    net = _net(num_classes=3, augment_embedding=True)
    x, level = _randn(1, 6, 16, 16), torch.tensor([0.5])
    a = net(x, level, labels=torch.tensor([0]), aug_level=torch.tensor([0.0]))
    b = net(x, level, labels=torch.tensor([1]), aug_level=torch.tensor([0.0]))
    c = net(x, level, labels=torch.tensor([0]), aug_level=torch.tensor([0.4]))
    assert not torch.allclose(a, b) and not torch.allclose(a, c)


@pytest.mark.parametrize("preset", ["faces-8x-sdunet", "faces-8x-sdunet-regression"])
def test_faces_presets_build_the_efficient_network(preset):
    cfg = load_config(preset)
    net = build_network(cfg.model)
    assert isinstance(net, UNet) and isinstance(net.norm_out, WindowGroupNorm) and net.downscale_factor == 16
    assert 7.0e6 < sum(p.numel() for p in net.parameters()) < 7.7e6  # 7.34 M: float16 weights under 16 MiB
    x = F.interpolate(_randn(1, 3, 16, 16), scale_factor=8, mode="bicubic")
    assert net(torch.cat([x, x], 1), torch.tensor([0.5])).shape == (1, 3, 128, 128)
