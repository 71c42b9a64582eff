"""Set-level perceptual figures of SR outputs against their HR images: FID/KID and a classifier fool rate.

Protocols (stated beside every figure, with its counts):
- FID and KID with the TF-FID Inception (`sr3.metrics.fid`) on whole images when every HR image has one
  size (faces), else on non-overlapping `patch` x `patch` crops at the same positions in the output and
  the HR image, on a grid inside the `scale`-pixel border.
- Classifier fool rate, SR3's two-alternative forced choice with a classifier for the judge: a small
  ResNet learns to tell HR crops from SR crops (32 x 32, the same grid positions) on the even-numbered
  images, and on the odd-numbered ones is shown each (HR crop, SR crop) pair and picks the crop it scores
  more camera-like. The fool rate is the share of pairs where it picks the SR crop: 50% means it cannot
  tell them apart, 0% that it always can. With `lr`, it sees the upsampled LR crop beside each candidate
  (SR3's first task). A machine's judgement, not a human one; its 95% interval (Wilson) treats the pairs
  as independent, which crops of one image are not quite.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from sr3.errors import SR3Error
from sr3.metrics.cas import CASConfig, train_classifier
from sr3.metrics.fid import cached_features, fid_kid, inception_features

FID_PATCH = 128
FOOL_CROP = 32


@dataclass(frozen=True)
class SetMetric:
    """A figure of a whole set of outputs and how to show it: column label, which way is better, the value as
    text (with its spread or interval), and the keys it adds to a result beside its own (counts, intervals)."""

    label: str
    higher_is_better: bool
    show: Callable[[dict], str]
    extra: tuple[str, ...] = ()


def _interval(key: str) -> Callable[[dict], str]:
    return lambda r: f"{100 * r[key]:.1f}% [{100 * r[key + '_low']:.1f}, {100 * r[key + '_high']:.1f}]"


# The set-level figures `set_scores` adds, one table as `sr3.metrics.scores.SR_METRICS` is for per-image ones.
SET_METRICS: dict[str, SetMetric] = {
    "fid": SetMetric("FID", False, lambda r: f"{r['fid']:.2f}", ("fid_n", "fid_patch")),
    "kid": SetMetric("KID", False, lambda r: f"{r['kid']:.4f} ± {r['kid_std']:.4f}", ("kid_std",)),
    "fool_rate": SetMetric("fool rate", True, _interval("fool_rate"), ("fool_rate_low", "fool_rate_high", "fool_rate_n")),
    "fool_rate_lr": SetMetric("fool rate, LR shown", True, _interval("fool_rate_lr"),
                              ("fool_rate_lr_low", "fool_rate_lr_high", "fool_rate_lr_n")),
}


def set_metric_keys() -> tuple[str, ...]:
    """Every key the set-level figures add to a result."""
    return tuple(k for name, m in SET_METRICS.items() for k in (name, *m.extra))


@dataclass(frozen=True)
class FoolRateConfig:
    """The judge's budget: crop side, crops per image at most, training epochs, width, seed."""

    crop: int = FOOL_CROP
    max_crops: int = 16
    epochs: int = 8
    width: int = 16
    seed: int = 0


def grid_positions(height: int, width: int, size: int, border: int) -> list[tuple[int, int]]:
    """Top-left corners of non-overlapping size x size crops tiling the image inside a border, row by row."""
    rows = range(border, height - border - size + 1, size)
    cols = range(border, width - border - size + 1, size)
    return [(top, left) for top in rows for left in cols]


def crops(images: list[torch.Tensor], size: int | None, border: int, limit: int | None = None) -> tuple[torch.Tensor, list[int]]:
    """Crops [N, C, size, size] of images [C, H, W] on their grids (whole images for size None), and each crop's image index."""
    if size is None:
        if len({tuple(im.shape) for im in images}) != 1:
            raise SR3Error("whole-image FID needs images of one size; give a patch size")
        return torch.stack(images), list(range(len(images)))
    out, owners = [], []
    for i, image in enumerate(images):
        positions = grid_positions(image.shape[-2], image.shape[-1], size, border)[:limit]
        out += [image[:, t : t + size, s : s + size] for t, s in positions]
        owners += [i] * len(positions)
    if not out:
        raise SR3Error(f"the images are too small for {size}-pixel crops inside a {border}-pixel border")
    return torch.stack(out), owners


def features(images: torch.Tensor, net, batch: int = 50) -> np.ndarray:
    """Inception features of a batch of crops or images, in chunks."""
    return np.concatenate([inception_features(images[i : i + batch], net) for i in range(0, len(images), batch)])


