"""What an SR stage is conditioned on: SR3's upsampled LR image and CDM's conditioning augmentation.

SR3 (Saharia et al. 2021): the LR image is upsampled bicubically and concatenated with the noisy image.
CDM (Ho et al. 2021, Sec. 4.1): during training the conditioning image is corrupted, with Gaussian
noise by the forward process at a random level s that the network is told (low-resolution stages), or
with a random Gaussian blur (high-resolution stages), so the stage tolerates the artefacts of the
stage below it. The augmentation level s is a fraction of the training schedule: s = t / T, in [0, 1).

One constructor builds the condition at training time and one at sampling time; both noise the LR
image at low resolution, then hand it to the stage's predictor (`sr3.predictors`: the bicubic upsample,
or a regression network's output). So CDM's augmentation acts before the predictor: the predictor sees
the same corrupted LR in training and sampling, and the stage learns to refine what it makes of it. A
third tells a model trained so that a real photo already carries noise of a given level
(`denoise_condition`): its denoise-strength control.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from sr3.config import AugmentConfig, Config
from sr3.diffusion import Cond
from sr3.errors import SR3Error
from sr3.noise import PerSampleNoise
from sr3.resize import gaussian_blur, imresize
from sr3.schedules import gamma_level, level_gamma, training_gammas

Predict = Callable[[torch.Tensor], torch.Tensor]  # LR [B, C, h, w] -> prediction [B, C, h * scale, w * scale]


def upsample(lr: torch.Tensor, scale: int) -> torch.Tensor:
    """SR3's condition: the LR image upsampled to the target size by (MATLAB-compatible) bicubic."""
    return imresize(lr, scale=scale)


def condition_image(lr: torch.Tensor, predict: Predict, cfg: Config) -> torch.Tensor:
    """What the network sees beside the noisy image: the prediction, then the bicubic upsample when
    `predictor.with_bicubic`; the residual is taken to the prediction channels."""
    prediction = predict(lr)
    return torch.cat([prediction, upsample(lr, cfg.data.scale)], 1) if cfg.predictor.with_bicubic else prediction


def check_aug_level(level: float, where: str = "aug_level") -> float:
    """An augmentation level in [0, 1): 1 would be pure noise, nothing left to condition on."""
    if not 0 <= level < 1:
        raise SR3Error(f"{where} must be in [0, 1); got {level}")
    return level


