"""The per-image SR metrics, one table: evaluation, training validation, the schedule search and the printed
tables all read it, so a new metric is one entry here.

Every metric scores the output as saved, rounded to 8 bits: PSNR/SSIM on the Y channel (and RGB) with
`scale` border pixels cropped, as SR papers report them, SR3's consistency against the LR input, and,
when perceptual figures are asked for, ST-LPIPS on the whole image (`sr3.metrics.st_lpips`). Set-level
figures (FID/KID, the classifier fool rate) are `sr3.metrics.perceptual`'s.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch

from sr3.imaging import quantize, to_uint8
from sr3.metrics.consistency import consistency
from sr3.metrics.psnr_ssim import psnr, ssim
from sr3.metrics.st_lpips import st_lpips


@dataclass(frozen=True)
class ScoredImage:
    """One SR output beside its references: tensors [C, H, W] in [-1, 1] (`sr` already rounded to 8 bits)."""

    sr: torch.Tensor
    hr: torch.Tensor
    lr: torch.Tensor
    scale: int

    @cached_property
    def sr8(self) -> np.ndarray:
        return to_uint8(self.sr)

    @cached_property
    def hr8(self) -> np.ndarray:
        return to_uint8(self.hr)


@dataclass(frozen=True)
class Metric:
    """How to compute a metric of one image and how to show it: column label, number format, which way is better."""

    fn: Callable[[ScoredImage], float]
    label: str
    fmt: str
    higher_is_better: bool
    perceptual: bool = False  # computed only when perceptual figures are asked for (a network per image)


SR_METRICS: dict[str, Metric] = {
    "psnr_y": Metric(lambda s: psnr(s.sr8, s.hr8, crop_border=s.scale, y_channel=True), "PSNR-Y", ".2f", True),
    "ssim_y": Metric(lambda s: ssim(s.sr8, s.hr8, crop_border=s.scale, y_channel=True), "SSIM-Y", ".4f", True),
    "psnr_rgb": Metric(lambda s: psnr(s.sr8, s.hr8, crop_border=s.scale), "PSNR-RGB", ".2f", True),
    "ssim_rgb": Metric(lambda s: ssim(s.sr8, s.hr8, crop_border=s.scale), "SSIM-RGB", ".4f", True),
    "consistency": Metric(lambda s: consistency(s.sr[None], s.lr[None], s.scale), "consist.", ".2e", False),
    "st_lpips": Metric(lambda s: float(st_lpips(s.sr, s.hr)), "ST-LPIPS", ".4f", False, perceptual=True),
}


def metric_names(perceptual: bool = False) -> list[str]:
    """The metrics computed per image: the distortion ones, and the perceptual ones too if asked."""
    return [name for name, m in SR_METRICS.items() if perceptual or not m.perceptual]


def image_scores(sr: torch.Tensor, hr: torch.Tensor, lr: torch.Tensor, scale: int, perceptual: bool = False) -> dict[str, float]:
    """The metrics of one output [C, H, W] in [-1, 1] against its HR and LR, the output rounded to 8 bits first."""
    scored = ScoredImage(quantize(sr.cpu()), hr.cpu(), lr.cpu(), scale)
    return {name: SR_METRICS[name].fn(scored) for name in metric_names(perceptual)}


def mean_scores(rows: list[dict[str, float]]) -> dict[str, float]:
    """The mean of every metric the rows hold, over the rows."""
    return {name: float(np.mean([r[name] for r in rows])) for name in SR_METRICS if name in rows[0]}


def format_scores(scores: dict[str, float]) -> str:
    """One row of the metric values `scores` holds, in table order, aligned under `score_header(scores)`."""
    return "".join(f"{format(scores[name], m.fmt):>{_width(name)}}" for name, m in SR_METRICS.items() if name in scores)


def score_header(scores: dict[str, float]) -> str:
    """The column labels of `format_scores` for the same scores."""
    return "".join(f"{m.label:>{_width(name)}}" for name, m in SR_METRICS.items() if name in scores)


def _width(name: str) -> int:
    return max(9, len(SR_METRICS[name].label) + 2)
