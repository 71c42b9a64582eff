"""Time one full training step of a preset: SR3's loss forward and backward, AdamW update, gradients cleared.

Training throughput in samples per second, on random data so that data loading is no part of the figure.
"""

from __future__ import annotations

import argparse
import sys

import torch

from harness import (
    autocast,
    build_net,
    common_record,
    compiled,
    emit,
    parser,
    peak_memory_mb,
    prepare,
    random_labels,
    reset_peak_memory,
    run,
    timed_steps,
)
from sr3.config import Config
from sr3.diffusion import Cond, diffusion_loss
from sr3.noise import PerSampleNoise
from sr3.schedules import training_gammas
from sr3.train.loop import make_optimizer

EXAMPLES = """examples:
  python benchmarks/train_step.py --preset sr3-ref-small --resolution 64 --batch 8
  python benchmarks/train_step.py --preset sr3-ref-faces-16-128 --resolution 128 --batch 1 --dtype bf16 --json"""


def train_step_fn(net: torch.nn.Module, cfg: Config, args: argparse.Namespace, device: torch.device):
    """One optimisation step on a fixed random batch, loss under autocast as mixed-precision training runs it."""
    b, r, m = args.batch, args.resolution, cfg.model
    opt = make_optimizer(net.parameters(), cfg.train, device)
    gammas = training_gammas(cfg.noise)
    rng = PerSampleNoise(range(b))  # CPU generators, one per sample, as training draws them
    x0 = torch.rand(b, m.out_channels, r, r, device=device) * 2 - 1
    lr_channels = m.in_channels - m.out_channels
    image = torch.rand(b, lr_channels, r, r, device=device) * 2 - 1 if lr_channels else None
    cond = Cond(image=image, labels=random_labels(cfg, b, device))

    def step():
        with autocast(device, args.dtype):
            loss = diffusion_loss(net, x0, cond, gammas, cfg.noise, rng)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step


def main(argv: list[str] | None = None) -> int:
    args = parser(__doc__, EXAMPLES).parse_args(argv)
    cfg, device = prepare(args)
    net = build_net(cfg, device, args.channels_last).train()
    reset_peak_memory(device)
    timing = timed_steps(train_step_fn(torch.compile(net) if args.compile else net, cfg, args, device), args, device)
    seconds = timing["seconds_per_step"]
    record = common_record(args, device, net) | timing | {
        "samples_per_second": args.batch / seconds,
        "peak_rss_mb": peak_memory_mb(device),
    }
    emit(args, record, summary(record))
    return 0


def summary(r: dict) -> str:
    """The record as one readable line."""
    return (
        f"{r['preset']} {r['resolution']}px batch {r['batch']} {r['dtype']} on {r['device']} ({r['threads']} threads): "
        f"{r['seconds_per_step']:.3f} s/train step, {r['samples_per_second']:.2f} samples/s, "
        f"{r['params'] / 1e6:.2f} M params, peak memory {r['peak_rss_mb']:.0f} MB{compiled(r)}"
    )


if __name__ == "__main__":
    sys.exit(run(main))
