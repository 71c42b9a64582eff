"""`sr3 eval`: SR metrics over an HR folder as SR papers report them, with bicubic alongside.

The metrics are `sr3.metrics.scores.SR_METRICS`; LR images are given, or made from the HR ones by a
degradation of `sr3.data.degradations` (MATLAB-style bicubic by default), as training makes them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from sr3.conditioning import upsample
from sr3.data.degradations import degraded_pair, get_degradation
from sr3.data.pairs import split_files, square_resize
from sr3.errors import SR3Error
from sr3.imaging import list_images, load_image, quantize, to_pil, to_tensor
from sr3.metrics.fid import load_inception
from sr3.metrics.perceptual import PerceptualConfig, fid_patch, reference_features, set_scores
from sr3.metrics.scores import image_scores, mean_scores
from sr3.noise import seeded_generator
from sr3.upscaler import Upscaler


@dataclass
class EvalPair:
    name: str
    hr: torch.Tensor  # [C, H, W] in [-1, 1], H and W multiples of the scale
    lr: torch.Tensor  # [C, H/scale, W/scale]


def evaluation_pairs(
    hr_dir: str | Path,
    lr_dir: str | Path | None,
    scale: int,
    size: int | None = None,
    holdout: float = 0.0,
    limit: int | None = None,
    degradation: str = "bicubic",
    seed: int = 0,
    skip: int = 0,
) -> list[EvalPair]:
    """HR/LR pairs: LR files matched by name (HR cropped top-left to scale x LR), or LR made by `degradation`.

    `size`: each HR image is centre-cropped square and resized to size x size first (as face models are
    trained). `holdout` > 0: only the images of that held-out split (see `sr3.data.pairs.in_holdout`).
    `limit`: only the first N images (in sorted order) after the first `skip` (e.g. held-out images kept
    apart for choosing settings). A random degradation draws image i's LR from a generator seeded by
    (`seed`, i), i counted in the sorted list, so the pairs are fixed.
    """
    get_degradation(degradation)
    pairs = []
    lr_files = {p.stem: p for p in list_images(lr_dir)} if lr_dir else {}
    hr_files = list_images(hr_dir)
    if holdout > 0:
        hr_files = split_files(hr_files, holdout, "holdout")
        if not hr_files:
            raise SR3Error(f"no image of {hr_dir} is in the held-out split")
    if skip < 0 or (skip and skip >= len(hr_files)):
        raise SR3Error(f"--skip {skip} leaves none of the {len(hr_files)} images")
    stop = None if limit is None else skip + limit
    for i, hr_path in enumerate(hr_files[skip:stop], start=skip):
        hr_img = load_image(hr_path)
        if size is not None:
            if lr_dir:
                raise SR3Error("resizing HR images (size) cannot pair with given LR files")
            hr_img = to_pil(square_resize(hr_img, size))  # 8-bit, as a saved HR image
        if lr_dir:
            if hr_path.stem not in lr_files:
                raise SR3Error(f"no LR image named {hr_path.stem}.* in {lr_dir}")
            lr = to_tensor(load_image(lr_files[hr_path.stem]))
            h, w = lr.shape[1] * scale, lr.shape[2] * scale
            # HR may only lose its last rows/columns to the crop: fewer than `scale`, or 12 for "GTmod12" sets
            slack = max(scale, 12)
            if not (0 <= hr_img.height - h < slack and 0 <= hr_img.width - w < slack):
                raise SR3Error(
                    f"LR {lr_files[hr_path.stem]} ({lr.shape[2]}x{lr.shape[1]}) x{scale} does not match HR {hr_path}"
                    f" ({hr_img.width}x{hr_img.height}); wrong --scale?"
                )
            hr = to_tensor(hr_img.crop((0, 0, w, h)))
        else:
            hr, lr = degraded_pair(hr_img, scale, degradation, seeded_generator(seed, i))
        pairs.append(EvalPair(hr_path.stem, hr, lr))
    return pairs


def model_pairs(
    upscaler: Upscaler,
    hr_dir: str | Path,
    lr_dir: str | Path | None,
    holdout: bool,
    limit: int | None,
    degradation: str | None = None,
    seed: int = 0,
    skip: int = 0,
) -> list[EvalPair]:
    """Evaluation pairs for an upscaler at its scale: with `holdout`, only its held-out images, resized as it
    was trained (a cascade: as its last stage was); LR made by `degradation` (default: its own
    `data.degradation`, a cascade's first stage's) with per-image seeds from `seed`."""
    data = upscaler.evaluation_data(holdout)
    if holdout and data.holdout <= 0:
        raise SR3Error(f"model {upscaler.name} was trained without a held-out split (data.holdout = 0)")
    if limit is not None and limit < 1:
        raise SR3Error("--limit must be at least 1")
    size = data.hr_size if holdout and data.mode != "crops" else None
    degradation = degradation or data.degradation
    holdout_share = data.holdout if holdout else 0.0
    return evaluation_pairs(hr_dir, lr_dir, upscaler.scale, size, holdout_share, limit, degradation, seed, skip)


def same_size_batches(pairs: list[EvalPair], batch_size: int) -> list[tuple[int, list[EvalPair]]]:
    """Runs of at most `batch_size` consecutive pairs whose LR images have one shape, with each run's first index."""
    runs: list[tuple[int, list[EvalPair]]] = []
    for i, pair in enumerate(pairs):
        last = runs[-1][1] if runs else None
        if last is not None and len(last) < batch_size and last[0].lr.shape == pair.lr.shape:
            last.append(pair)
        else:
            runs.append((i, [pair]))
    return runs


