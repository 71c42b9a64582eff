import pytest
import torch

from sr3.conditioning import blur_augment, check_aug_level, noise_augment, sampling_condition, training_condition, upsample
from sr3.config import AugmentConfig, NoiseConfig, load_config
from sr3.errors import SR3Error
from sr3.resize import gaussian_kernel1d
from sr3.models.unet import UNet
from sr3.noise import PerSampleNoise
from sr3.pipeline import SR3Pipeline
from sr3.predictors import Bicubic
from sr3.schedules import level_gamma, training_gammas

GAMMAS = training_gammas(NoiseConfig())


def test_level_zero_leaves_the_condition_unchanged():
    image, eps = torch.rand(2, 3, 8, 8), torch.randn(2, 3, 8, 8)
    assert torch.equal(noise_augment(image, torch.zeros(2), GAMMAS, eps), image)
    lr = torch.rand(2, 3, 4, 4)
    cfg = load_config("tiny", ["data.scale=2"])
    cond = training_condition(lr, cfg, Bicubic(2), GAMMAS, PerSampleNoise([0, 1]))
    assert torch.equal(cond.image, upsample(lr, 2)) and cond.aug_level is None


def test_level_maps_onto_the_training_schedule():
    assert torch.allclose(level_gamma(torch.tensor([0.0, 1.0, 0.5]), GAMMAS),
                          torch.stack([torch.tensor(1.0, dtype=torch.float64), GAMMAS[-1], GAMMAS[999]]))
    g = level_gamma(torch.linspace(0, 1, 50), GAMMAS)
    assert (g[1:] < g[:-1]).all()


def test_noise_augmentation_is_the_forward_process():
    image = torch.full((20000,), 0.6)
    eps = torch.randn(1, 20000, generator=torch.Generator().manual_seed(0))
    out = noise_augment(image[None], torch.tensor([0.5]), GAMMAS, eps)
    g = float(level_gamma(torch.tensor([0.5]), GAMMAS))
    assert out.mean().item() == pytest.approx(0.6 * g**0.5, abs=0.02)
    assert out.std().item() == pytest.approx((1 - g) ** 0.5, abs=0.02)


def test_training_condition_samples_levels_and_tells_the_model():
    cfg = load_config("tiny", ["data.scale=2", "augment.noise_max=0.3", "model.augment_embedding=true"])
    cond = training_condition(torch.rand(64, 3, 4, 4), cfg, Bicubic(2), GAMMAS, PerSampleNoise(range(64)))
    assert cond.aug_level.shape == (64,) and 0 <= cond.aug_level.min() and cond.aug_level.max() <= 0.3
    assert cond.aug_level.std() > 0.05


def test_blur_kernel_sums_to_one_and_blur_applies_with_its_probability():
    for k, s in [(3, 0.6), (5, 1.0), (7, 2.5)]:
        assert gaussian_kernel1d(k, s).sum().item() == pytest.approx(1.0, abs=1e-6)
    lr = torch.rand(200, 3, 8, 8)
    out = blur_augment(lr, AugmentConfig(blur_prob=0.5, blur_sigma=[0.4, 0.6]), PerSampleNoise(range(200)))
    changed = (out - lr).flatten(1).abs().amax(dim=1) > 1e-6
    assert 0.35 < changed.float().mean() < 0.65


def test_sampling_with_an_augmentation_level():
    cfg = load_config("tiny", ["model.augment_embedding=true", "augment.noise_max=0.3"])
    pipe = SR3Pipeline(UNet(cfg.model), cfg)
    lr = torch.rand(1, 3, 8, 8) * 2 - 1
    a = pipe.super_resolve(lr, [0], pipe.sampler_config(steps=2), aug_level=0.2)
    assert torch.equal(a, pipe.super_resolve(lr, [0], pipe.sampler_config(steps=2), aug_level=0.2))
    plain = SR3Pipeline(UNet(load_config("tiny").model), load_config("tiny"))
    with pytest.raises(SR3Error, match="not trained with conditioning augmentation"):
        plain.super_resolve(lr, [0], plain.sampler_config(steps=1), aug_level=0.2)


def test_one_range_of_augmentation_levels():
    assert check_aug_level(0.0) == 0.0 and check_aug_level(0.99) == 0.99
    for bad in (-0.1, 1.0, 1.5):
        with pytest.raises(SR3Error, match=r"must be in \[0, 1\)"):
            check_aug_level(bad)
    cfg = load_config("tiny", ["model.augment_embedding=true"])
    with pytest.raises(SR3Error, match=r"\[0, 1\)"):
        sampling_condition(torch.zeros(1, 3, 4, 4), cfg, Bicubic(4), 1.0, PerSampleNoise([0]))


def test_the_sampling_condition_noises_at_low_resolution_then_upsamples():
    cfg = load_config("tiny", ["model.augment_embedding=true"])
    lr = torch.rand(2, 3, 4, 4) * 2 - 1
    clean = sampling_condition(lr, cfg, Bicubic(4))
    assert torch.equal(clean.image, upsample(lr, 4)) and clean.aug_level is None
    noised = sampling_condition(lr, cfg, Bicubic(4), 0.3, PerSampleNoise([0, 1]))
    expected = noise_augment(lr, torch.full((2,), 0.3, dtype=torch.float64), GAMMAS, PerSampleNoise([0, 1])(lr))
    assert torch.allclose(noised.image, upsample(expected, 4)) and torch.allclose(noised.aug_level, torch.full((2,), 0.3))
    told = sampling_condition(lr, cfg, Bicubic(4), 0.3, lr_noised=True)  # already at the level: only told it
    assert torch.equal(told.image, upsample(lr, 4)) and torch.allclose(told.aug_level, torch.full((2,), 0.3))
