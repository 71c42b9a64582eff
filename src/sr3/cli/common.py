"""Flags and checks the subcommands share."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sr3.errors import SR3Error
from sr3.pipeline import PRECISIONS, SR3Pipeline, slow_bf16_reason


def check_tile(tile: int | None) -> None:
    """Refuse a --tile that is neither 0 (whole images) nor large enough to hold the network's context."""
    if tile is not None and tile != 0 and tile < 8:
        raise SR3Error(f"--tile must be 0 (no tiling) or at least 8 input pixels; got {tile}")


def check_json(path: str | None) -> None:
    """Refuse a --json target that cannot be written, before any work is done."""
    if path and (not Path(path).resolve().parent.is_dir() or Path(path).is_dir()):
        raise SR3Error(f"cannot write --json {path}: its folder does not exist or it is a folder")


def add_precision_flag(p: argparse.ArgumentParser) -> None:
    """The --precision flag of the sampling commands."""
    p.add_argument(
        "--precision",
        choices=list(PRECISIONS),
        default="fp32",
        help="bf16: the network runs under bf16 autocast, the fast path on GPUs and on CPUs with AMX or "
        "AVX-512 BF16 (default fp32)",
    )


def warn_slow_bf16(pipe: SR3Pipeline) -> None:
    """Say so when a pipeline runs bf16 on a device without bf16 kernels, where it is many times slower than fp32."""
    reason = slow_bf16_reason(pipe.device) if pipe.precision == "bf16" else None
    if reason:
        print(f"sr3: warning: {reason}; bf16 will run many times slower than fp32 here", file=sys.stderr)
