"""`sr3 eval`: PSNR, SSIM and consistency of a model (and of bicubic) on an HR folder."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from tqdm.auto import tqdm

from sr3.cli.common import (
    add_denoise_flag, add_sampling_flags, check_at_least_one, check_json, load_upscaling_cascade, warn_slow_bf16,
)
from sr3.config import check_tile
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
    p.add_argument("--cache", default=str(Path.home() / ".cache" / "sr3" / "fid"), help="HR feature cache folder")
    p.add_argument("--json", help="write all figures, per image too, to this JSON file")
    p.add_argument("--quiet", action="store_true")


def format_table(result: dict) -> str:
    """The mean metrics of the model and bicubic as an aligned text table."""
    from sr3.metrics.scores import format_scores, score_header

    lines = [f"{'method':<10}{score_header(result)}"]
    for name, r in (("sr3", result), ("bicubic", result["bicubic"])):
        lines.append(f"{name:<10}{format_scores(r)}")
    nfe = result["nfe"]
    if "stages" in result:
        how = "; ".join(f"stage {k}: {s['sampler']} {s['steps']}" + (f" at aug_level {s['aug_level']}" if s["aug_level"] else "")
                        for k, s in enumerate(result["stages"]))
        how += f" ({_count(nfe, 'network evaluation')} in all)"
    else:
        how = f"{result['sampler']} sampler, {_count(result['steps'], 'step')} ({_count(nfe, 'network evaluation')})"
        how += ", colour fix" if result["colour_fix"] else ", no colour fix"
    if result["precision"] != "fp32":
        how += f", {result['precision']}"
    lines.append(f"{result['n_images']} images, {how}, {result['seconds_per_image']:.2f} s/image")
    if "fid" in result:
        lines += ["", f"{'method':<10}{'FID':>9}{'KID':>17}{'fool rate':>22}{'fool rate, LR shown':>24}"]
        for name, r in (("sr3", result), ("bicubic", result["bicubic"])):
            lines.append(f"{name:<10}{r['fid']:>9.2f}{r['kid']:>9.4f} ± {r['kid_std']:.4f}{_rate(r, 'fool_rate'):>22}"
                         f"{_rate(r, 'fool_rate_lr'):>24}")
        crops = "whole images" if not result["fid_patch"] else f"{result['fid_patch']}-px crops"
        lines.append(f"FID/KID on {result['fid_n']} {crops} against the HR ones; classifier fool rate (2AFC, 50% = "
                     f"indistinguishable) on {result['fool_rate_n']} crop pairs of the odd-numbered images, 95% interval")
    return "\n".join(lines)


def _rate(r: dict, key: str) -> str:
    return f"{100 * r[key]:.1f}% [{100 * r[key + '_low']:.1f}, {100 * r[key + '_high']:.1f}]"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def run(args: argparse.Namespace) -> None:
    from sr3.metrics.perceptual import PerceptualConfig
    from sr3.pretrained import is_cascade

    check_json(args.json)
    check_tile(args.tile, "--tile")
    check_at_least_one(steps=args.steps, batch=args.batch, patch=args.patch)
    perceptual = PerceptualConfig(patch=args.patch, cache_dir=args.cache) if args.perceptual else None
    total, score = (cascade_scorer if is_cascade(args.model) else model_scorer)(args)
    with tqdm(total=total, unit="step", disable=args.quiet) as bar:
        result = score(perceptual, bar)
    result["model"] = str(args.model)
    print(format_table(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))


def model_scorer(args: argparse.Namespace):
    """(progress total, scoring function) for one model."""
    from sr3.conditioning import check_denoise
    from sr3.evaluate import evaluate, model_pairs, same_size_batches
    from sr3.pipeline import SR3Pipeline

    if args.set:
        raise SR3Error("--set STAGE.KEY=VALUE sets a cascade's stages; for one model use --steps, --sampler, --tile")
    pipe = SR3Pipeline.load(args.model, args.device, args.precision)
    warn_slow_bf16(pipe)
    check_denoise(args.denoise, pipe.cfg)
    check_scale(args, pipe.scale)
    pairs = model_pairs(pipe, args.model, args.hr, args.lr, args.holdout, args.limit, args.degradation, args.seed)
    sampler = pipe.sampler_config(args.steps, args.sampler, args.tile, args.colour_fix)

    def score(perceptual, bar):
        return evaluate(pipe, pairs, sampler, args.seed, on_image=bar.set_description, progress=lambda _: bar.update(),
                        batch_size=args.batch, perceptual=perceptual, denoise=args.denoise)

    return len(same_size_batches(pairs, args.batch)) * sampler.steps, score


def cascade_scorer(args: argparse.Namespace):
    """(progress total, scoring function) for an SR-only cascade: LR made by its first stage's degradation,
    held-out images sized as its last stage was trained (every stage must hold out the same split)."""
    from sr3.evaluate import evaluate_cascade, model_pairs, same_size_batches

    cascade = load_upscaling_cascade(args)
    check_scale(args, cascade.scale)
    first, last = cascade.pipelines[0], cascade.pipelines[-1]
    if args.holdout and len({p.cfg.data.holdout for p in cascade.pipelines}) > 1:
        raise SR3Error(f"the stages of {args.model} hold out different splits (data.holdout), so --holdout has no one split")
    pairs = model_pairs(last, args.model, args.hr, args.lr, args.holdout, args.limit,
                        args.degradation or first.cfg.data.degradation, args.seed, cascade.scale)

    def score(perceptual, bar):
        return evaluate_cascade(cascade, pairs, args.seed, args.tile, on_image=bar.set_description,
                                progress=lambda _: bar.update(), batch_size=args.batch, perceptual=perceptual)

    return len(same_size_batches(pairs, args.batch)) * cascade.sampling_steps(), score


def check_scale(args: argparse.Namespace, scale: int) -> None:
    if args.scale != scale:
        raise SR3Error(f"model {args.model} upscales x{scale}, but --scale {args.scale} was given")
