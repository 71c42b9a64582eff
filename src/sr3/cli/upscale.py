"""`sr3 upscale`: super-resolve image files or folders with a trained model."""

from __future__ import annotations

import argparse
from pathlib import Path

from PIL.PngImagePlugin import PngInfo
from tqdm.auto import tqdm

from sr3.errors import SR3Error
from sr3.imaging import IMAGE_EXTENSIONS, list_images, load_image

EXAMPLES = """examples:
  sr3 upscale photo.png -o photo_x4.png --model runs/t91
  sr3 upscale lowres/ -o highres/ --model runs/t91 --steps 100 --sampler ddpm --seed 7
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "upscale", help="super-resolve images", epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files or folders")
    p.add_argument("-o", "--output", required=True, help="output file (one input image) or folder")
    p.add_argument("--model", required=True, help="run directory, checkpoint folder or .safetensors file")
    p.add_argument("--steps", type=int, help="sampling steps (default: the model's)")
    p.add_argument("--sampler", help="ddpm | ddim | euler | heun | dpmpp_2m (default: the model's)")
    p.add_argument("--seed", type=int, default=0, help="image i of the inputs is sampled with seed + i")
    p.add_argument("--device", default="cpu", help="torch device, e.g. cuda")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def collect_inputs(inputs: list[str]) -> list[tuple[Path, Path]]:
    """(image, path relative to its input root) for every input file, folders searched recursively."""
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


def output_paths(items: list[tuple[Path, Path]], output: Path) -> list[Path]:
    """A single image goes to `output` when it has an image extension; otherwise into the folder `output`."""
    if len(items) == 1 and output.suffix.lower() in IMAGE_EXTENSIONS:
        return [output]
    if output.is_file():
        raise SR3Error(f"output {output} is a file, but several images need a folder")
    return [output / rel.with_suffix(".png") for _, rel in items]


def run(args: argparse.Namespace) -> None:
    from sr3.pipeline import SR3Pipeline

    if args.steps is not None and args.steps < 1:
        raise SR3Error("--steps must be at least 1")
    items = collect_inputs(args.inputs)
    outputs = output_paths(items, Path(args.output))
    pipe = SR3Pipeline.load(args.model, args.device)
    sampler = pipe.sampler_config(args.steps, args.sampler)
    for i, ((src, _), dst) in enumerate(zip(items, outputs)):
        image = load_image(src)
        with tqdm(total=sampler.steps, desc=src.name, unit="step", disable=args.quiet, leave=False) as bar:
            result = pipe.upscale(image, sampler.steps, sampler.name, seed=args.seed + i, progress=lambda _: bar.update())
        dst.parent.mkdir(parents=True, exist_ok=True)
        info = PngInfo()
        for key, value in {"sr3:model": str(args.model), "sr3:sampler": sampler.name,
                           "sr3:steps": str(sampler.steps), "sr3:seed": str(args.seed + i)}.items():
            info.add_text(key, value)
        result.save(dst, pnginfo=info) if dst.suffix.lower() == ".png" else result.save(dst)
        if not args.quiet:
            tqdm.write(f"{src} -> {dst} ({image.width}x{image.height} -> {result.width}x{result.height})")
