import numpy as np
import pytest
import torch
from PIL import Image

from sr3.config import load_config
from sr3.errors import SR3Error
from sr3.imaging import to_tensor
from sr3.resize import imresize, low_frequency_fix
from sr3.imaging import to_pil as to_pil_image
from sr3.metrics.consistency import consistency
from sr3.device import slow_bf16_reason
from sr3.pipeline import SR3Pipeline

from conftest import photo, untrained_pipeline


@pytest.fixture(scope="module")
def pipe():
    return untrained_pipeline(load_config("tiny"))


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


def test_bf16_sampling_is_seeded_and_close_to_fp32():
    cfg = load_config("tiny")
    fp32 = untrained_pipeline(cfg)
    bf16 = SR3Pipeline(fp32.denoiser.net, cfg, precision="bf16")
    lr = to_tensor(photo("coffee").resize((16, 16)))[None]
    sampler = fp32.sampler_config(steps=2)
    a = bf16.super_resolve(lr, [1], sampler)
    assert a.dtype == torch.float32 and torch.equal(a, bf16.super_resolve(lr, [1], sampler))
    ref = fp32.super_resolve(lr, [1], sampler)
    assert not torch.equal(a, ref) and (a - ref).abs().mean() < 0.02
    with pytest.raises(SR3Error, match="precision must be one of fp32, bf16, fp16"):
        SR3Pipeline(fp32.denoiser.net, cfg, precision="fp8")
    with pytest.raises(SR3Error, match="fp16 needs a CUDA GPU"):
        SR3Pipeline(fp32.denoiser.net, cfg, precision="fp16")


def test_slow_bf16_reason_names_the_missing_hardware_or_nothing():
    reason = slow_bf16_reason(torch.device("cpu"))
    assert reason is None or "no bf16 instructions" in reason
    assert slow_bf16_reason(torch.device("meta")) is None  # nothing known against other devices


def test_gray_input_stays_gray(pipe):
    out = pipe.upscale(photo("astronaut").convert("L").resize((16, 16)), steps=1)
    assert out.mode == "L" and out.size == (64, 64)


def test_alpha_is_resized_apart_and_icc_carried(pipe):
    rgba = photo("coffee").resize((16, 12)).convert("RGBA")
    alpha = Image.linear_gradient("L").resize((16, 12))
    rgba.putalpha(alpha)
    rgba.info["icc_profile"] = b"fake-profile"
    a = pipe.upscale(rgba, steps=1, seed=3)
    b = pipe.upscale(rgba, steps=1, seed=4)
    assert a.mode == "RGBA" and a.size == (64, 48) and a.info["icc_profile"] == b"fake-profile"
    assert np.array_equal(np.asarray(a.getchannel("A")), np.asarray(b.getchannel("A")))  # not sampled
    assert abs(np.asarray(a.getchannel("A"), float).mean() - np.asarray(alpha, float).mean()) < 3


def test_any_output_scale(pipe):
    assert pipe.upscale(photo().resize((16, 10)), steps=1, out_scale=2.5).size == (40, 25)


def test_low_frequency_fix_pulls_colours_back_to_the_input():
    hr = to_tensor(photo("chelsea").resize((64, 48)))[None]
    lr = imresize(hr, scale=0.25)
    drifted = (hr + torch.tensor([0.2, -0.1, 0.05]).view(1, 3, 1, 1)).clamp(-1, 1)  # a hue shift
    fixed = low_frequency_fix(drifted, lr, 4)
    before, after = consistency(drifted, lr, 4), consistency(fixed, lr, 4)
    assert after < 0.05 * before
    assert (fixed - hr).abs().mean() < 0.3 * (drifted - hr).abs().mean()


def test_bad_requests(pipe):
    with pytest.raises(SR3Error, match="unknown sampler 'nope'"):
        pipe.upscale(photo().resize((16, 16)), sampler="nope")
    with pytest.raises(SR3Error, match="images of one size"):
        pipe.upscale([Image.new("RGB", (8, 8)), Image.new("RGB", (9, 8))])


def test_an_image_of_any_size_upscales():
    """One input policy: a valid image of any size is upscaled (padded for the network, the output cropped)."""
    pipe = SR3Pipeline.load("natural-4x")
    for size in [(1, 1), (1, 5), (64, 1), (3, 7)]:
        out = pipe.upscale(Image.new("RGB", size, (200, 40, 10)))
        assert out.size == (4 * size[0], 4 * size[1])
        assert np.abs(np.asarray(out, float) - (200, 40, 10)).mean() < 40  # a flat colour stays near that colour


def test_a_residual_model_adds_its_sample_to_the_upsampled_input():
    """With x0-prediction and a zero-initialised output layer the residual is 0: the output is the bicubic upsample."""
    from sr3.models.unet import UNet
    from sr3.pipeline import SR3Pipeline

    cfg = load_config("tiny", ["noise.residual=true", "noise.parameterization=x0"])
    pipe = SR3Pipeline(UNet(cfg.model), cfg)
    lr = to_tensor(photo("coffee").resize((16, 12)))[None]
    out = pipe.super_resolve(lr, [0], pipe.sampler_config(steps=3, sampler="ddim", colour_fix=False))
    assert torch.allclose(out, imresize(lr, scale=4).clamp(-1, 1), atol=1e-5)


