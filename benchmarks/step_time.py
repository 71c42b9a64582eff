"""Time one denoising step (one U-Net forward) of a preset and set it against the machine's measured peak.

A sampler's cost is this figure times its number of network evaluations, so this is the speed to watch.
"""

from __future__ import annotations

import argparse
import math
import sys

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

from harness import (
    autocast,
    build_net,
    common_record,
    compiled,
    emit,
    median_seconds,
    parser,
    peak_memory_mb,
    prepare,
    random_labels,
    reset_peak_memory,
    run,
    timed_steps,
)
from sr3.config import Config
from sr3.device import AUTOCAST_DTYPES
from sr3.models import build_network

EXAMPLES = """examples:
  python benchmarks/step_time.py --preset sr3-ref-small --resolution 64 --batch 8
  python benchmarks/step_time.py --preset sr3-ref-faces-16-128 --resolution 128 --batch 1 --dtype bf16 --json"""

CPU_SDPA = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu
PROBE_SECONDS = 0.25  # a peak probe grows until one call takes this long: timeable, yet short where kernels are slow
MATMUL_SIDES = [256, 512, 1024, 2048, 4096]
CONV_SHAPES = [(1, 8), (1, 16), (1, 32), (1, 64), (2, 64), (4, 64), (8, 64)]  # (batch, side), 256 -> 256 channels


def _cpu_sdpa_flop(q, k, v, *args, out_shape=None, **kwargs) -> int:
    """FLOPs of the CPU's fused attention kernel, for which FlopCounterMode has no formula of its own."""
    return sdpa_flop_count(q, k, v)


def step_fn(net: torch.nn.Module, cfg: Config, args: argparse.Namespace, device: torch.device):
    """One inference forward of `net` on a random batch, as a sampler calls it."""
    b, r = args.batch, args.resolution
    x = torch.randn(b, cfg.model.in_channels, r, r, device=device)
    sqrt_gamma = torch.rand(b, device=device) * 0.98 + 0.01
    labels = random_labels(cfg, b, device)

    def step():
        with torch.inference_mode(), autocast(device, args.dtype):
            return net(x, sqrt_gamma, labels=labels)

    return step


def gflop_per_step(cfg: Config, batch: int, resolution: int) -> float:
    """GFLOP of one forward (a multiply-add is 2), counted on the meta device: shapes only, no compute."""
    with torch.device("meta"):
        net = build_network(cfg.model)
        x = torch.empty(batch, cfg.model.in_channels, resolution, resolution)
        sqrt_gamma = torch.empty(batch)
        labels = torch.zeros(batch, dtype=torch.long) if cfg.model.num_classes else None
    with torch.inference_mode(), FlopCounterMode(display=False, custom_mapping={CPU_SDPA: _cpu_sdpa_flop}) as counter:
        net(x, sqrt_gamma, labels=labels)
    return counter.get_total_flops() / 1e9


def _probe(make, sizes, device: torch.device) -> float:
    """Best GFLOP/s of an op over growing sizes, stopping once a call takes PROBE_SECONDS."""
    best = 0.0
    for size in sizes:
        op, flop = make(size)
        seconds = median_seconds(op, repeats=3, warmup=1, device=device)
        best = max(best, flop / seconds / 1e9)
        if seconds >= PROBE_SECONDS:
            return best
    calls = math.ceil(PROBE_SECONDS / seconds)  # still quick at the largest size (a GPU): time a run of calls

    def run_calls():
        for _ in range(calls):
            op()

    seconds = median_seconds(run_calls, repeats=3, warmup=1, device=device) / calls
    return max(best, flop / seconds / 1e9)


def peak_gflops(dtype: str, device: torch.device) -> float:
    """The machine's attainable GFLOP/s in `dtype`: the better of a square matmul and a 3x3 conv."""
    kw = {"device": device, "dtype": AUTOCAST_DTYPES[dtype] or torch.float32}

    def matmul(n):
        a, b = torch.randn(n, n, **kw), torch.randn(n, n, **kw)
        return (lambda: a @ b), 2 * n**3

    def conv(shape):
        batch, side = shape
        x, w = torch.randn(batch, 256, side, side, **kw), torch.randn(256, 256, 3, 3, **kw)
        return (lambda: F.conv2d(x, w, padding=1)), 2 * batch * side * side * 256 * 256 * 9

    with torch.inference_mode():
        return max(_probe(matmul, MATMUL_SIDES, device), _probe(conv, CONV_SHAPES, device))


def main(argv: list[str] | None = None) -> int:
    args = parser(__doc__, EXAMPLES).parse_args(argv)
    cfg, device = prepare(args)
    net = build_net(cfg, device, args.channels_last).eval()
    reset_peak_memory(device)
    timing = timed_steps(step_fn(torch.compile(net) if args.compile else net, cfg, args, device), args, device)
    seconds = timing["seconds_per_step"]
    memory = peak_memory_mb(device)  # read before the peak probe, whose tensors are no part of a step
    gflop = gflop_per_step(cfg, args.batch, args.resolution)
    peak = peak_gflops(args.dtype, device)
    record = common_record(args, device, net) | timing | {
        "gflop_per_step": gflop,
        "achieved_gflops": gflop / seconds,
        "peak_gflops_measured": peak,
        "fraction_of_peak": gflop / seconds / peak,
        "peak_rss_mb": memory,
    }
    emit(args, record, summary(record))
    return 0


def summary(r: dict) -> str:
    """The record as one readable line."""
    return (
        f"{r['preset']} {r['resolution']}px batch {r['batch']} {r['dtype']} on {r['device']} ({r['threads']} threads): "
        f"{r['seconds_per_step']:.3f} s/step, {r['gflop_per_step']:.1f} GFLOP, {r['achieved_gflops']:.1f} GFLOP/s "
        f"= {r['fraction_of_peak']:.0%} of measured peak {r['peak_gflops_measured']:.1f} GFLOP/s, "
        f"{r['params'] / 1e6:.2f} M params, peak memory {r['peak_rss_mb']:.0f} MB{compiled(r)}"
    )


if __name__ == "__main__":
    sys.exit(run(main))
