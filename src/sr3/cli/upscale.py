"""`sr3 upscale`: super-resolve image files or folders with a trained model."""

from __future__ import annotations

import argparse
from pathlib import Path

from tqdm.auto import tqdm

from sr3.cli.common import add_denoise_flag, add_sampling_flags, check_at_least_one, collect_inputs, load_cli_upscaler
from sr3.errors import SR3Error
from sr3.pretrained import DEFAULT_MODEL, PRETRAINED

EXAMPLES = """examples:
  sr3 upscale photo.jpg                                  # shipped natural-4x model; writes photo_sr3.png
  sr3 upscale face.png -o face_x8.png --model faces-8x
  sr3 upscale old_photo.jpg --model photo-4x --denoise auto   # noisy, compressed camera photos
  sr3 upscale thumb64.png --model natural-16x             # 16x by a cascade of two 4x stages: 64 -> 1024
  sr3 upscale photo.jpg --scale 2 --tile 64 --no-colour-fix
  sr3 upscale lowres/ -o highres/ --model runs/t91 --steps 100 --sampler ddpm --seed 7
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "upscale", help="super-resolve images", epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files or folders")
    p.add_argument("-o", "--output", help="output file (one input image) or folder (default: NAME_sr3.png / FOLDER_sr3)")
    p.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        help=f"shipped model ({', '.join(PRETRAINED)}; default {DEFAULT_MODEL}: bicubic-like downsamples; photo-4x: "
        "noisy, blurred or compressed camera photos; faces-8x: aligned faces), run directory, checkpoint folder, "
        ".safetensors file, or an SR-only cascade (the shipped natural-16x, a cascade.yaml or its folder): every "
        "stage runs in turn",
    )
    p.add_argument("--seed", type=int, default=0, help="image i of the inputs is sampled with seed + i")
    p.add_argument("--scale", type=float, help="output scale, any factor (the model's result is resampled)")
    add_sampling_flags(
        p, "match the output's low frequencies (colours) to the input (default: the model's sampler.colour_fix, "
        "on unless it says otherwise: it raises PSNR and consistency)",
    )
    add_denoise_flag(p)
    p.add_argument("--set", action="append", metavar="STAGE.KEY=VALUE",
                   help="a cascade: override a stage's setting, e.g. 1.steps=20 or 1.aug_level=0.1 (repeatable)")
    p.add_argument("--batch-size", type=int, default=1, help="images of the same size sampled together")
    p.add_argument("--device", default="cpu", help="torch device, e.g. cuda")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def default_output(inputs: list[str]) -> Path:
    """Beside a single input: photo.jpg -> photo_sr3.png, folder -> folder_sr3."""
    if len(inputs) != 1:
        raise SR3Error("several inputs need -o OUTPUT_FOLDER")
    path = Path(inputs[0])
    return path.with_name(f"{path.stem}_sr3.png") if path.is_file() else path.with_name(f"{path.name}_sr3")


def output_paths(items: list[tuple[Path, Path]], output: Path) -> list[Path]:
    """A single image goes to `output` when it has an image extension; otherwise into the folder `output`."""
    from sr3.imaging import IMAGE_EXTENSIONS

    if len(items) == 1 and output.suffix.lower() in IMAGE_EXTENSIONS and not output.is_dir():
        return [output]
    if output.is_file():
        raise SR3Error(f"output {output} is a file, but several images need a folder")
    paths = [output / rel.with_suffix(".png") for _, rel in items]
    seen: dict[Path, Path] = {}
    for (src, _), dst in zip(items, paths):
        if dst in seen:
            raise SR3Error(f"{seen[dst]} and {src} would both be written to {dst}")
        seen[dst] = src
    return paths


def batches(items: list[tuple[Path, Path]], outputs: list[Path], size: int) -> list[list[tuple[int, Path, Path]]]:
    """Groups of up to `size` same-sized images as (input index, the seed offset; input; output). Only headers
    are read here, so an unreadable file fails before any work; each image is decoded once, in its group's turn."""
    from sr3.imaging import image_size

    by_size: dict[tuple[int, int], list] = {}
    for i, ((src, _), dst) in enumerate(zip(items, outputs)):
        by_size.setdefault(image_size(src), []).append((i, src, dst))
    return [group[k : k + size] for group in by_size.values() for k in range(0, len(group), size)]


def run(args: argparse.Namespace) -> None:
    from sr3.imaging import open_image, save_image

    check_at_least_one(steps=args.steps, batch_size=args.batch_size)
    if args.scale is not None and args.scale <= 0:
        raise SR3Error("--scale must be positive")
    items = collect_inputs(args.inputs)
    outputs = output_paths(items, Path(args.output) if args.output else default_output(args.inputs))
    groups = batches(items, outputs, args.batch_size)
    upscaler = load_cli_upscaler(args)
    for group in groups:
        index, sources, targets = zip(*group)
        images = [open_image(src) for src in sources]
        desc = sources[0].name if len(group) == 1 else f"{len(group)} images"
        with tqdm(total=upscaler.steps, desc=desc, unit="step", disable=args.quiet, leave=False) as bar:
            results = upscaler.upscale(images, [args.seed + i for i in index], lambda _: bar.update(), args.scale)
        for src, image, dst, (result, record) in zip(sources, images, targets, results):
            save_image(result, dst, record)
            if not args.quiet:
                tqdm.write(f"{src} -> {dst} ({image.width}x{image.height} -> {result.width}x{result.height})")
