"""`sr3 schedule`: search the inference sigma grid of a model for a step budget, and save it as the default."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from tqdm.auto import tqdm

from sr3.cli.common import check_at_least_one, check_json
from sr3.errors import SR3Error
from sr3.samplers import SAMPLERS

EXAMPLES = """examples:
  sr3 schedule --model natural-4x --hr Set14/HR --lr Set14/LRbicx4 --limit 4 --sampler euler --nfe 8
  sr3 schedule --model runs/faces --hr UTKFace/images --holdout --limit 8 --sampler heun --nfe 7 \\
      --reference ddpm:1000 --output faces-tuned.safetensors
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "schedule", help="search the sampling schedule for a step budget", epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--model", required=True, help="shipped model name, run directory or weights file")
    p.add_argument("--hr", required=True, help="folder of HR validation images")
    p.add_argument("--lr", help="folder of LR images with the same names (default: MATLAB-style bicubic)")
    p.add_argument("--holdout", action="store_true", help="only the model's held-out images, resized as trained")
    p.add_argument("--limit", type=int, default=8, help="search on the first N images")
    p.add_argument("--sampler", default="euler", metavar="SAMPLER",
                   help=f"sampler whose grid is searched: {' | '.join(n for n, s in SAMPLERS.items() if not s.regression)} "
                   "(default euler)")
    p.add_argument("--nfe", type=int, default=8, help="network evaluations per image")
    p.add_argument("--objective", default="psnr", choices=["psnr", "st_lpips", "fid"],
                   help="what the grid is chosen by (default psnr; SR3 chose by FID: fid and st_lpips need sr3[fid])")
    p.add_argument("--min-psnr", type=float, help="only grids scoring at least this PSNR-Y (dB) may be chosen")
    p.add_argument("--max-consistency", type=float, help="only grids with at most this consistency error may be chosen")
    p.add_argument("--reference", help="SAMPLER:STEPS to match (e.g. ddpm:1000) instead of an objective")
    p.add_argument("--colour-fix", action=argparse.BooleanOptionalAction, default=None,
                   help="score with the low-frequency colour correction (default: the model's, as sr3 eval)")
    p.add_argument("--output", help="write the model with the found schedule as its default sampler (.safetensors)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", help="write every candidate's scores here")
    p.add_argument("--quiet", action="store_true")


def run(args: argparse.Namespace) -> None:
    from sr3.checkpoint import export_weights
    from sr3.evaluate import model_pairs
    from sr3.metrics.scores import format_scores, score_header
    from sr3.pipeline import SR3Pipeline
    from sr3.pretrained import resolve_model
    from sr3.samplers import get_sampler, parse_sampler_spec
    from sr3.schedule_search import Objective, reference_run, sampler_overrides, search
    from sr3.upscaler import ModelUpscaler

    check_json(args.json)
    check_at_least_one(nfe=args.nfe, limit=args.limit)
    get_sampler(args.sampler)
    objective = Objective(args.objective, args.min_psnr, args.max_consistency)
    if args.reference and args.objective != "psnr":
        raise SR3Error("--reference is matched on PSNR-Y and consistency; leave out --objective")
    if args.output and not args.output.endswith(".safetensors"):
        raise SR3Error(f"--output must be a .safetensors file; got {args.output}")
    pipe = SR3Pipeline.load(args.model)
    if pipe.cfg.noise.regression:
        raise SR3Error(f"{args.model} is a regression model: its one evaluation has no sampling schedule to search")
    pairs = model_pairs(ModelUpscaler(pipe, args.model), args.hr, args.lr, args.holdout, args.limit)
    reference = None
    if args.reference:
        name, steps = parse_sampler_spec(args.reference)
        reference = reference_run(pipe, pairs, pipe.sampler_config(steps, name, colour_fix=args.colour_fix), args.seed)
        print(f"reference {args.reference}: PSNR-Y {reference['psnr_y']:.2f}  consistency {reference['consistency']:.2e}")
    with tqdm(desc="grids", unit="grid", disable=args.quiet) as bar:
        ranked = search(pipe, pairs, args.sampler, args.nfe, reference, args.seed, lambda _: bar.update(), args.colour_fix,
                        objective)
    print(f"{'rho':>5}{'sigma_max':>11}{'sigma_min':>11}{score_header(ranked[0].scores)}{'score':>9}")
    for c in ranked[:5]:
        print(f"{c.rho:>5g}{c.sigma_max:>11.4g}{c.sigma_min:>11.4g}{format_scores(c.scores)}{c.score:>9.3f}")
    best = ranked[0]
    if best.score == float("-inf"):
        raise SR3Error("no grid keeps to --min-psnr and --max-consistency; loosen them")
    print(f"best on {len(pairs)} images: {args.sampler}, {args.nfe} evaluations, sigmas {[round(s, 5) for s in best.sigmas]}")
    if args.json:
        Path(args.json).write_text(json.dumps({"reference": reference, "candidates": [vars(c) for c in ranked]}, indent=2))
    if args.output:
        path = export_weights(resolve_model(args.model), args.output, overrides=sampler_overrides(args.sampler, best))
        print(f"wrote {path}: this schedule is its default sampler")
