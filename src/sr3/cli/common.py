"""Checks the subcommands share."""

from __future__ import annotations

from pathlib import Path

from sr3.errors import SR3Error


def check_tile(tile: int | None) -> None:
    """Refuse a --tile that is neither 0 (whole images) nor large enough to hold the network's context."""
    if tile is not None and tile != 0 and tile < 8:
        raise SR3Error(f"--tile must be 0 (no tiling) or at least 8 input pixels; got {tile}")


def check_json(path: str | None) -> None:
    """Refuse a --json target that cannot be written, before any work is done."""
    if path and (not Path(path).resolve().parent.is_dir() or Path(path).is_dir()):
        raise SR3Error(f"cannot write --json {path}: its folder does not exist or it is a folder")
