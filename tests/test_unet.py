"""Tests for sr3.models: the U-Net's shapes and conditioning inputs, chunked attention, preset sizes."""

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from sr3.config import ModelConfig, load_config
from sr3.models.layers import chunked_attention, sinusoidal_embedding
from sr3.models.unet import UNet

TINY = ModelConfig(
    image_size=32,
    in_channels=6,
    base_channels=16,
    channel_mults=[1, 2, 2],
    num_res_blocks=1,
    attn_resolutions=[8],
    attn_head_channels=16,
    norm_groups=8,
)


def _net(seed: int = 0, perturb: bool = True, **changes) -> UNet:
    """A tiny U-Net; `perturb` gives the zero-initialised output conv random weights so outputs are nonzero."""
    torch.manual_seed(seed)
    net = UNet(dataclasses.replace(TINY, **changes)).eval()
    if perturb:
        with torch.no_grad():
            gen = torch.Generator().manual_seed(seed + 100)
            net.conv_out.weight.copy_(0.05 * torch.randn(net.conv_out.weight.shape, generator=gen))
            net.conv_out.bias.copy_(0.05 * torch.randn(net.conv_out.bias.shape, generator=gen))
    return net


def _input(batch: int = 2, h: int = 16, w: int = 16, channels: int = 6, seed: int = 1) -> torch.Tensor:
    # 16 x 16 keeps the tests fast; the network is fully convolutional (its training size is 32)
    return torch.randn(batch, channels, h, w, generator=torch.Generator().manual_seed(seed))


LEVELS = torch.tensor([0.3, 0.9])


pytestmark = pytest.mark.usefixtures("one_thread")


def test_output_shape_is_the_image_shape():
    out = _net()(_input(h=32, w=32), LEVELS)
    assert out.shape == (2, 3, 32, 32) and out.dtype == torch.float32
    assert torch.isfinite(out).all()


def test_output_is_exactly_zero_at_init():
    out = _net(perturb=False)(_input(), LEVELS)
    assert torch.equal(out, torch.zeros(2, 3, 16, 16))


def test_noise_level_conditioning_changes_the_output():
    net, x = _net(), _input(batch=1)
    a = net(x, torch.tensor([0.2]))
    b = net(x, torch.tensor([0.8]))
    c = net(x, torch.tensor([0.2]))
    assert torch.equal(a, c)
    assert (a - b).abs().max() > 1e-3


def test_samples_in_a_batch_are_independent():
    # GroupNorm, never BatchNorm: a sample's output does not depend on its batch mates
    net, x = _net(), _input(batch=3)
    levels = torch.tensor([0.1, 0.5, 0.9])
    batch = net(x, levels)
    for i in range(3):
        assert torch.allclose(net(x[i : i + 1], levels[i : i + 1]), batch[i : i + 1], atol=1e-5)


def test_class_labels_condition_the_output():
    net, x = _net(num_classes=3), _input()
    a = net(x, LEVELS, labels=torch.tensor([0, 0]))
    b = net(x, LEVELS, labels=torch.tensor([2, 1]))
    assert (a - b).abs().amax(dim=(1, 2, 3)).min() > 1e-3  # both samples change
    with pytest.raises(ValueError, match="labels"):
        net(x, LEVELS)


def test_augmentation_level_conditions_the_output():
    net, x = _net(augment_embedding=True), _input()
    none = net(x, LEVELS)
    zero = net(x, LEVELS, aug_level=torch.zeros(2))
    half = net(x, LEVELS, aug_level=torch.tensor([0.5, 0.5]))
    assert torch.equal(none, zero)  # a missing level means no augmentation
    assert (half - zero).abs().amax(dim=(1, 2, 3)).min() > 1e-3


def test_unconditional_model_ignores_augmentation_inputs_it_does_not_have():
    net, x = _net(), _input()
    assert net.class_embed is None and net.aug_embed is None
    assert torch.equal(net(x, LEVELS), net(x, LEVELS, aug_level=torch.tensor([0.5, 0.5])))


