"""Sample diversity: how much the output of one LR image changes with the seed.

For each image, draws `--seeds` samples and reports the per-pixel standard deviation across them (of the
8-bit outputs, in grey levels of 0-255, averaged over pixels and channels), then the mean over images.
0 means every seed gives the same image (a regressor, or a sampler that has collapsed to the posterior
mean); SR3 names near-identical samples as its weakness.
"""

from __future__ import annotations

import argparse
import sys

import torch

from harness import add_image_set_args, device_name, run, save_json
from sr3.cli.common import check_json
from sr3.errors import SR3Error
from sr3.evaluate import model_pairs
from sr3.imaging import quantize
from sr3.upscaler import UpscaleSettings, load_upscaler

EXAMPLES = """examples:
  python benchmarks/diversity.py --model faces-8x --hr ../data/UTKFace/images --holdout --limit 50 --seeds 4
  python benchmarks/diversity.py --model faces-8x --hr ../data/UTKFace/images --holdout --sampler ddpm --steps 100"""


def seed_std(samples: torch.Tensor) -> float:
    """Mean over pixels of the standard deviation across samples [S, C, H, W] in [-1, 1], in 8-bit grey levels."""
    levels = (quantize(samples) + 1) * 127.5
    return levels.std(dim=0, unbiased=False).mean().item()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, epilog=EXAMPLES, formatter_class=argparse.RawTextHelpFormatter)
    add_image_set_args(p)
    p.add_argument("--seeds", type=int, default=4, help="samples per image (default 4)")
    p.add_argument("--sampler", help="sampler name (default: the model's)")
    p.add_argument("--steps", type=int, help="sampling steps (default: the model's)")
    p.add_argument("--seed", type=int, default=0, help="image i draws seeds seed + i * seeds + [0, seeds)")
    p.add_argument("--threads", type=int, help="torch intra-op threads")
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", help="write the figures, per image too, to this JSON file")
    args = p.parse_args(argv)
    if args.seeds < 2:
        raise SR3Error("--seeds must be at least 2: a spread needs two samples")
    check_json(args.json)
    if args.threads:
        torch.set_num_threads(args.threads)
    upscaler = load_upscaler(args.model, args.device, settings=UpscaleSettings(steps=args.steps, sampler=args.sampler))
    pairs = model_pairs(upscaler, args.hr, args.lr, args.holdout, args.limit, skip=args.skip)
    rows = []
    for i, pair in enumerate(pairs):
        seeds = [args.seed + i * args.seeds + s for s in range(args.seeds)]
        lr = pair.lr[None].expand(args.seeds, -1, -1, -1)
        rows.append({"image": pair.name, "seed_std": seed_std(upscaler.super_resolve(lr, seeds)[0].cpu())})
    mean = sum(r["seed_std"] for r in rows) / len(rows)
    record = {"model": args.model, "sampler": upscaler.sampler_name, "steps": upscaler.steps, "seeds": args.seeds,
              "n_images": len(rows), "device": device_name(upscaler.device), "seed_std": mean, "per_image": rows}
    print(f"{args.model} {upscaler.sampler_name} {upscaler.steps} steps: per-pixel std over {args.seeds} seeds "
          f"{mean:.2f} grey levels (mean of {len(rows)} images)")
    if args.json:
        save_json(args.json, record)
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
