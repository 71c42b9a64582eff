"""`sr3 generate`: sample a class-conditional (or unconditional) base model."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from tqdm.auto import tqdm

from sr3.errors import SR3Error
from sr3.imaging import to_pil

EXAMPLES = """examples:
  sr3 generate --model runs/base32 --class n07749582 -n 16 -o lemons/ --seed 0
  sr3 generate --model runs/base32 --class lemon -n 8 -o out/ --steps 100 --guidance 1.5
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "generate", help="sample a base model", epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--model", required=True, help="run directory, checkpoint folder or .safetensors file of a base model")
    p.add_argument("--class", dest="label", help="class name (its folder name) or index, for class-conditional models")
    p.add_argument("-n", "--num", type=int, default=1, help="number of images")
    p.add_argument("-o", "--output", required=True, help="output folder")
    p.add_argument("--seed", type=int, default=0, help="image i is sampled with seed + i")
    p.add_argument("--steps", type=int, help="sampling steps (default: the model's)")
    p.add_argument("--sampler", help="sampler name (default: the model's)")
    p.add_argument("--guidance", type=float, default=0.0, help="classifier-free guidance scale (0: none, as CDM)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--device", default="cpu")
    p.add_argument("--quiet", action="store_true")


def class_index(label: str | None, names: list[str], num_classes: int) -> int | None:
    """The index of a class given by name or number; None for unconditional models."""
    if num_classes == 0:
        if label is not None:
            raise SR3Error("this model is not class-conditional; leave out --class")
        return None
    if label is None:
        raise SR3Error(f"this model is class-conditional: pass --class (one of {', '.join(names) or num_classes})")
    if label in names:
        return names.index(label)
    if label.isdigit() and int(label) < num_classes:
        return int(label)
    raise SR3Error(f"unknown class '{label}'; classes: {', '.join(names) or f'0..{num_classes - 1}'}")


def run(args: argparse.Namespace) -> None:
    from sr3.pipeline import SR3Pipeline

    if args.num < 1 or args.batch_size < 1 or (args.steps is not None and args.steps < 1):
        raise SR3Error("-n, --batch-size and --steps must be at least 1")
    out = Path(args.output)
    if out.is_file():
        raise SR3Error(f"output {out} is a file, not a folder")
    pipe = SR3Pipeline.load(args.model, args.device)
    index = class_index(args.label, pipe.cfg.data.class_names, pipe.cfg.model.num_classes)
    sampler = pipe.sampler_config(args.steps, args.sampler)
    out.mkdir(parents=True, exist_ok=True)
    with tqdm(total=args.num * sampler.steps, unit="step", disable=args.quiet) as bar:
        for first in range(0, args.num, args.batch_size):
            count = min(args.batch_size, args.num - first)
            labels = None if index is None else torch.full((count,), index)
            seeds = [args.seed + first + i for i in range(count)]
            images = pipe.generate(count, seeds, sampler, labels, lambda _: bar.update(count), args.guidance)
            for seed, image in zip(seeds, images.cpu()):
                to_pil(image).save(out / f"{args.label or 'sample'}_{seed:05d}.png")
