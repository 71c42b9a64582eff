"""`sr3 eval`: PSNR, SSIM and consistency of a model (and of bicubic) on an HR folder."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from tqdm.auto import tqdm

from sr3.cli.common import add_precision_flag, check_json, check_tile, warn_slow_bf16
from sr3.errors import SR3Error

EXAMPLES = """examples:
  sr3 eval --model natural-4x --hr Set5/HR --lr Set5/LRbicx4 --scale 4 --json set5.json
  sr3 eval --model runs/t91 --hr B100/HR --scale 4 --steps 100 --sampler ddpm
  sr3 eval --model faces-8x --hr UTKFace/images --scale 8 --holdout     # the model's held-out faces
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval", help="evaluate a model on an HR folder", epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--model", required=True, help="shipped model name, run directory, checkpoint folder or .safetensors file")
    p.add_argument("--hr", required=True, help="folder of HR images")
    p.add_argument("--lr", help="folder of LR images with the same names (default: made by MATLAB-style bicubic)")
    p.add_argument("--scale", required=True, type=int, help="SR factor; must match the model")
    p.add_argument("--steps", type=int, help="sampling steps (default: the model's)")
    p.add_argument("--sampler", help="sampler name (default: the model's)")
    p.add_argument(
        "--holdout",
        action="store_true",
        help="only the model's held-out images (its data.holdout split), resized as it was trained (faces, classes)",
    )
    p.add_argument("--limit", type=int, help="only the first N images")
    p.add_argument(
        "--colour-fix",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="apply the low-frequency colour correction, as sr3 upscale does by default",
    )
    p.add_argument("--tile", type=int, help="tile size in input pixels (default: the model's; 0: whole images)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", help="torch device, e.g. cuda")
    add_precision_flag(p)
    p.add_argument("--batch", type=int, default=1, help="images of one size sampled together (faster on a GPU)")
    p.add_argument("--json", help="write all figures, per image too, to this JSON file")
    p.add_argument("--quiet", action="store_true")


def format_table(result: dict) -> str:
    """The mean metrics of the model and bicubic as an aligned text table."""
    lines = [f"{'method':<10}{'PSNR-Y':>9}{'SSIM-Y':>9}{'PSNR-RGB':>10}{'SSIM-RGB':>10}{'consist.':>12}"]
    for name, r in (("sr3", result), ("bicubic", result["bicubic"])):
        lines.append(
            f"{name:<10}{r['psnr_y']:>9.2f}{r['ssim_y']:>9.4f}{r['psnr_rgb']:>10.2f}{r['ssim_rgb']:>10.4f}{r['consistency']:>12.2e}"
        )
    how = "regression, 1 network evaluation" if result.get("regression") else (
        f"{result['sampler']} {result['steps']} steps ({result['nfe']} network evaluations)"
    )
    if result.get("precision", "fp32") != "fp32":
        how += f", {result['precision']}"
    lines.append(f"{result['n_images']} images, {how}, {result['seconds_per_image']:.2f} s/image")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> None:
    from sr3.evaluate import evaluate, model_pairs, same_size_batches
    from sr3.pipeline import SR3Pipeline

    check_json(args.json)
    check_tile(args.tile)
    pipe = SR3Pipeline.load(args.model, args.device, args.precision)
    warn_slow_bf16(pipe)
    if args.scale != pipe.scale:
        raise SR3Error(f"model {args.model} upscales x{pipe.scale}, but --scale {args.scale} was given")
    if args.steps is not None and args.steps < 1:
        raise SR3Error("--steps must be at least 1")
    pairs = model_pairs(pipe, args.model, args.hr, args.lr, args.holdout, args.limit)
    sampler = pipe.sampler_config(args.steps, args.sampler)
    with tqdm(total=len(same_size_batches(pairs, args.batch)) * sampler.steps, unit="step", disable=args.quiet) as bar:
        result = evaluate(
            pipe, pairs, sampler, args.seed, on_image=bar.set_description, progress=lambda _: bar.update(),
            colour_fix=args.colour_fix, tile=args.tile, batch_size=args.batch,
        )
    result["model"] = str(args.model)
    print(format_table(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
