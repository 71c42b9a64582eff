"""`sr3 generate`: sample a class-conditional (or unconditional) base model, or a whole cascade."""

from __future__ import annotations

import argparse
from pathlib import Path

from tqdm.auto import tqdm

from sr3.cli.common import add_precision_flag, check_at_least_one, warn_slow_bf16
from sr3.errors import SR3Error
from sr3.samplers import SAMPLERS

EXAMPLES = """examples:
  sr3 generate --model tinyimagenet-10 --class lemon -n 16 -o lemons/ --seed 0
  sr3 generate --model cascade.yaml --class n07749582 -n 8 -o out/ --set 1.aug_level=0.2 --set 1.steps=10
  sr3 generate --model runs/base32 --class 3 -n 8 -o out/ --steps 100 --guidance 1.5
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "generate",
        help="sample a base model or a cascade",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--model", required=True, help="cascade (shipped name, YAML file or folder) or a base model's run/weights")
    p.add_argument("--class", dest="label", help="class by name (e.g. wnid), title (e.g. lemon) or index")
    p.add_argument("-n", "--num", type=int, default=1, help="number of images")
    p.add_argument("-o", "--output", required=True, help="output folder")
    p.add_argument("--seed", type=int, default=0, help="image i is sampled with seed + i")
    p.add_argument("--steps", type=int, help="sampling steps of every stage (default: each stage's own)")
    p.add_argument("--sampler", metavar="SAMPLER",
                   help=f"sampler of every stage: {' | '.join(SAMPLERS)} (default: each stage's own)")
    p.add_argument("--guidance", type=float, help="classifier-free guidance scale of the base model (0: none, as CDM)")
    p.add_argument("--set", action="append", default=[], metavar="STAGE.KEY=VALUE", help="cascade stage setting, e.g. 1.aug_level=0.2")
    p.add_argument("--save-stages", action="store_true", help="also save every stage's output (cascades)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--device", default="cpu")
    add_precision_flag(p)
    p.add_argument("--quiet", action="store_true")


def load_cascade(args: argparse.Namespace):
    """The cascade to sample (a base model alone is a cascade of one stage), with the flags as stage settings."""
    from sr3.cascade import Cascade

    every = [f"*.{key}={value}" for key, value in (("steps", args.steps), ("sampler", args.sampler)) if value is not None]
    guidance = [] if args.guidance is None else [f"0.guidance={args.guidance}"]
    return Cascade.load(args.model, args.device, every + guidance + list(args.set), args.precision)


def run(args: argparse.Namespace) -> None:
    import torch

    from sr3.cascade import class_index
    from sr3.imaging import to_pil

    check_at_least_one(num=args.num, batch_size=args.batch_size, steps=args.steps)
    out = Path(args.output)
    if out.is_file():
        raise SR3Error(f"output {out} is a file, not a folder")
    cascade = load_cascade(args)
    warn_slow_bf16(cascade.pipelines[0])  # every stage runs at the one --precision on the one --device
    if cascade.num_classes == 0:
        if args.label is not None:
            raise SR3Error("this model is not class-conditional; leave out --class")
        index = None
    elif args.label is None:
        raise SR3Error(f"this model is class-conditional: pass --class (one of {', '.join(cascade.class_names) or cascade.num_classes})")
    else:
        index = class_index(args.label, cascade.class_names, cascade.cfg.class_titles, cascade.num_classes)
    out.mkdir(parents=True, exist_ok=True)
    prefix = cascade.class_names[index] if index is not None and cascade.class_names else (args.label or "sample")
    with tqdm(total=args.num * cascade.sampling_steps(), unit="step", disable=args.quiet) as bar:
        for first in range(0, args.num, args.batch_size):
            count = min(args.batch_size, args.num - first)
            labels = None if index is None else torch.full((count,), index)
            seeds = [args.seed + first + i for i in range(count)]
            stages = cascade.sample(labels, seeds, lambda _: bar.update(count))
            for seed, image in zip(seeds, stages[-1].cpu()):
                to_pil(image).save(out / f"{prefix}_{seed:05d}.png")
            if args.save_stages:
                for k, stage in enumerate(stages[:-1]):
                    for seed, image in zip(seeds, stage.cpu()):
                        to_pil(image.clamp(-1, 1)).save(out / f"{prefix}_{seed:05d}_stage{k}.png")
