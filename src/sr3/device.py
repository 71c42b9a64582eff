"""Devices and numeric precisions: which device a name means here, and what each precision runs as.

The precision names are `sr3.config.PRECISIONS`; this module says what each is to torch (the network's
autocast dtype) and to Accelerate (its `mixed_precision` argument), and where one is slow or missing.
"""

from __future__ import annotations

import contextlib
import platform

import torch

from sr3.config import PRECISIONS
from sr3.errors import SR3Error

AUTOCAST_DTYPES: dict[str, torch.dtype | None] = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
ACCELERATE_NAMES: dict[str, str] = {"fp32": "no", "bf16": "bf16", "fp16": "fp16"}


def resolve_device(device: str | torch.device) -> torch.device:
    """A torch device that exists here, or an SR3Error naming the problem."""
    try:
        device = torch.device(device)
    except RuntimeError:
        raise SR3Error(f"unknown device '{device}'") from None
    accelerator = torch.accelerator.current_accelerator()
    if device.type != "cpu" and (accelerator is None or accelerator.type != device.type):
        raise SR3Error(f"device '{device}' is not available on this machine")
    return device


def check_precision(precision: str, device: torch.device) -> str:
    """`precision` if it is a known name that runs on `device` (fp16 needs a CUDA GPU), else an SR3Error."""
    if precision not in AUTOCAST_DTYPES:
        raise SR3Error(f"precision must be one of {', '.join(PRECISIONS)}; got {precision!r}")
    if precision == "fp16" and device.type != "cuda":
        raise SR3Error("fp16 needs a CUDA GPU; use bf16 or fp32 here")
    return precision


def autocast(device_type: str, precision: str) -> contextlib.AbstractContextManager:
    """torch.autocast to the precision's dtype on this device type, or nothing for fp32."""
    dtype = AUTOCAST_DTYPES[precision]
    return contextlib.nullcontext() if dtype is None else torch.autocast(device_type, dtype=dtype)


def slow_bf16_reason(device: torch.device) -> str | None:
    """Why bf16 would run slower than fp32 on `device` (no bf16 instructions or tensor cores), or None."""
    if device.type == "cuda":
        major, minor = torch.cuda.get_device_capability(device)
        return None if major >= 8 else f"this GPU (compute capability {major}.{minor}) has no bf16 tensor cores"
    if device.type != "cpu":
        return None  # other accelerators: nothing known against bf16
    if platform.machine().lower() in ("x86_64", "amd64", "i386", "i686"):
        fast = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    else:
        fast = torch.ops.mkldnn._is_mkldnn_bf16_supported()  # e.g. ARM's BF16 extension
    return None if fast else "this CPU has no bf16 instructions (AMX or AVX-512 BF16)"
