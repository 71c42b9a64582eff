"""Seconds per upscale of a shipped model at its default sampling, beside ESRGAN's RRDBNet, in one run.

RRDBNet (`rrdbnet.py`: ESRGAN's generator, Real-ESRGAN's x4plus network) runs here with random weights, which
cost what the released ones do. It is the one-evaluation network practitioners run, so its forward time is
the bar for what a diffusion model's steps cost. Both run on the same real photo crop (scikit-image's
astronaut, public domain), in the same process and thread count, the sr3 model through `upscale` as
`sr3 upscale` samples it (tiles, colour correction, every network evaluation).
"""

from __future__ import annotations

import argparse
import sys

import torch
from PIL import Image
from skimage import data

from harness import device_name, median_seconds, run, save_json
from rrdbnet import RRDBNet, rrdbnet_gflop
from sr3.cli.common import check_json
from sr3.errors import SR3Error
from sr3.pipeline import SR3Pipeline

EXAMPLES = """examples:
  python benchmarks/vs_rrdbnet.py --model natural-4x --size 128 --threads 2
  python benchmarks/vs_rrdbnet.py --model photo-4x --size 128 --threads 2 --json speed.json"""


def measure(model: str, size: int, repeats: int) -> dict:
    """Median seconds of the model's default upscale and of an RRDBNet forward on the same size x size photo."""
    image = Image.fromarray(data.astronaut()).resize((size, size), Image.BICUBIC)
    pipe = SR3Pipeline.load(model)
    if pipe.scale != 4:
        raise SR3Error(f"{model} upscales {pipe.scale}x; RRDBNet here is ESRGAN's 4x network")
    sampler = pipe.sampler_config()
    cpu = torch.device("cpu")
    sr3_seconds = median_seconds(lambda: pipe.upscale(image, seed=0), repeats, 1, cpu)
    torch.manual_seed(0)  # channels_last for both, as the sr3 pipeline runs its network (about 1.3x faster on CPUs)
    net = RRDBNet().eval().to(memory_format=torch.channels_last)
    x = torch.rand(1, 3, size, size).to(memory_format=torch.channels_last)

    def forward():
        with torch.inference_mode():
            return net(x)

    rrdb_seconds = median_seconds(forward, repeats, 1, cpu)
    return {
        "model": model, "input": [size, size], "output": [4 * size, 4 * size],
        "sampler": sampler.name, "steps": sampler.steps, "tile": sampler.tile,
        "params": sum(p.numel() for p in pipe.denoiser.parameters()), "seconds": sr3_seconds,
        "rrdbnet_params": sum(p.numel() for p in net.parameters()), "rrdbnet_gflop": rrdbnet_gflop(size),
        "rrdbnet_seconds": rrdb_seconds, "ratio": sr3_seconds / rrdb_seconds,
        "threads": torch.get_num_threads(), "device": device_name(cpu), "torch": torch.__version__, "repeats": repeats,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, epilog=EXAMPLES, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", default="natural-4x", help="a shipped 4x model, run directory or weights file")
    p.add_argument("--size", type=int, default=128, help="input side in pixels (default 128: a 512x512 output)")
    p.add_argument("--threads", type=int, help="torch intra-op threads for both")
    p.add_argument("--repeats", type=int, default=3, help="timed calls of each after one untimed; the median is reported")
    p.add_argument("--json", help="write the record to this JSON file")
    args = p.parse_args(argv)
    if args.size < 8 or args.repeats < 1 or (args.threads is not None and args.threads < 1):
        raise SR3Error("--size must be at least 8, --repeats and --threads at least 1")
    check_json(args.json)
    if args.threads:
        torch.set_num_threads(args.threads)
    r = measure(args.model, args.size, args.repeats)
    print(f"{r['model']}: {r['seconds']:.2f} s per {args.size}x{args.size} input ({r['sampler']}, {r['steps']} step(s), "
          f"tile {r['tile']}, {r['params'] / 1e6:.2f} M params); RRDBNet: {r['rrdbnet_seconds']:.2f} s "
          f"({r['rrdbnet_params'] / 1e6:.2f} M params, {r['rrdbnet_gflop']:.0f} GFLOP); ratio {r['ratio']:.2f}, "
          f"{r['threads']} threads, {r['device']}")
    if args.json:
        save_json(args.json, r)
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