@pytest.mark.parametrize("h,w", [(16, 14), (14, 16), (18, 18)])
def test_input_size_must_be_a_multiple_of_the_downscale_factor(h, w):
    net = _net()
    assert net.downscale_factor == 4
    with pytest.raises(ValueError, match="multiple of 4"):
        net(_input(h=h, w=w), LEVELS)


def test_fully_convolutional_at_other_sizes():
    net = _net()
    for h, w in ((32, 48), (12, 20)):
        out = net(_input(h=h, w=w), LEVELS)
        assert out.shape == (2, 3, h, w) and torch.isfinite(out).all()


@pytest.mark.parametrize("film", ["scale_shift", "additive"])
def test_both_film_forms_run_and_condition(film):
    net, x = _net(film=film), _input(batch=1)
    a, b = net(x, torch.tensor([0.2])), net(x, torch.tensor([0.8]))
    assert a.shape == (1, 3, 16, 16) and (a - b).abs().max() > 1e-3


def test_film_forms_differ_in_projection_width():
    # scale_shift projects the embedding to 2 * channels (scale and shift), additive to channels
    scale_shift, additive = UNet(TINY), UNet(dataclasses.replace(TINY, film="additive"))
    assert scale_shift.mid[0].emb.out_features == 2 * additive.mid[0].emb.out_features


def test_every_parameter_gets_a_gradient():
    # nothing unused (distributed training would need find_unused_parameters otherwise)
    net = _net(num_classes=3, augment_embedding=True).train()
    out = net(_input(), LEVELS, labels=torch.tensor([0, 2]), aug_level=torch.tensor([0.1, 0.4]))
    out.square().mean().backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []


def test_sinusoidal_embedding_values():
    emb = sinusoidal_embedding(torch.tensor([0.0, 0.5]), 8)
    assert emb.shape == (2, 8)
    assert torch.equal(emb[0], torch.tensor([0.0, 0, 0, 0, 1, 1, 1, 1]))
    # frequencies 10000^(-i/4); the first is 1, scaled by 1000: sin(500), cos(500)
    assert emb[1, 0].item() == pytest.approx(torch.tensor(500.0).sin().item(), abs=1e-4)
    assert emb[1, 4].item() == pytest.approx(torch.tensor(500.0).cos().item(), abs=1e-4)


# --- attention ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("budget", [2 * 3 * 50 * 7, 2 * 3 * 50, 1, 2**27])
def test_chunked_attention_equals_plain_attention(budget):
    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, 50, 8, generator=gen) for _ in range(3))
    out = chunked_attention(q, k, v, budget=budget)
    assert torch.allclose(out, F.scaled_dot_product_attention(q, k, v), rtol=0, atol=1e-6)


def test_chunked_attention_with_fewer_keys_than_queries():
    gen = torch.Generator().manual_seed(1)
    q = torch.randn(1, 2, 37, 4, generator=gen)
    k, v = torch.randn(2, 1, 2, 11, 4, generator=gen)
    out = chunked_attention(q, k, v, budget=2 * 11 * 5)  # chunks of 5 queries, the last one short
    assert torch.allclose(out, F.scaled_dot_product_attention(q, k, v), rtol=0, atol=1e-6)


# --- preset sizes ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "preset,reference",
    [("sr3-ref-faces-16-128", 97.8e6), ("sr3-ref-small", 9.9e6)],
)
def test_reference_presets_match_the_reference_parameter_counts(preset, reference):
    # the popular PyTorch SR3 reproduction's counts; built on the meta device, so no memory or time
    cfg = load_config(preset).model
    with torch.device("meta"):
        net = UNet(cfg)
    count = sum(p.numel() for p in net.parameters())
    assert abs(count / reference - 1) < 0.03, f"{preset}: {count:,} parameters vs {reference:,.0f}"


def test_tiny_preset_builds_the_test_model():
    assert load_config("tiny").model == TINY
