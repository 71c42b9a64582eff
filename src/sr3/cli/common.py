"""Flags and checks the subcommands share. Nothing here imports torch: building the parser stays instant."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sr3.config import PRECISIONS
from sr3.errors import SR3Error
from sr3.samplers import SAMPLERS


def check_json(path: str | None) -> None:
    """Refuse a --json target that cannot be written, before any work is done."""
    if path and (not Path(path).resolve().parent.is_dir() or Path(path).is_dir()):
        raise SR3Error(f"cannot write --json {path}: its folder does not exist or it is a folder")


def check_at_least_one(**values: int | None) -> None:
    """Refuse any given count below 1 (None: not given), naming its flag."""
    for name, value in values.items():
        if value is not None and value < 1:
            raise SR3Error(f"--{name.replace('_', '-')} must be at least 1; got {value}")


def add_sampling_flags(p: argparse.ArgumentParser, colour_fix_help: str) -> None:
    """--steps, --sampler, --tile, --colour-fix and --precision: the overrides of a model's sampling settings."""
    p.add_argument("--steps", type=int, help="sampling steps (default: the model's)")
    p.add_argument("--sampler", metavar="SAMPLER",
                   help=f"{' | '.join(SAMPLERS)} (default: the model's; regression models take only 'regression')")
    p.add_argument(
        "--tile", type=int,
        help="images larger than this many input pixels run as overlapping tiles denoised together, so memory "
        "stays bounded (default: the model's sampler.tile, 128 unless it says otherwise; 0: whole images)",
    )
    p.add_argument("--colour-fix", action=argparse.BooleanOptionalAction, default=None, help=colour_fix_help)
    add_precision_flag(p)


def add_precision_flag(p: argparse.ArgumentParser) -> None:
    """The --precision flag of the sampling commands."""
    p.add_argument(
        "--precision",
        choices=list(PRECISIONS),
        default="fp32",
        help="bf16: the network runs under bf16 autocast, the fast path on GPUs and on CPUs with AMX or "
        "AVX-512 BF16; fp16 needs a CUDA GPU (default fp32)",
    )


def warn_slow_bf16(pipe) -> None:
    """Say so when a pipeline runs bf16 on a device without bf16 kernels, where it is many times slower than fp32."""
    from sr3.device import slow_bf16_reason

    reason = slow_bf16_reason(pipe.device) if pipe.precision == "bf16" else None
    if reason:
        print(f"sr3: warning: {reason}; bf16 will run many times slower than fp32 here", file=sys.stderr)


def denoise_arg(text: str) -> float | str:
    """--denoise: 'auto' or a number in [0, 1]."""
    if text == "auto":
        return text
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number in [0, 1] or 'auto'; got {text!r}") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1]; got {value}")
    return value


def add_denoise_flag(p: argparse.ArgumentParser) -> None:
    """--denoise S|auto, for models trained with a noise level."""
    p.add_argument("--denoise", type=denoise_arg, default=0.0, metavar="S|auto",
                   help="models trained with a noise level (photo-4x): treat the input as carrying noise of strength S "
                   "in [0, 1] (0: as trained, the default; 1: the most the model was trained on), or 'auto': estimate "
                   "each input's noise level. Stronger removes more noise and JPEG artefacts, and more fine detail")


def load_upscaling_cascade(args: argparse.Namespace):
    """The SR-only cascade of `--model` with its `--set` overrides, after refusing the one-model flags."""
    from sr3.cascade import Cascade

    if args.steps is not None or args.sampler is not None or args.colour_fix is not None:
        raise SR3Error("a cascade samples each stage as its file says; change a stage with --set, e.g. --set 1.steps=20")
    if args.denoise:
        raise SR3Error("--denoise is for one model; a cascade's stages take their noise level as --set STAGE.aug_level=S")
    cascade = Cascade.load_upscaler(args.model, args.device, args.set or (), args.precision)
    warn_slow_bf16(cascade.pipelines[0])
    return cascade