def test_an_augmented_residual_model_adds_its_sample_to_the_condition_it_sees():
    """Under conditioning augmentation the residual is to the noised upsample, for a finished or truncated stage below."""
    from sr3.models.unet import UNet
    from sr3.pipeline import SR3Pipeline

    cfg = load_config("tiny", ["noise.residual=true", "noise.parameterization=x0", "model.augment_embedding=true",
                               "augment.noise_max=0.5"])
    pipe = SR3Pipeline(UNet(cfg.model), cfg)
    lr = to_tensor(photo("coffee").resize((16, 12)))[None]
    sampler = pipe.sampler_config(steps=2, sampler="ddim")
    clean = imresize(lr, scale=4).clamp(-1, 1)
    noised = pipe.super_resolve(lr, [0], sampler, aug_level=0.3)
    assert 0.05 < (noised - clean).abs().mean() < 1  # the condition's augmentation noise shows through
    truncated = pipe.super_resolve(lr, [0], sampler, aug_level=0.3, lr_noised=True)
    assert torch.allclose(truncated, clean, atol=1e-5)  # an already-noised input is used as it is


def test_a_regression_model_predicts_in_one_evaluation_from_the_condition_alone():
    from sr3.models.unet import UNet
    from sr3.pipeline import SR3Pipeline

    cfg = load_config("tiny", ["noise.regression=true", "noise.parameterization=x0", "noise.residual=true"])
    torch.manual_seed(0)
    net = UNet(cfg.model)
    for p in net.parameters():
        p.data.add_(0.02 * torch.randn_like(p))
    seen = []
    net.register_forward_hook(lambda m, args, out: seen.append(args))
    pipe = SR3Pipeline(net, cfg)
    lr = to_tensor(photo("coffee").resize((16, 12)))[None]
    a = pipe.super_resolve(lr, [0], pipe.sampler_config(steps=5))
    b = pipe.super_resolve(lr, [1], pipe.sampler_config(steps=5))
    assert len(seen) == 2  # one evaluation per call, whatever the step count
    x, level = seen[0]
    assert (x[:, :3] == 0).all() and (level == 0).all()  # no noisy image: only the upsampled LR
    assert torch.equal(a, b)  # no randomness
    with pytest.raises(SR3Error, match="parameterization=x0"):
        load_config("tiny", ["noise.regression=true"])


def test_a_tuned_sigma_grid_is_kept_at_the_models_own_step_count():
    from sr3.models.unet import UNet
    from sr3.pipeline import SR3Pipeline

    cfg = load_config("tiny", ["sampler.name=euler", "sampler.steps=2", "sampler.sigmas=[20.0, 0.005]"])
    pipe = SR3Pipeline(UNet(cfg.model), cfg)
    assert pipe.sampler_config().sigmas == [20.0, 0.005]
    assert pipe.sampler_config(steps=2, sampler="ddpm").sigmas == [20.0, 0.005]
    assert pipe.sampler_config(steps=3).sigmas == []  # another step count: the schedule's own grid


def test_a_negative_tile_is_refused():
    pipe = untrained_pipeline(load_config("tiny"))
    with pytest.raises(SR3Error, match="tile must be 0"):
        pipe.sampler_config(tile=-1)


def test_one_sampling_policy_resolves_every_override():
    cfg = load_config("tiny", ["sampler.tile=32"])
    pipe = untrained_pipeline(cfg)
    own = pipe.sampler_config()
    assert (own.name, own.steps, own.tile, own.colour_fix) == ("dpmpp_2m", 4, 32, True)
    changed = pipe.sampler_config(steps=2, sampler="euler", tile=0, colour_fix=False)
    assert (changed.name, changed.steps, changed.tile, changed.colour_fix) == ("euler", 2, 0, False)
    assert load_config("tiny").sampler.tile == 128  # the memory bound when a model names none
    with pytest.raises(SR3Error, match="sampler 'regression' does not sample a diffusion model"):
        pipe.sampler_config(sampler="regression")
    regression = untrained_pipeline(load_config("tiny", ["noise.regression=true", "noise.parameterization=x0"]))
    assert (regression.sampler_config(steps=50).name, regression.sampler_config(steps=50).steps) == ("regression", 1)
    with pytest.raises(SR3Error, match="sampler 'ddpm' does not sample a regression model"):
        regression.sampler_config(sampler="ddpm")


def test_tiles_and_the_colour_fix_follow_the_sampler_settings():
    pipe = untrained_pipeline(load_config("tiny", ["sampler.steps=2"]))
    lr = to_tensor(photo("coffee").resize((40, 24)))[None]
    whole = pipe.super_resolve(lr, [0], pipe.sampler_config(tile=0))
    assert torch.equal(whole, pipe.super_resolve(lr, [0]))  # 40 px is within the default 128-px tile
    tiled = pipe.super_resolve(lr, [0], pipe.sampler_config(tile=16))
    assert not torch.equal(tiled, whole) and (tiled - whole).abs().mean() < 0.1
    plain = pipe.super_resolve(lr, [0], pipe.sampler_config(tile=0, colour_fix=False))
    assert torch.allclose(whole, low_frequency_fix(plain, lr, 4).clamp(-1, 1), atol=1e-5)


def test_upscale_resamples_once_and_refuses_mixed_sizes():
    pipe = untrained_pipeline(load_config("tiny", ["sampler.steps=1"]))
    img = photo("coffee").resize((16, 12))
    out = pipe.upscale(img, out_scale=3)
    sr = pipe.super_resolve(to_tensor(img)[None], [0])[0]
    expected = np.asarray(to_pil_image(imresize(sr, size=(36, 48))))  # one rounding, after the resampling
    assert out.size == (48, 36) and np.array_equal(np.asarray(out), expected)
    with pytest.raises(SR3Error, match="images of one size"):
        pipe.upscale([img, img.resize((8, 8))])
    with pytest.raises(SR3Error, match="2 seeds for a batch of 1"):
        pipe.super_resolve(to_tensor(img)[None], [0, 1])