def evaluate(
    upscaler: Upscaler,
    pairs: list[EvalPair],
    seed: int = 0,
    on_image: Callable[[str], None] | None = None,
    progress: Callable[[int], None] | None = None,
    batch_size: int = 1,
    perceptual: PerceptualConfig | None = None,
) -> dict:
    """The figures of an upscaler, of bicubic, and of the prediction it refines when that is more than bicubic
    (`prediction`), on every pair; image i is sampled with seed `seed + i`, and the result records how.

    `batch_size` > 1 samples consecutive pairs of the same size together (faster on a GPU); the noise of
    each image comes from its own seed, so the outputs are those of one-by-one sampling. `perceptual`
    adds ST-LPIPS per image and FID/KID and the classifier fool rates of the set (`sr3.metrics.perceptual`).
    """
    if batch_size < 1:
        raise SR3Error("the evaluation batch size must be at least 1")
    if perceptual and len(pairs) < 2:
        raise SR3Error(f"perceptual figures need at least 2 images (FID, and the fool rate's two halves); got {len(pairs)}")
    scale, wanted = upscaler.scale, perceptual is not None
    net = load_inception(upscaler.device) if wanted else None  # before sampling: a missing extra fails at once
    rows: dict[str, list[dict]] = {"sr": [], "bicubic": [], "prediction": []}
    kept: dict[str, list[torch.Tensor]] = {method: [] for method in (*rows, "hr")}
    seconds = 0.0
    for first, group in same_size_batches(pairs, batch_size):
        if on_image:
            on_image(group[0].name if len(group) == 1 else f"{group[0].name}..{group[-1].name}")
        lr = torch.stack([pair.lr for pair in group])
        start = time.perf_counter()
        outputs = {"sr": upscaler.super_resolve(lr, [seed + first + j for j in range(len(group))], progress)[0].cpu()}
        seconds += time.perf_counter() - start
        outputs["bicubic"] = [upsample(pair.lr, scale).clamp(-1, 1) for pair in group]
        prediction = upscaler.predict(lr)
        if prediction is not None:
            outputs["prediction"] = prediction.cpu()
        for j, pair in enumerate(group):
            for method, out in outputs.items():
                rows[method].append({"image": pair.name, **image_scores(out[j], pair.hr, pair.lr, scale, wanted)})
                if wanted:  # the outputs as saved, for the set-level figures
                    kept[method].append(quantize(out[j]))
            if wanted:
                kept["hr"].append(pair.hr)
    methods = [m for m in rows if rows[m]]
    sets = {m: {} for m in methods}
    if wanted:
        patch = fid_patch(kept["hr"], perceptual)
        reference = reference_features(kept["hr"], patch, scale, net, perceptual.cache_dir)
        for m in methods:
            sets[m] = set_scores(kept[m], kept["hr"], kept["bicubic"], scale, reference, patch, net, perceptual)
    baselines = {m: {**mean_scores(rows[m]), **sets[m], "n_images": len(pairs), "per_image": rows[m]} for m in methods[1:]}
    return {
        **mean_scores(rows["sr"]),
        **sets["sr"],
        "n_images": len(pairs),
        "scale": scale,
        "seed": seed,
        "seconds_per_image": seconds / max(1, len(pairs)),
        "per_image": rows["sr"],
        **baselines,
        **upscaler.settings(),
    }
