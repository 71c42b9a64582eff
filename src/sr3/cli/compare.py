"""`sr3 compare`: a contact sheet of LR, bicubic, any number of models or sampler settings, and HR, with zoomed crops."""

from __future__ import annotations

import argparse
from pathlib import Path

from tqdm.auto import tqdm

from sr3.cli.common import add_precision_flag, check_at_least_one, collect_inputs, load_cli_upscaler
from sr3.errors import SR3Error

EXAMPLES = """examples:
  sr3 compare RealSRSet/ -o sheet.png --method natural-4x --method natural-4x:ddpm:25 --limit 4
  sr3 compare --hr B100/HR --limit 3 -o b100.png --method natural-4x-regression --method natural-4x \\
      --method natural-4x:ddpm:100 --zoom 0.4,0.6,0.2
  sr3 compare face16.png -o faces.png --method faces-8x-regression --method faces-8x --method faces-8x@1
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("compare", help="contact sheet of methods side by side", epilog=EXAMPLES,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="LR images or folders (HR ones with --hr)")
    p.add_argument("-o", "--output", required=True, help="the sheet, a .png file")
    p.add_argument("--method", action="append", required=True, metavar="MODEL[:SAMPLER:STEPS][@SEED][,denoise=S|auto]",
                   help="a column: a shipped model or run, optionally with a sampler and step count, a seed "
                        "of its own for another draw, and a denoise strength; or an SR-only cascade, optionally "
                        "with a seed (repeat)")
    p.add_argument("--hr", action="store_true",
                   help="the inputs are HR images: their LR is made by MATLAB-style bicubic and an HR column is added")
    p.add_argument("--degradation", default="bicubic",
                   help="with --hr: how the LR inputs are made, e.g. realworld (drawn from --seed; default bicubic)")
    p.add_argument("--limit", type=int, help="only the first N images")
    p.add_argument("--zoom", default="0.5,0.5,0.25", metavar="X,Y,SIZE",
                   help="the zoomed crop: centre as fractions of width and height, side as a fraction (default 0.5,0.5,0.25)")
    p.add_argument("--panel", type=int, default=256, help="panel width in pixels (default 256)")
    p.add_argument("--seed", type=int, default=0, help="image i is sampled with seed + i")
    p.add_argument("--tile", type=int, help="sampling tile in input pixels (default: each model's)")
    p.add_argument("--device", default="cpu")
    add_precision_flag(p)
    p.add_argument("--quiet", action="store_true")


def parse_zoom(text: str) -> tuple[tuple[float, float], float]:
    """((x, y), size) of a --zoom value, each in (0, 1]."""
    try:
        x, y, size = (float(v) for v in text.split(","))
    except ValueError:
        raise SR3Error(f"--zoom must be X,Y,SIZE, three fractions; got {text}") from None
    if not (0 <= x <= 1 and 0 <= y <= 1 and 0 < size <= 1):
        raise SR3Error(f"--zoom fractions must lie in [0, 1] (size in (0, 1]); got {text}")
    return (x, y), size


def run(args: argparse.Namespace) -> None:
    from sr3.compare import check_same_scale, contact_sheet, parse_method, run_methods, sheet_panels, zoom_box
    from sr3.data.degradations import degraded_pair
    from sr3.imaging import load_image, to_pil
    from sr3.noise import seeded_generator

    if not args.output.lower().endswith(".png"):
        raise SR3Error(f"the sheet is written as PNG: give -o NAME.png; got {args.output}")
    check_at_least_one(limit=args.limit, panel=args.panel)
    centre, fraction = parse_zoom(args.zoom)
    methods = [parse_method(m) for m in args.method]
    files = [path for path, _ in collect_inputs(args.inputs)][: args.limit]
    images = [load_image(f) for f in files]
    loaded = {}
    for m in methods:  # each model loads once; every column is checked before any is sampled
        if m.model not in loaded:
            loaded[m.model] = load_cli_upscaler(args, m.model)
    upscalers = [loaded[m.model].configured(m.settings(args.tile)) for m in methods]
    scale = check_same_scale(upscalers)
    if args.hr:
        made = [degraded_pair(im, scale, args.degradation, seeded_generator(args.seed, i)) for i, im in enumerate(images)]
        hrs, lrs = [to_pil(hr) for hr, _ in made], [to_pil(lr) for _, lr in made]
    else:
        hrs, lrs = None, images
    with tqdm(total=len(methods) * len(lrs), desc="compare", unit="image", disable=args.quiet) as bar:
        outputs = run_methods(methods, lrs, args.seed, upscalers, bar.update)
    columns, rows = sheet_panels([m.label for m in methods], lrs, outputs, hrs, scale)
    boxes = [zoom_box(row[0].size, centre, fraction) for row in rows]
    sheet = contact_sheet(columns, rows, boxes, args.panel)
    try:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        sheet.save(args.output)
    except OSError as exc:
        raise SR3Error(f"cannot write {args.output}: {exc}") from None
    if not args.quiet:
        print(f"wrote {args.output} ({sheet.width}x{sheet.height}: {len(rows)} images, {len(columns)} columns)")
