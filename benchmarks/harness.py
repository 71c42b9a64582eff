"""What the benchmark scripts share: their flags, the preset's network, timing, memory and the printed report.

Kept in one place so that every script times, counts memory and prints its figures the same way.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import resource
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

from sr3.config import PRECISIONS, Config, load_config, preset_names
from sr3.device import autocast as precision_autocast
from sr3.device import check_precision
from sr3.errors import SR3Error
from sr3.models import build_network
from sr3.models.unet import downscale_factor


def parser(description: str, epilog: str) -> argparse.ArgumentParser:
    """The flags every benchmark takes: which network, at what size, precision, threads and repeats."""
    p = argparse.ArgumentParser(description=description, epilog=epilog, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--preset", required=True, help=f"config preset or file; presets: {', '.join(preset_names())}")
    p.add_argument("--resolution", type=int, required=True, help="HR image side in pixels")
    p.add_argument("--batch", type=int, required=True, help="images per step")
    p.add_argument("--dtype", choices=list(PRECISIONS), default="fp32", help="bf16 and fp16 run under torch.autocast")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's own)")
    p.add_argument("--repeats", type=int, default=5, help="timed steps; the median is reported")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    p.add_argument("--channels-last", action="store_true", help="weights in channels_last memory format (as sr3's inference pipeline)")
    p.add_argument("--compile", action="store_true", help="torch.compile the network; its first call is timed apart")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a summary line")
    return p


def add_image_set_args(p: argparse.ArgumentParser) -> None:
    """The model and the SR test set a quality benchmark scores: --model, --hr, --lr, --holdout, --limit, --skip."""
    p.add_argument("--model", required=True, help="shipped model name, run directory or weights file")
    p.add_argument("--hr", required=True, help="folder of HR images")
    p.add_argument("--lr", help="folder of LR images with the same names (default: the model's degradation, MATLAB-style bicubic)")
    p.add_argument("--holdout", action="store_true", help="only the model's held-out images, resized as trained")
    p.add_argument("--limit", type=int, help="only the first N images")
    p.add_argument("--skip", type=int, default=0, help="leave out the first N images (e.g. the reported ones)")


def prepare(args: argparse.Namespace) -> tuple[Config, torch.device]:
    """Check the flags, set the thread count, load the preset; mistakes raise SR3Error before any work."""
    if args.batch < 1 or args.repeats < 1 or args.warmup < 0 or (args.threads is not None and args.threads < 1):
        raise SR3Error("--batch, --repeats and --threads must be at least 1, --warmup at least 0")
    cfg = load_config(args.preset)
    factor = downscale_factor(cfg.model)
    if args.resolution < factor or args.resolution % factor:
        raise SR3Error(f"--resolution {args.resolution} must be a positive multiple of {factor} for this U-Net")
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    check_precision(args.dtype, device)
    return cfg, device


def build_net(cfg: Config, device: torch.device, channels_last: bool = False) -> torch.nn.Module:
    """The preset's network on `device`, fp32 weights (autocast handles bf16 as mixed-precision training does)."""
    net = build_network(cfg.model).to(device)
    return net.to(memory_format=torch.channels_last) if channels_last else net


def timed_steps(step: Callable[[], object], args: argparse.Namespace, device: torch.device) -> dict[str, object]:
    """Median seconds of `step` after warm-up, and with --compile the seconds of its first, compiling call."""
    compile_seconds = call_seconds(step, device) if args.compile else None
    return {"seconds_per_step": median_seconds(step, args.repeats, args.warmup, device), "compile_seconds": compile_seconds}


def random_labels(cfg: Config, batch: int, device: torch.device) -> torch.Tensor | None:
    """Class labels for a class-conditional preset, else None."""
    return torch.randint(cfg.model.num_classes, (batch,), device=device) if cfg.model.num_classes else None


def autocast(device: torch.device, dtype: str) -> contextlib.AbstractContextManager:
    """torch.autocast to the chosen low precision, or nothing for fp32."""
    return precision_autocast(device.type, dtype)


def sync(device: torch.device) -> None:
    """Wait for queued GPU work, so wall-clock time covers it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def call_seconds(fn: Callable[[], object], device: torch.device) -> float:
    """Wall-clock seconds of one call of `fn`, the device synchronised on both sides."""
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


def median_seconds(fn: Callable[[], object], repeats: int, warmup: int, device: torch.device) -> float:
    """Median wall-clock seconds of `fn` over `repeats` calls after `warmup` untimed ones."""
    for _ in range(warmup):
        fn()
    return statistics.median(call_seconds(fn, device) for _ in range(repeats))


def reset_peak_memory(device: torch.device) -> None:
    """Start GPU peak-memory tracking afresh (the process's peak RSS cannot be reset)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_mb(device: torch.device) -> float:
    """Peak GPU memory allocated by torch on a GPU; otherwise the process's peak resident set size, in MiB."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    kib_or_bytes = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kib_or_bytes / (2**20 if sys.platform == "darwin" else 2**10)  # macOS reports bytes, Linux KiB


def device_name(device: torch.device) -> str:
    """The GPU's name, or "cpu": what a benchmark record says it ran on."""
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


def common_record(args: argparse.Namespace, device: torch.device, net: torch.nn.Module) -> dict[str, object]:
    """The fields that say what was measured, on what."""
    return {
        "preset": args.preset,
        "resolution": args.resolution,
        "batch": args.batch,
        "dtype": args.dtype,
        "channels_last": args.channels_last,
        "compile": args.compile,
        "device": device_name(device),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "params": sum(p.numel() for p in net.parameters()),
        "repeats": args.repeats,
        "warmup": args.warmup,
        "memory": "cuda_max_allocated" if device.type == "cuda" else "max_rss",
    }


def compiled(record: dict[str, object]) -> str:
    """The summary line's note of the compiling first call, if there was one."""
    return "" if record["compile_seconds"] is None else f", first (compiling) call {record['compile_seconds']:.1f} s"


def set_name(folder: str | Path) -> str:
    """An image folder as a record names it: its last two parts (e.g. RealSR/HR), never a machine's path."""
    return "/".join(Path(folder).resolve().parts[-2:])


def save_json(path: str | Path, record: object) -> None:
    """Write a script's record (or list of records) to its --json file, one indented JSON document."""
    Path(path).write_text(json.dumps(record, indent=1) + "\n")


def emit(args: argparse.Namespace, record: dict[str, object], line: str) -> None:
    """Print the record as one JSON object (--json) or the readable one-line summary."""
    print(json.dumps(record) if args.json else line)


def run(main: Callable[[list[str] | None], int], argv: list[str] | None = None) -> int:
    """Call a script's main; a user mistake becomes one line on stderr and exit status 2."""
    try:
        return main(argv)
    except SR3Error as exc:
        print(f"{Path(sys.argv[0]).name}: error: {exc}", file=sys.stderr)
        return 2