def noise_augment(image: torch.Tensor, level: torch.Tensor, gammas: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """CDM's Gaussian conditioning augmentation: the forward process z_s = sqrt(gamma_s) x + sqrt(1 - gamma_s) eps."""
    g = level_gamma(level, gammas).to(image.device, image.dtype).view(-1, *([1] * (image.ndim - 1)))
    return g.sqrt() * image + (1 - g).sqrt() * noise


def blur_augment(lr: torch.Tensor, cfg: AugmentConfig, rng: PerSampleNoise) -> torch.Tensor:
    """CDM's blur augmentation: with probability `blur_prob` a sample is blurred with sigma ~ U(blur_sigma)."""
    chosen = rng.rand() < cfg.blur_prob
    lo, hi = cfg.blur_sigma
    sigma = (lo + (hi - lo) * rng.rand()) * chosen
    return gaussian_blur(lr, sigma.to(lr.device), cfg.blur_kernel)


def training_condition(lr: torch.Tensor, cfg: Config, predict: Predict, gammas: torch.Tensor, rng: PerSampleNoise) -> Cond:
    """The condition of a training batch: blur and noise (if enabled) at low resolution, then predict."""
    aug = cfg.augment
    if aug.blur_prob > 0:
        lr = blur_augment(lr, aug, rng)
    if aug.noise_max <= 0:
        return Cond(image=condition_image(lr, predict, cfg))
    level = aug.noise_max * rng.rand(torch.float64)
    eps = rng.randn(lr.shape[1:]).to(lr.device)
    noised = condition_image(noise_augment(lr, level, gammas, eps), predict, cfg)
    return Cond(image=noised, aug_level=level.float().to(lr.device))


def sampling_condition(
    lr: torch.Tensor,
    cfg: Config,
    predict: Predict,
    aug_level: float = 0.0,
    noise: PerSampleNoise | None = None,
    lr_noised: bool = False,
) -> Cond:
    """The condition an SR stage samples with: the prediction from the LR, noised at low resolution to
    `aug_level` first for augmentation-aware models (`noise` draws it). `lr_noised`: the LR is already at
    that level (the truncated output of a base model), so it is only told the level."""
    check_aug_level(aug_level)
    if aug_level == 0:
        return Cond(image=condition_image(lr, predict, cfg))
    if not cfg.model.augment_embedding:
        raise SR3Error("this model was not trained with conditioning augmentation; aug_level must be 0")
    level = torch.full((lr.shape[0],), aug_level, dtype=torch.float64)
    if not lr_noised:
        if noise is None:
            raise SR3Error("noising the condition to aug_level > 0 needs a noise source")
        lr = noise_augment(lr, level, training_gammas(cfg.noise), noise(lr))
    return Cond(image=condition_image(lr, predict, cfg), aug_level=level.float().to(lr.device))


def takes_denoise(cfg: Config) -> bool:
    """Whether a model was trained with noise augmentation and told its level, so it takes a denoise strength."""
    return cfg.model.augment_embedding and cfg.augment.noise_max > 0


def check_denoise(strength: float | str, cfg: Config) -> float | str:
    """A denoise strength in [0, 1] or "auto", for a model trained with noise augmentation (it maps onto its
    level range); 0 suits every model."""
    if strength != "auto" and not (isinstance(strength, (int, float)) and 0 <= strength <= 1):
        raise SR3Error(f"denoise strength must be in [0, 1] or 'auto'; got {strength!r}")
    if strength and not takes_denoise(cfg):
        raise SR3Error("this model was not trained with a noise level (augment.noise_max); denoising needs one such as photo-4x")
    return strength


def noise_level(std: float, gammas: torch.Tensor) -> float:
    """The augmentation level whose forward-process noise sqrt(1 - gamma) has standard deviation `std` ([-1, 1]
    units); 1 where the schedule never gets that noisy."""
    level = gamma_level(math.log(1 - std**2) if std < 1 else -math.inf, gammas)
    return 1.0 if level is None else level


def auto_denoise(lr: torch.Tensor, cfg: Config) -> float:
    """The denoise strength for an LR image [C, h, w]: the level of the noise a wavelet estimator finds in it,
    as a fraction of the model's trained range (capped at 1)."""
    level = noise_level(estimate_noise_std(lr), training_gammas(cfg.noise))
    return min(1.0, level / cfg.augment.noise_max)


def denoise_condition(lr: torch.Tensor, cfg: Config, predict: Predict, strengths: torch.Tensor) -> Cond:
    """The condition of LR photos said to carry noise of `strengths` [B] (fractions of `augment.noise_max`): the
    model is told that level and sees the LR scaled by sqrt(gamma), as a forward-process sample at it is; no
    noise is added, so the stronger the setting, the more of the input's fine detail the model treats as noise."""
    levels = strengths.to(torch.float64) * cfg.augment.noise_max
    g = level_gamma(levels, training_gammas(cfg.noise)).to(lr.device, lr.dtype).view(-1, 1, 1, 1)
    return Cond(image=condition_image(g.sqrt() * lr, predict, cfg), aug_level=levels.float().to(lr.device))


def batch_condition(
    batch: dict[str, torch.Tensor], cfg: Config, predict: Predict, gammas: torch.Tensor, rng: PerSampleNoise
) -> Cond:
    """The condition of a training batch: the prediction from the LR image (SR stages), class labels with CFG
    label dropout (if any)."""
    lr = batch["lr"]
    cond = training_condition(lr, cfg, predict, gammas, rng) if cfg.model.is_sr else Cond()
    labels = batch.get("label")
    if labels is not None and cfg.train.label_dropout > 0:
        drop = rng.rand() < cfg.train.label_dropout
        labels = torch.where(drop.to(labels.device), cfg.model.num_classes, labels)  # the "no class" row
    cond.labels = labels
    return cond


def estimate_noise_std(image: torch.Tensor) -> float:
    """Standard deviation of the Gaussian noise in an image [C, H, W] on [-1, 1], by scikit-image's robust
    wavelet (median absolute deviation) estimator, averaged over channels."""
    from skimage.restoration import estimate_sigma

    unit = ((image.detach().float().cpu().clamp(-1, 1) + 1) / 2).numpy()
    return 2 * float(estimate_sigma(unit, channel_axis=0, average_sigmas=True))