def fid_of_outputs(outputs: list[torch.Tensor], reference: np.ndarray, net, patch: int | None, border: int) -> dict:
    """FID/KID of SR outputs against HR features already computed on the same crops."""
    found, _ = crops(outputs, patch, border)
    if len(found) < 2:
        raise SR3Error(f"FID needs at least 2 {'images' if patch is None else 'patches'}; got {len(found)}")
    scores = fid_kid(features(found, net), reference)
    return {"fid": scores["fid"], "kid": scores["kid"], "kid_std": scores["kid_std"], "fid_n": scores["n_images"]}


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval of a binomial proportion (95% for z = 1.96)."""
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def fool_rate(
    real: list[torch.Tensor],
    fake: list[torch.Tensor],
    border: int,
    lr: list[torch.Tensor] | None = None,
    cfg: FoolRateConfig = FoolRateConfig(),
) -> dict:
    """The classifier fool rate of SR outputs `fake` against their HR images `real` (lists of [3, H, W] in [-1, 1]).

    `lr`: the upsampled LR images, shown beside each candidate. Returns the rate, its 95% interval and the
    number of test pairs.
    """
    if len(real) < 2:
        raise SR3Error("the classifier fool rate needs at least 2 images (one to train the judge, one to test it)")
    r, owners = crops(real, cfg.crop, border, cfg.max_crops)
    f, _ = crops(fake, cfg.crop, border, cfg.max_crops)
    if lr is not None:
        u, _ = crops(lr, cfg.crop, border, cfg.max_crops)
        r, f = torch.cat([r, u], dim=1), torch.cat([f, u], dim=1)
    test = torch.tensor([o % 2 == 1 for o in owners])
    images = torch.cat([r[~test], f[~test]])
    labels = torch.cat([torch.ones(int((~test).sum()), dtype=torch.long), torch.zeros(int((~test).sum()), dtype=torch.long)])
    judge = train_classifier(images, labels, 2, CASConfig(epochs=cfg.epochs, width=cfg.width, seed=cfg.seed))
    with torch.inference_mode():
        camera_real = _camera_score(judge, r[test])
        camera_fake = _camera_score(judge, f[test])
    fooled, n = int((camera_fake > camera_real).sum()), int(test.sum())
    low, high = wilson_interval(fooled, n)
    return {"fool_rate": fooled / n, "fool_rate_low": low, "fool_rate_high": high, "fool_rate_n": n}


def _camera_score(judge: torch.nn.Module, x: torch.Tensor, batch: int = 256) -> torch.Tensor:
    """How camera-like the judge finds each crop: its logit margin of "real" over "SR"."""
    logits = torch.cat([judge(x[i : i + batch]) for i in range(0, len(x), batch)])
    return logits[:, 1] - logits[:, 0]


@dataclass(frozen=True)
class PerceptualConfig:
    """How the set-level figures are taken: the FID patch side (used when HR sizes differ, or always with
    `patches`: many crops of a few large images give a steadier FID than the images whole), the judge (None: no
    fool rates), the cache."""

    patch: int = FID_PATCH
    patches: bool = False
    fool: FoolRateConfig | None = field(default_factory=FoolRateConfig)
    cache_dir: str | None = None  # HR crop features are kept here, keyed by the crops' pixels and the protocol


def fid_patch(hrs: list[torch.Tensor], cfg: PerceptualConfig) -> int | None:
    """Whole images (None) when every HR image has one size and crops are not asked for, else `cfg.patch`-pixel crops."""
    return None if not cfg.patches and len({tuple(h.shape) for h in hrs}) == 1 else cfg.patch


def reference_features(hrs: list[torch.Tensor], patch: int | None, border: int, net, cache_dir: str | None) -> np.ndarray:
    """Inception features of the HR crops (or images), from the cache when these exact pixels were seen before."""
    found, _ = crops(hrs, patch, border)
    pixels = ((found.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).numpy()
    key = hashlib.sha1(pixels.tobytes() + f"|{patch}|{border}|{pixels.shape}".encode()).hexdigest()[:16]
    cache = Path(cache_dir) / f"sr-ref-{key}.npz" if cache_dir else None
    return cached_features(cache, lambda: features(found, net))


def set_scores(
    outputs: list[torch.Tensor], hrs: list[torch.Tensor], upsampled: list[torch.Tensor], border: int,
    reference: np.ndarray, patch: int | None, net, cfg: PerceptualConfig,
) -> dict:
    """FID/KID and both fool rates (without and with the upsampled LR beside the candidates) of one method's outputs."""
    scores = fid_of_outputs(outputs, reference, net, patch, border)
    scores["fid_patch"] = patch or 0
    if cfg.fool is not None:
        scores.update(fool_rate(hrs, outputs, border, cfg=cfg.fool))
        with_lr = fool_rate(hrs, outputs, border, lr=upsampled, cfg=cfg.fool)
        scores.update({k.replace("fool_rate", "fool_rate_lr"): v for k, v in with_lr.items()})
    return scores
