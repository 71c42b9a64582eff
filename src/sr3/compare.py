"""Contact sheets: one row per image, one column per method (LR, bicubic, models or sampler settings, HR),
each panel with a zoomed crop below it, so people can look rather than read.

A method is `MODEL` or `MODEL:SAMPLER:STEPS` (e.g. `natural-4x:ddpm:25`), optionally with `@SEED` to show
another draw of the same model (`faces-8x@1`) and `,denoise=S|auto` for a denoise strength
(`photo-4x,denoise=auto`); a model may be an SR-only cascade (`natural-16x`); `bicubic`, the LR image shown by
nearest-neighbour (`lr`) and the HR image (`hr`, when there is one) are columns too.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from PIL import Image, ImageDraw

from sr3.cascade import Cascade
from sr3.errors import SR3Error
from sr3.imaging import resize_plane
from sr3.pipeline import SR3Pipeline
from sr3.samplers import SAMPLERS

PANEL = 256  # sheet width of one panel in pixels
LABEL = 16  # height of a column's title strip


@dataclass(frozen=True)
class Method:
    """A column of the sheet: a shipped model or run, optionally with its sampler, step count and seed."""

    model: str
    sampler: str | None = None
    steps: int | None = None
    seed: int | None = None  # None: the sheet's seed
    denoise: float | str = 0.0

    @property
    def label(self) -> str:
        text = self.model if self.sampler is None else f"{self.model} {self.sampler} {self.steps}"
        text = text if self.seed is None else f"{text} seed {self.seed}"
        return text if not self.denoise else f"{text} denoise {self.denoise}"


def parse_method(spec: str) -> Method:
    """`MODEL` or `MODEL:SAMPLER:STEPS`, either optionally followed by `@SEED`, then optionally `,denoise=S|auto`."""
    spec, marked, value = spec.rpartition(",denoise=") if ",denoise=" in spec else (spec, "", "")
    if marked:
        try:
            denoise = value if value == "auto" else float(value)
        except ValueError:
            raise SR3Error(f"a method's denoise must be a number in [0, 1] or auto; got {value}") from None
        return replace(parse_method(spec), denoise=denoise)
    body, at, seed_text = spec.rpartition("@") if "@" in spec else (spec, "", "")
    parts = body.split(":")
    seed = int(seed_text) if seed_text.isdigit() else None
    if not at or seed is not None:
        if len(parts) == 1 and parts[0]:
            return Method(parts[0], seed=seed)
        if len(parts) == 3 and parts[0] and parts[1] in SAMPLERS and parts[2].isdigit() and int(parts[2]) > 0:
            return Method(parts[0], parts[1], int(parts[2]), seed)
    raise SR3Error(f"a method must be MODEL or MODEL:SAMPLER:STEPS, optionally with @SEED and ,denoise=S|auto, "
                   f"e.g. natural-4x:ddpm:25@1; got {spec}")


def run_methods(
    methods: Sequence[Method], lrs: Sequence[Image.Image], seed: int, load: Callable[[str], SR3Pipeline | Cascade],
    tile: int | None = None, on_done: Callable[[], None] | None = None,
) -> list[list[Image.Image]]:
    """Every method's output of every LR image (image i sampled with seed + i, the method's seed if it has
    one), as [method][image]. A method's model may be an SR-only cascade, sampled as its file says."""
    out = []
    for method in methods:
        model = load(method.model)
        base = seed if method.seed is None else method.seed
        row = []
        for i, lr in enumerate(lrs):
            if isinstance(model, Cascade):
                row.append(model.upscale(lr, base + i, tile=tile))
            else:
                row.append(model.upscale(lr, method.steps, method.sampler, base + i, tile=tile, denoise=method.denoise))
            if on_done:
                on_done()
        out.append(row)
    return out


def bicubic(lr: Image.Image, size: tuple[int, int]) -> Image.Image:
    """The MATLAB-style bicubic upsample of an LR image to (width, height)."""
    return resize_plane(lr.convert("RGB"), size)


def zoom_box(size: tuple[int, int], centre: tuple[float, float], fraction: float) -> tuple[int, int, int, int]:
    """A square box of `fraction` of the shorter side, centred at `centre` (fractions of width and height)."""
    w, h = size
    side = max(4, round(min(w, h) * fraction))
    left = min(max(0, round(centre[0] * w - side / 2)), w - side)
    top = min(max(0, round(centre[1] * h - side / 2)), h - side)
    return left, top, left + side, top + side


def cell(image: Image.Image, box: tuple[int, int, int, int], panel: int) -> Image.Image:
    """A panel: the image fitted to `panel` pixels wide with the zoom box outlined, and the box enlarged below."""
    image = image.convert("RGB")
    scale = panel / image.width
    shown = image.resize((panel, max(1, round(image.height * scale))), Image.BICUBIC)
    draw = ImageDraw.Draw(shown)
    draw.rectangle([round(v * scale) for v in box], outline=(255, 64, 64), width=2)
    zoomed = image.crop(box).resize((panel, panel), Image.NEAREST)
    out = Image.new("RGB", (panel, shown.height + panel + 2), "white")
    out.paste(shown, (0, 0))
    out.paste(zoomed, (0, shown.height + 2))
    return out


def contact_sheet(columns: Sequence[str], rows: Sequence[Sequence[Image.Image]], boxes: Sequence[tuple[int, int, int, int]],
                  panel: int = PANEL) -> Image.Image:
    """The sheet: a title strip, then one row of cells per image ([row][column] images of one size per row)."""
    cells = [[cell(im, box, panel) for im in row] for row, box in zip(rows, boxes)]
    heights = [max(c.height for c in row) for row in cells]
    gap = 4
    sheet = Image.new("RGB", (len(columns) * (panel + gap) - gap, LABEL + sum(h + gap for h in heights)), "white")
    draw = ImageDraw.Draw(sheet)
    for j, title in enumerate(columns):
        draw.text((j * (panel + gap) + 2, 2), title, fill=(0, 0, 0))
    top = LABEL
    for row, height in zip(cells, heights):
        for j, c in enumerate(row):
            sheet.paste(c, (j * (panel + gap), top))
        top += height + gap
    return sheet


def check_cascade_method(method: Method) -> None:
    """A cascade's stages are sampled as its file says: a method naming one takes a seed, nothing else."""
    if method.sampler is not None or method.denoise:
        raise SR3Error(f"{method.model} is a cascade: its stages' samplers and levels are set in its file; "
                       f"give it as {method.model} or {method.model}@SEED")


def check_same_scale(pipes: Sequence[SR3Pipeline | Cascade]) -> int:
    """The one scale all the methods' models share, or an SR3Error naming them."""
    scales = sorted({p.scale for p in pipes})
    if len(scales) != 1:
        raise SR3Error(f"the methods upscale by different factors ({', '.join(f'x{s}' for s in scales)}); compare one at a time")
    return scales[0]
