"""Periodic validation: loss at fixed noise, the sampled SR metrics `sr3 eval` reports (ST-LPIPS too, the
perception axis beside PSNR), and an LR | SR | HR grid."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from sr3.conditioning import sampling_condition
from sr3.data.pairs import SRPairs
from sr3.diffusion import Cond, diffused_image, training_loss
from sr3.imaging import to_uint8
from sr3.metrics.scores import image_scores, mean_scores
from sr3.metrics.st_lpips import MIN_SIDE
from sr3.noise import PerSampleNoise
from sr3.pipeline import SR3Pipeline


@dataclasses.dataclass
class ValBatch:
    """Fixed validation pairs: centre crops (or whole faces) of the first images, no flips."""

    hr: torch.Tensor
    lr: torch.Tensor
    labels: torch.Tensor | None = None

    @classmethod
    def from_dataset(cls, data: SRPairs, count: int) -> ValBatch:
        pairs = [data.centre_pair(i) for i in range(min(count, len(data)))]
        labels = torch.stack([p["label"] for p in pairs]) if "label" in pairs[0] else None
        return cls(torch.stack([p["hr"] for p in pairs]), torch.stack([p["lr"] for p in pairs]), labels)


@torch.no_grad()
def validation_loss(pipe: SR3Pipeline, val: ValBatch, gammas: torch.Tensor, repeats: int = 8) -> float:
    """Mean training loss of the pipeline's network over `repeats` fixed draws of noise level and noise (same
    draws every call)."""
    rng = PerSampleNoise(range(1234, 1234 + len(val.hr)))
    net, cfg, device = pipe.denoiser.net, pipe.cfg, pipe.device
    cond = sampling_condition(val.lr.to(device), cfg, pipe.predictor) if cfg.model.is_sr else Cond()
    cond.labels = None if val.labels is None else val.labels.to(device)
    x0 = diffused_image(val.hr.to(device), cond, cfg.noise.residual)
    losses = [training_loss(net, x0, cond, gammas, cfg.noise, rng).item() for _ in range(repeats)]
    return float(np.mean(losses))


def sample_metrics(pipe: SR3Pipeline, val: ValBatch, steps: int) -> tuple[dict[str, float], Image.Image]:
    """The metrics of `sr3 eval` (colour fix as the model samples by default) with ST-LPIPS where the images are
    large enough for it, and the LR | SR | HR grid."""
    scale, perceptual = pipe.scale, min(val.hr.shape[-2:]) >= MIN_SIDE
    sr = pipe.super_resolve(val.lr, list(range(len(val.lr))), pipe.sampler_config(steps=steps), labels=val.labels).cpu()
    rows, scores = [], []
    for lr, out, hr in zip(val.lr, sr, val.hr):
        scores.append(image_scores(out, hr, lr, scale, perceptual))
        lr_big = F.interpolate(lr[None], scale_factor=scale, mode="nearest")[0]
        rows.append(np.concatenate([to_uint8(lr_big), to_uint8(out), to_uint8(hr)], axis=1))
    grid = Image.fromarray(np.concatenate(rows, axis=0))
    return mean_scores(scores), grid


def sample_grid(pipe: SR3Pipeline, val: ValBatch, steps: int) -> Image.Image:
    """A base model's samples (for the validation images' classes) beside the real images: sample | real rows."""
    samples = pipe.generate(len(val.hr), list(range(len(val.hr))), pipe.sampler_config(steps=steps), labels=val.labels)
    rows = [np.concatenate([to_uint8(s), to_uint8(r)], axis=1) for s, r in zip(samples.cpu(), val.hr)]
    return Image.fromarray(np.concatenate(rows, axis=0))
