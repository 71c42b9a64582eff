"""`sr3 cascade sweep`: FID of a cascade over a grid of conditioning-augmentation levels at sampling time.

CDM found the best sampling-time level empirically; this samples the same seeds and classes at every level,
so the levels differ only by their augmentation.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from tqdm.auto import tqdm

from sr3.cli.common import add_reference_args, check_json, load_reference
from sr3.errors import SR3Error

EXAMPLES = """examples:
  sr3 cascade sweep --model tinyimagenet-10 --levels 0,0.05,0.1,0.2,0.3 -n 500 \\
      --ref TinyImageNet-val/images --ref-labels TinyImageNet-val/labels.csv --json sweep.json
  sr3 cascade sweep --model cascade.yaml --truncate --levels 0.1,0.2 -n 200 --ref real/
(needs the optional extra: pip install 'sr3[fid]')
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("cascade", help="cascade tools: sweep the augmentation level")
    tools = p.add_subparsers(dest="tool", required=True, metavar="TOOL")
    s = tools.add_parser(
        "sweep", help="FID per sampling-time augmentation level", epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    s.add_argument("--model", required=True, help="cascade: shipped name, YAML file or folder")
    s.add_argument("--stage", type=int, help="the SR stage whose level is swept (default: stage 1)")
    s.add_argument("--levels", default="0,0.05,0.1,0.2,0.3", help="comma-separated levels in [0, 1)")
    s.add_argument("--truncate", action="store_true", help="truncated variant: the base model stops at the level")
    s.add_argument("--bicubic", action="store_true",
                   help="add a baseline row: the stage's input upscaled by bicubic to the cascade's resolution")
    s.add_argument("-n", "--num", type=int, default=500, help="images per level, classes in turn")
    s.add_argument("--set", action="append", default=[], metavar="STAGE.KEY=VALUE", help="other stage settings")
    add_reference_args(s)
    s.add_argument("--save", help="also save each level's images under this folder")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--batch-size", type=int, default=25)
    s.add_argument("--device", default="cpu")
    s.add_argument("--json", help="write the table to this JSON file")
    s.add_argument("--quiet", action="store_true")


def parse_levels(text: str) -> list[float]:
    try:
        levels = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise SR3Error(f"--levels must be comma-separated numbers; got {text}") from None
    if not levels or any(not 0 <= v < 1 for v in levels):
        raise SR3Error(f"--levels must be in [0, 1); got {text}")
    return levels


def run(args: argparse.Namespace) -> None:
    import numpy as np
    import torch

    from sr3.cascade import Cascade
    from sr3.device import resolve_device
    from sr3.metrics.fid import fid_kid, inception_features, load_inception
    from sr3.resize import imresize

    levels = parse_levels(args.levels)
    if args.num < 2 or args.batch_size < 1:
        raise SR3Error("-n must be at least 2 and --batch-size at least 1")
    if args.bicubic and args.truncate:
        raise SR3Error("--bicubic needs the finished stage below: leave out --truncate")
    check_json(args.json)
    net = load_inception(resolve_device(args.device))
    cascade = Cascade.load(args.model, args.device, args.set)
    stage = 1 if args.stage is None else args.stage
    if not 1 <= stage < len(cascade.pipelines):
        raise SR3Error(f"--stage must name an SR stage, 1..{len(cascade.pipelines) - 1}")
    reference = load_reference(args, net, cascade.class_names or None)
    classes = max(1, cascade.num_classes)
    variants = [cascade.replace_stage(stage, aug_level=v, truncate=args.truncate and v > 0) for v in levels]
    names = [f"level-{v:g}" for v in levels] + (["bicubic"] if args.bicubic else [])
    features: list[list] = [[] for _ in names]
    per_image = sum(v.sampling_steps(0 if args.truncate else 1) for v in variants)
    per_image += 0 if args.truncate else cascade.sampling_steps() - cascade.sampling_steps(1)
    with tqdm(total=args.num * per_image, unit="step", disable=args.quiet) as bar:
        for first in range(0, args.num, args.batch_size):
            count = min(args.batch_size, args.num - first)
            labels = torch.arange(first, first + count) % classes if cascade.num_classes else None
            seeds = [args.seed + first + i for i in range(count)]
            step = lambda _: bar.update(count)  # noqa: E731
            base = None if args.truncate else cascade.sample_base(labels, seeds, step)  # one base sample for every level
            batches = [variant.sample(labels, seeds, step, base=base) for variant in variants]
            finals = [outputs[-1] for outputs in batches]
            if args.bicubic:
                below = batches[0][stage - 1]  # the same for every level: only stage `stage` differs
                finals.append(imresize(below, scale=cascade.resolution / below.shape[-1]).clamp(-1, 1))
            for name, images, found in zip(names, finals, features):
                found.append(inception_features(images, net))
                if args.save:
                    save_images(images, labels, seeds, Path(args.save) / name, cascade.class_names)
    rows = []
    for name, level, found in zip(names, levels + [None], features):
        row = {"name": name, "level": level, "truncated": args.truncate and bool(level), **fid_kid(np.concatenate(found), reference)}
        rows.append(row)
        label = "bicubic" if level is None else f"level {level:<6g}"
        print(f"{label:<13} FID {row['fid']:8.2f}  KID {row['kid']:.4f} ± {row['kid_std']:.4f}")
    best = min((r for r in rows if r["level"] is not None), key=lambda r: r["fid"])
    print(f"best level {best['level']:g}: FID {best['fid']:.2f} ({args.num} images per level vs {best['n_reference']} reference)")
    if args.json:
        Path(args.json).write_text(json.dumps({"model": str(args.model), "stage": stage, "rows": rows}, indent=2))


def save_images(images, labels, seeds: list[int], folder: Path, names: list[str]) -> None:
    """PNG files named `CLASS_SEED.png` (as `sr3 generate` writes), so `sr3 cas` can read their classes."""
    from sr3.imaging import to_pil

    folder.mkdir(parents=True, exist_ok=True)
    for i, (seed, image) in enumerate(zip(seeds, images.cpu())):
        prefix = "sample" if labels is None else (names[int(labels[i])] if names else str(int(labels[i])))
        to_pil(image).save(folder / f"{prefix}_{seed:05d}.png")
