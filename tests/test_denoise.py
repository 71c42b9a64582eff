"""The denoise-strength control of noise-augmented models, fine-tuning from weights (`train.init`), and the
`photo` degradation mixture they train on."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from sr3.checkpoint import init_from
from sr3.cli.main import main
from sr3.conditioning import auto_denoise, check_denoise, denoise_condition, noise_level, upsample
from sr3.config import load_config
from sr3.data.degradations import bicubic, degrade
from sr3.noise import seeded_generator
from sr3.predictors import Bicubic
from sr3.data.realworld import PHOTO, degrade_real
from sr3.errors import SR3Error
from sr3.imaging import to_tensor
from sr3.conditioning import estimate_noise_std
from sr3.resize import imresize
from sr3.models.unet import UNet
from sr3.schedules import level_gamma, training_gammas

from conftest import photo, tiny_weights, untrained_pipeline

AUG = ["model.augment_embedding=true", "augment.noise_max=0.05", "sampler.colour_fix=true"]


def _lr(name="astronaut", size=16, sigma=0.0, seed=0):
    """A real photo at LR size on [-1, 1], with Gaussian noise of `sigma` grey levels."""
    x = imresize(to_tensor(photo(name)), size=(size, size)).clamp(-1, 1)
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(seed)) * (2 * sigma / 255)
    return (x + noise).clamp(-1, 1)


def test_the_noise_estimate_follows_the_added_noise():
    big = lambda sigma: _lr(size=256, sigma=sigma)  # noqa: E731
    for sigma in (5, 10, 20):
        assert estimate_noise_std(big(sigma)) * 255 / 2 == pytest.approx(sigma, rel=0.2)
    assert estimate_noise_std(big(0)) * 255 / 2 < 3


def test_noise_level_inverts_the_schedule():
    gammas = training_gammas(load_config("tiny").noise)
    for level in (0.005, 0.02, 0.05, 0.3):
        std = float((1 - level_gamma(torch.tensor([level], dtype=torch.float64), gammas)[0]) ** 0.5)
        assert noise_level(std, gammas) == pytest.approx(level, rel=1e-4)


def test_auto_strength_grows_with_the_input_noise_and_is_capped():
    cfg = load_config("tiny", AUG)
    strengths = [auto_denoise(_lr(size=64, sigma=s), cfg) for s in (0, 5, 10, 40)]
    # noise_max 0.05 is about 20 grey levels: 10 of them is about half the range
    assert strengths == sorted(strengths) and strengths[0] < 0.35 and 0.4 < strengths[2] < 0.8 and strengths[-1] == 1.0


def test_denoise_condition_tells_the_level_of_a_forward_process_sample():
    cfg = load_config("tiny", AUG)
    lr = _lr(size=8)[None].repeat(2, 1, 1, 1)
    cond = denoise_condition(lr, cfg, Bicubic(4), torch.tensor([0.0, 0.5], dtype=torch.float64))
    assert torch.allclose(cond.aug_level, torch.tensor([0.0, 0.025]))
    g = float(level_gamma(torch.tensor([0.025], dtype=torch.float64), training_gammas(cfg.noise))[0])
    assert torch.allclose(cond.image[0], upsample(lr[:1], cfg.data.scale)[0])
    assert torch.allclose(cond.image[1], upsample(lr[1:] * g**0.5, cfg.data.scale)[0], atol=1e-6)


def test_denoise_is_checked_against_the_model():
    plain, aug = load_config("tiny"), load_config("tiny", AUG)
    assert check_denoise(0.0, plain) == 0.0 and check_denoise("auto", aug) == "auto"
    for bad in (-0.1, 1.5, "strong"):
        with pytest.raises(SR3Error, match=r"\[0, 1\] or 'auto'"):
            check_denoise(bad, aug)
    for value in (0.3, "auto"):
        with pytest.raises(SR3Error, match="not trained with a noise level"):
            check_denoise(value, plain)


def test_sampling_with_a_denoise_strength():
    pipe = untrained_pipeline(load_config("tiny", AUG))
    lr = torch.stack([_lr("coffee", size=16), _lr("coffee", size=16, sigma=20)])
    s = pipe.sampler_config(steps=2)
    out = {d: pipe.super_resolve(lr, [0, 1], s, denoise=d) for d in (0.0, 0.8)}
    assert not torch.allclose(out[0.0], out[0.8])
    assert torch.equal(out[0.8], pipe.super_resolve(lr, [0, 1], s, denoise=0.8))
    # the colour fix would pin the output to the input's noise: denoising skips it
    no_fix = pipe.sampler_config(steps=2, colour_fix=False)
    assert torch.equal(out[0.8], pipe.super_resolve(lr, [0, 1], no_fix, denoise=0.8))
    # "auto" picks one strength per image, the noisier image the stronger
    auto = pipe.denoise_strengths(lr, "auto")
    assert auto[1] > auto[0]
    assert torch.equal(pipe.super_resolve(lr, [0, 1], s, denoise="auto"), pipe.super_resolve(lr, [0, 1], s, denoise=auto.tolist()))
    with pytest.raises(SR3Error, match="one of them"):
        pipe.super_resolve(lr, [0, 1], s, aug_level=0.1, denoise=0.5)


def test_grey_and_16_bit_inputs_go_through_a_denoising_model():
    pipe = untrained_pipeline(load_config("tiny", [*AUG, "noise.residual=true"]))
    grey = photo("coffee").convert("L").resize((12, 8))
    deep = Image.fromarray(np.asarray(grey, dtype=np.uint16) * 257)
    colour = np.asarray(pipe.upscale(grey.convert("RGB"), steps=1, denoise="auto").convert("L"), float)
    for image in (grey, deep):  # the same pixels as the colour path
        out = pipe.upscale(image, steps=1, denoise="auto")
        assert out.mode == "L" and out.size == (48, 32)
        assert np.abs(np.asarray(out, float) - colour).max() <= 1


def test_upscale_command_denoise(tmp_path, capsys):
    model = tiny_weights(tmp_path / "aug.safetensors", AUG)
    plain = tiny_weights(tmp_path / "plain.safetensors", [])
    img = tmp_path / "in.png"
    photo("chelsea").resize((12, 8)).save(img)
    out = tmp_path / "out.png"
    assert main(["upscale", str(img), "-o", str(out), "--model", str(model), "--steps", "1", "--denoise", "auto", "--quiet"]) == 0
    info = Image.open(out).info
    assert 0 <= float(info["sr3:denoise"]) <= 1 and info["sr3:colour_fix"] == "False"
    assert main(["upscale", str(img), "-o", str(out), "--model", str(plain), "--steps", "1", "--denoise", "0.5", "--quiet"]) == 2
    assert "not trained with a noise level" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        main(["upscale", str(img), "--model", str(model), "--denoise", "2"])
    assert exit_.value.code == 2 and "must be in [0, 1]" in capsys.readouterr().err


def test_init_from_weights_starts_from_their_function(tmp_path):
    source = tiny_weights(tmp_path / "src.safetensors", [])
    cfg = load_config("tiny", AUG)
    torch.manual_seed(1)
    net = UNet(cfg.model).eval()
    new = init_from(net, source)
    assert new and all(k.startswith("aug_embed.") for k in new)
    plain = UNet(load_config("tiny").model).eval()
    init_from(plain, source)
    x, g = torch.randn(1, 6, 16, 16), torch.tensor([0.5])
    with torch.no_grad():
        assert torch.allclose(net(x, g, aug_level=torch.tensor([0.03])), plain(x, g), atol=1e-6)
    wider = UNet(load_config("tiny", ["model.base_channels=24"]).model)
    with pytest.raises(SR3Error, match="is not this network"):
        init_from(wider, source)


def test_training_from_inittiny_weights(tmp_path, photo_dir, capsys):
    source = tiny_weights(tmp_path / "src.safetensors", [])
    args = ["train", "--config", "tiny", "--data", str(photo_dir), "--output", str(tmp_path / "run"), "--steps", "1",
            "--quiet", "--set", f"train.init={source}", "--set", "model.augment_embedding=true",
            "--set", "augment.noise_max=0.05", "--set", "data.degradation=photo"]
    assert main(args) == 0
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["train"]["init"] == str(source) and config["data"]["degradation"] == "photo"
    bad = [*args[:-8], "--set", "train.init=nowhere.safetensors"]
    bad[bad.index("--output") + 1] = str(tmp_path / "other")
    assert main(bad) == 2 and "nowhere.safetensors" in capsys.readouterr().err


def test_the_photo_mixture_is_clean_a_fifth_of_the_time():
    hr = imresize(to_tensor(photo("coffee")), size=(64, 96)).clamp(-1, 1)
    clean = 0
    for seed in range(60):
        lr = degrade("photo", hr, 4, seeded_generator(seed))
        assert lr.shape == (3, 16, 24) and torch.equal(lr, degrade_real(hr, 4, seeded_generator(seed), PHOTO))
        clean += torch.equal(lr, bicubic(hr, 4, seeded_generator(seed)))
    assert 5 <= clean <= 20
