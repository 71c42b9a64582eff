"""Make the README's before/after figure: the example input, bicubic 4x and sr3 4x side by side.

    python examples/before_after.py                      # writes examples/astronaut_before_after.png
    python examples/before_after.py --model faces-8x --input face16.png --output face.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

from PIL import Image, ImageDraw

from sr3.imaging import to_pil, to_tensor

from sr3.resize import imresize
from sr3.pipeline import SR3Pipeline

HERE = Path(__file__).resolve().parent


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="natural-4x")
    p.add_argument("--input", default=str(HERE / "astronaut_128.png"))
    p.add_argument("--output", default=str(HERE / "astronaut_before_after.png"))
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()

    pipe = SR3Pipeline.load(args.model)
    lr = Image.open(args.input).convert("RGB")
    size = (lr.width * pipe.scale, lr.height * pipe.scale)
    panels = {
        "input (nearest)": lr.resize(size, Image.NEAREST),
        "bicubic": to_pil(imresize(to_tensor(lr), size=size[::-1]).clamp(-1, 1)),
        f"sr3 {args.model}": pipe.upscale(lr, seed=args.seed),
    }
    label = 18
    sheet = Image.new("RGB", (size[0] * len(panels), size[1] + label), "white")
    draw = ImageDraw.Draw(sheet)
    for i, (title, panel) in enumerate(panels.items()):
        sheet.paste(panel, (i * size[0], label))
        draw.text((i * size[0] + 4, 3), title, fill="black")
    sheet.save(args.output)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
