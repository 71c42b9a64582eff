"""`sr3 eval`: PSNR, SSIM and consistency of a model (and of bicubic) on an HR folder."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from tqdm.auto import tqdm

from sr3.cli.common import (
    DEFAULT_CACHE, add_denoise_flag, add_sampling_flags, check_at_least_one, check_json, load_cli_upscaler,
)
from sr3.errors import SR3Error

EXAMPLES = """examples:
  sr3 eval --model natural-4x --hr Set5/HR --lr Set5/LRbicx4 --scale 4 --json set5.json
  sr3 eval --model runs/t91 --hr B100/HR --scale 4 --steps 100 --sampler ddpm
  sr3 eval --model faces-8x --hr UTKFace/images --scale 8 --holdout     # the model's held-out faces
  sr3 eval --model natural-4x --hr B100/HR --scale 4 --perceptual        # ST-LPIPS, FID/KID, fool rates too
  sr3 eval --model natural-4x --hr RealSR/HR --lr RealSR/LR --scale 4    # real camera pairs
  sr3 eval --model natural-16x --hr B100/HR --scale 16 --perceptual       # an SR-only cascade, 64 -> 1024
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval", help="evaluate a model on an HR folder", epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--model", required=True,
                   help="shipped model name, run directory, checkpoint folder or .safetensors file, or an SR-only "
                   "cascade (its cascade.yaml, folder or shipped name): the last stage's output is scored")
    p.add_argument("--hr", required=True, help="folder of HR images")
    p.add_argument("--lr", help="folder of LR images with the same names (default: made from HR by --degradation)")
    p.add_argument("--degradation",
                   help="how LR images are made from HR when --lr is not given (default: the model's data.degradation, "
                   "bicubic for the shipped models)")
    p.add_argument("--scale", required=True, type=int, help="SR factor; must match the model")
    p.add_argument(
        "--holdout",
        action="store_true",
        help="only the model's held-out images (its data.holdout split), resized as it was trained (faces, classes)",
    )
    p.add_argument("--limit", type=int, help="only the first N images")
    p.add_argument("--skip", type=int, default=0, help="leave out the first N images (e.g. those settings were chosen on)")
    add_sampling_flags(p, "the low-frequency colour correction (default: the model's, as sr3 upscale samples it)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", help="torch device, e.g. cuda")
    p.add_argument("--batch", type=int, default=1, help="images of one size sampled together (faster on a GPU)")
    add_denoise_flag(p)
    p.add_argument("--set", action="append", metavar="STAGE.KEY=VALUE",
                   help="a cascade: override a stage's setting, e.g. 1.aug_level=0.1 (repeatable)")
    p.add_argument("--perceptual", action="store_true",
                   help="also ST-LPIPS per image, FID/KID and the classifier fool rates of the set "
                   "(needs the FID extra: pip install 'sr3[fid]')")
    p.add_argument("--patch", type=int, default=128,
                   help="FID/KID crop side when the HR images differ in size (default 128; same-size sets use whole images)")
    p.add_argument("--patch-fid", action="store_true",
                   help="FID/KID on --patch crops even when the HR images share one size (e.g. RealSR's 512-px images)")
    p.add_argument("--cache", default=DEFAULT_CACHE, help="HR feature cache folder")
    p.add_argument("--json", help="write all figures, per image too, to this JSON file")
    p.add_argument("--quiet", action="store_true")


BASELINES = ("prediction", "bicubic")  # the rows `sr3.evaluate.evaluate` may add beside the model's


def format_table(result: dict) -> str:
    """The mean metrics of the model, of the prediction it refines (if not bicubic) and of bicubic, aligned."""
    from sr3.metrics.scores import format_scores, score_header

    methods = [("sr3", result)] + [(name, result[name]) for name in BASELINES if name in result]
    lines = [f"{'method':<12}{score_header(result)}"]
    for name, r in methods:
        lines.append(f"{name:<12}{format_scores(r)}")
    nfe = result["nfe"]
    if "stages" in result:
        how = "; ".join(f"stage {k}: {s['sampler']} {s['steps']}" + (f" at aug_level {s['aug_level']}" if s["aug_level"] else "")
                        for k, s in enumerate(result["stages"]))
        how += f" ({_count(nfe, 'network evaluation')} in all)"
    else:
        how = f"{result['sampler']} sampler, {_count(result['steps'], 'step')} ({_count(nfe, 'network evaluation')})"
        if result.get("sigma_max"):
            how += f" from the prediction at sigma {result['sigma_max']:g}" + (", projected" if result["project"] else "")
        how += ", colour fix" if result["colour_fix"] else ", no colour fix"
    if result["precision"] != "fp32":
        how += f", {result['precision']}"
    lines.append(f"{result['n_images']} images, {how}, {result['seconds_per_image']:.2f} s/image")
    if "fid" in result:
        lines += ["", *_set_table(methods)]
        crops = "whole images" if not result["fid_patch"] else f"{result['fid_patch']}-px crops"
        lines.append(f"FID/KID on {result['fid_n']} {crops} against the HR ones; classifier fool rate (2AFC, 50% = "
                     f"indistinguishable) on {result['fool_rate_n']} crop pairs of the odd-numbered images, 95% interval")
    return "\n".join(lines)


def _set_table(methods: list[tuple[str, dict]]) -> list[str]:
    """The set-level figures (`sr3.metrics.perceptual.SET_METRICS`) the results hold, one row per method."""
    from sr3.metrics.perceptual import SET_METRICS

    shown = {key: m for key, m in SET_METRICS.items() if key in methods[0][1]}
    cells = [[m.show(r) for m in shown.values()] for _, r in methods]
    widths = [max(len(m.label), *(len(row[j]) for row in cells)) + 2 for j, m in enumerate(shown.values())]
    lines = [f"{'method':<12}" + "".join(f"{m.label:>{w}}" for m, w in zip(shown.values(), widths))]
    for (name, _), row in zip(methods, cells):
        lines.append(f"{name:<12}" + "".join(f"{c:>{w}}" for c, w in zip(row, widths)))
    return lines


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def run(args: argparse.Namespace) -> None:
    from sr3.evaluate import evaluate, model_pairs, same_size_batches
    from sr3.metrics.perceptual import PerceptualConfig

    check_json(args.json)
    check_at_least_one(steps=args.steps, batch=args.batch, patch=args.patch)
    if args.patch_fid and not args.perceptual:
        raise SR3Error("--patch-fid is a setting of the perceptual figures: add --perceptual")
    perceptual = PerceptualConfig(patch=args.patch, patches=args.patch_fid, cache_dir=args.cache) if args.perceptual else None
    upscaler = load_cli_upscaler(args)
    if args.scale != upscaler.scale:
        raise SR3Error(f"model {args.model} upscales x{upscaler.scale}, but --scale {args.scale} was given")
    pairs = model_pairs(upscaler, args.hr, args.lr, args.holdout, args.limit, args.degradation, args.seed, args.skip)
    with tqdm(total=len(same_size_batches(pairs, args.batch)) * upscaler.steps, unit="step", disable=args.quiet) as bar:
        result = evaluate(upscaler, pairs, args.seed, on_image=bar.set_description, progress=lambda _: bar.update(),
                          batch_size=args.batch, perceptual=perceptual)
    result["model"] = str(args.model)
    print(format_table(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
