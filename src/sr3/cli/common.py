"""Flags and checks the subcommands share. Nothing here imports torch: building the parser stays instant."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tqdm.auto import tqdm

from sr3.config import PRECISIONS
from sr3.errors import SR3Error
from sr3.samplers import SAMPLERS

DEFAULT_CACHE = str(Path.home() / ".cache" / "sr3" / "fid")  # FID reference features


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
    p.add_argument("--sigma-max", type=float, metavar="S",
                   help="refiners: start from the prediction noised to this sigma (default: the model's; 0: pure noise)")
    p.add_argument("--prediction-only", action="store_true",
                   help="refiners: the regression prediction alone, without refinement (the PSNR end of the trade-off)")
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


def warn_slow_bf16(upscaler) -> None:
    """Say so when an upscaler runs bf16 on a device without bf16 kernels, where it is many times slower than fp32."""
    from sr3.device import slow_bf16_reason

    reason = slow_bf16_reason(upscaler.device) if upscaler.precision == "bf16" else None
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


def load_cli_upscaler(args: argparse.Namespace, model: str | None = None, **settings):
    """The upscaler of `--model` (or `model`) with the sampling flags and `--set` stage settings of `args`; any
    keyword overrides one of those settings (`sr3.upscaler.UpscaleSettings`)."""
    from sr3.config import check_tile
    from sr3.upscaler import UpscaleSettings, load_upscaler

    check_tile(args.tile, "--tile")
    flags = {"steps": getattr(args, "steps", None), "sampler": getattr(args, "sampler", None), "tile": args.tile,
             "colour_fix": getattr(args, "colour_fix", None), "sigma_max": getattr(args, "sigma_max", None),
             "denoise": getattr(args, "denoise", 0.0), "prediction_only": getattr(args, "prediction_only", False),
             "stages": tuple(getattr(args, "set", None) or ())}
    upscaler = load_upscaler(model or args.model, args.device, args.precision, UpscaleSettings(**(flags | settings)))
    warn_slow_bf16(upscaler)
    return upscaler


def collect_inputs(inputs: list[str]) -> list[tuple[Path, Path]]:
    """(image, path relative to its input root) for every input file, folders searched recursively."""
    from sr3.imaging import list_images

    found = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found += [(p, p.relative_to(path)) for p in list_images(path)]
        elif path.is_file():
            found.append((path, Path(path.name)))
        else:
            raise SR3Error(f"input {path} does not exist")
    return found


def add_reference_args(p: argparse.ArgumentParser) -> None:
    """The reference-set flags shared by `sr3 fid` and `sr3 cascade sweep`."""
    p.add_argument("--ref", required=True, help="folder of reference images (features are cached)")
    p.add_argument("--ref-labels", help="CSV with a 'file' column and a class column, to keep only some classes")
    p.add_argument("--ref-classes", help="comma-separated classes to keep from --ref-labels")
    p.add_argument("--cache", default=DEFAULT_CACHE, help="reference feature cache folder")


def load_reference(args: argparse.Namespace, net, classes: list[str] | None = None):
    """Features of the reference images chosen by the flags of `add_reference_args`."""
    from sr3.metrics.fid import reference_features, reference_files

    if args.ref_classes:
        classes = args.ref_classes.split(",")
    if args.ref_labels and not classes:
        raise SR3Error("--ref-labels needs --ref-classes (or a model with class names)")
    files = reference_files(args.ref, args.ref_labels, classes)
    with tqdm(desc="reference", unit="img", disable=args.quiet) as bar:
        return reference_features(files, args.ref, net, args.cache, progress=bar.update)
