"""Seconds and peak memory of one `sr3 upscale` of a large image, per sampling tile.

Upscales a real photo (scikit-image's astronaut, public domain, resized to `--size` pixels square) with
a shipped model or SR-only cascade, once per tile in its own process, so each peak resident memory is
that tile's alone. Shows that the tile, not the image, bounds memory: e.g. a 64x64 input through
`natural-16x` to 1024x1024, or a 2000x2000 input through `natural-4x`.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import torch
from PIL import Image
from skimage import data

from harness import device_name, peak_memory_mb, run, save_json
from sr3.cli.common import check_json
from sr3.errors import SR3Error
from sr3.upscaler import UpscaleSettings, load_upscaler

EXAMPLES = """examples:
  python benchmarks/upscale_memory.py --model natural-16x --size 64 --tiles 0,32 --threads 2
  python benchmarks/upscale_memory.py --model natural-4x --size 2000 --tiles 32,128 --threads 2 --json mem.json"""


def one_run(model: str, size: int, tile: int, threads: int | None) -> dict:
    """Upscale once in this process and return seconds, peak memory and the output size."""
    if threads:
        torch.set_num_threads(threads)
    image = Image.fromarray(data.astronaut()).resize((size, size), Image.BICUBIC)
    upscaler = load_upscaler(model, settings=UpscaleSettings(tile=tile))
    start = time.perf_counter()
    [(out, _)] = upscaler.upscale([image], [0])
    seconds = time.perf_counter() - start
    device = torch.device("cpu")
    return {"model": model, "input": [size, size], "output": list(out.size), "tile": tile, "seconds": seconds,
            "peak_rss_mb": peak_memory_mb(device), "threads": torch.get_num_threads(), "device": device_name(device)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, epilog=EXAMPLES, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", default="natural-16x", help="shipped model or SR-only cascade (default natural-16x)")
    p.add_argument("--size", type=int, default=64, help="input side in pixels (default 64)")
    p.add_argument("--tiles", default="0,32", help="comma-separated tiles in input pixels of every stage; 0 = whole image")
    p.add_argument("--threads", type=int, help="torch intra-op threads")
    p.add_argument("--json", help="write the rows to this JSON file")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    try:
        tiles = [int(t) for t in args.tiles.split(",")]
    except ValueError:
        raise SR3Error(f"--tiles must be comma-separated whole numbers; got {args.tiles}") from None
    if args.size < 8:
        raise SR3Error(f"--size must be at least 8; got {args.size}")
    if args.child:
        print(json.dumps(one_run(args.model, args.size, tiles[0], args.threads)))
        return 0
    check_json(args.json)
    rows = []
    for tile in tiles:
        cmd = [sys.executable, __file__, "--child", "--model", args.model, "--size", str(args.size), "--tiles", str(tile)]
        cmd += ["--threads", str(args.threads)] if args.threads else []
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            raise SR3Error(done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"tile {tile} failed")
        row = json.loads(done.stdout.strip().splitlines()[-1])
        rows.append(row)
        print(f"{row['model']}: {args.size}x{args.size} -> {row['output'][0]}x{row['output'][1]}, tile {tile}: "
              f"{row['seconds']:.1f} s, peak RSS {row['peak_rss_mb']:.0f} MiB ({row['threads']} threads, {row['device']})")
    if args.json:
        save_json(args.json, rows)
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
