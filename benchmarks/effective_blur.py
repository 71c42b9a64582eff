"""How blurred a stage's output is: the Gaussian sigma that best explains it, for sizing CDM's blur augmentation.

The next stage of a cascade sees this stage's output where it was trained on true downsamples. For each
HR image, the stage's input is made by MATLAB-style bicubic at 1/scale; its output is compared with the
true image at the output size blurred by each sigma of a grid (in output pixels), and the sigma of the
least mean squared error is reported, beside bicubic upsampling's. A blur augmentation range around the
model's sigmas trains the next stage on inputs as smooth as the ones it will get.
"""

from __future__ import annotations

import argparse
import json
import sys

import torch

from harness import add_image_set_args, run
from sr3.cli.common import check_json
from sr3.conditioning import upsample
from sr3.errors import SR3Error
from sr3.evaluate import model_pairs
from sr3.resize import gaussian_blur
from sr3.upscaler import load_upscaler

EXAMPLES = """examples:
  python benchmarks/effective_blur.py --model natural-4x --hr photos/
  python benchmarks/effective_blur.py --model natural-4x --hr photos/ --sigmas 0.5,1,1.5,2 --kernel 9 --json blur.json"""


def best_sigma(output: torch.Tensor, truth: torch.Tensor, sigmas: list[float], kernel: int) -> tuple[float, list[float]]:
    """The sigma of the grid whose blur of `truth` is closest to `output` (MSE), and every sigma's MSE."""
    errors = [float(((gaussian_blur(truth, s, kernel) - output) ** 2).mean()) for s in sigmas]
    return sigmas[min(range(len(sigmas)), key=errors.__getitem__)], errors


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, epilog=EXAMPLES, formatter_class=argparse.RawTextHelpFormatter)
    add_image_set_args(p)
    p.add_argument("--sigmas", default="0.3,0.5,0.7,0.9,1.1,1.3,1.5,1.8,2.1,2.5",
                   help="the grid of Gaussian sigmas, in output pixels")
    p.add_argument("--kernel", type=int, default=9, help="odd Gaussian kernel size (default 9)")
    p.add_argument("--threads", type=int, help="torch intra-op threads")
    p.add_argument("--json", help="write the per-image figures to this JSON file")
    args = p.parse_args(argv)
    check_json(args.json)
    try:
        sigmas = [float(s) for s in args.sigmas.split(",")]
    except ValueError:
        raise SR3Error(f"--sigmas must be comma-separated numbers; got {args.sigmas}") from None
    if min(sigmas) <= 0 or args.kernel < 1 or args.kernel % 2 == 0:
        raise SR3Error("--sigmas must be positive and --kernel an odd number")
    if args.threads:
        torch.set_num_threads(args.threads)
    upscaler = load_upscaler(args.model)
    pairs = model_pairs(upscaler, args.hr, args.lr, args.holdout, args.limit, skip=args.skip)
    rows = []
    for i, pair in enumerate(pairs):
        truth = pair.hr[None]
        sr = upscaler.super_resolve(pair.lr[None], [i])[0].cpu()
        model_sigma, model_errors = best_sigma(sr, truth, sigmas, args.kernel)
        bicubic_sigma, bicubic_errors = best_sigma(upsample(pair.lr[None], upscaler.scale), truth, sigmas, args.kernel)
        rows.append({"image": pair.name, "model_sigma": model_sigma, "bicubic_sigma": bicubic_sigma,
                     "model_mse": model_errors, "bicubic_mse": bicubic_errors})
        print(f"{pair.name}: {args.model} like the truth blurred by sigma {model_sigma}, bicubic by {bicubic_sigma}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"model": args.model, "sigmas": sigmas, "kernel": args.kernel, "per_image": rows}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
