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

from sr3.errors import SR3Error
from sr3.resize import resize_plane
from sr3.samplers import SAMPLERS
from sr3.upscaler import Upscaler, UpscaleSettings

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

    def settings(self, tile: int | None) -> UpscaleSettings:
        """What the column changes of its model's sampling (a cascade takes a seed alone: `Upscaler.configured`)."""
        return UpscaleSettings(steps=self.steps, sampler=self.sampler, tile=tile, denoise=self.denoise)

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
    methods: Sequence[Method], lrs: Sequence[Image.Image], seed: int, upscalers: Sequence[Upscaler],
    on_done: Callable[[], None] | None = None,
) -> list[list[Image.Image]]:
    """Every method's output of every LR image (image i sampled with seed + i, the method's seed if it has
    one), as [method][image], each method by its upscaler (configured with the method's settings)."""
    out = []
    for method, upscaler in zip(methods, upscalers):
        base = seed if method.seed is None else method.seed
        row = []
        for i, lr in enumerate(lrs):
            [(image, _)] = upscaler.upscale([lr], [base + i])
            row.append(image)
            if on_done:
                on_done()
        out.append(row)
    return out


def bicubic(lr: Image.Image, size: tuple[int, int]) -> Image.Image:
    """The MATLAB-style bicubic upsample of an LR image to (width, height)."""
    return resize_plane(lr.convert("RGB"), size)


def sheet_panels(labels: Sequence[str], lrs: Sequence[Image.Image], outputs: Sequence[Sequence[Image.Image]],
                 hrs: Sequence[Image.Image] | None, scale: int) -> tuple[list[str], list[list[Image.Image]]]:
    """The sheet's column titles and each image's panels: the LR shown nearest, bicubic, each method's output
    (`outputs[method][image]`), and the HR when there is one."""
    columns = ["LR (nearest)", "bicubic", *labels] + (["HR"] if hrs else [])
    rows = []
    for i, lr in enumerate(lrs):
        size = (lr.width * scale, lr.height * scale)
        row = [lr.resize(size, resample=Image.NEAREST), bicubic(lr, size), *(out[i] for out in outputs)]
        rows.append(row + ([hrs[i]] if hrs else []))
    return columns, rows


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


def check_same_scale(upscalers: Sequence[Upscaler]) -> int:
    """The one scale all the methods' upscalers share, or an SR3Error naming them."""
    scales = sorted({u.scale for u in upscalers})
    if len(scales) != 1:
        raise SR3Error(f"the methods upscale by different factors ({', '.join(f'x{s}' for s in scales)}); compare one at a time")
    return scales[0]
