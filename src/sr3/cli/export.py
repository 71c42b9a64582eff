"""`sr3 export`: a run's EMA weights as one standalone file, for sharing or shipping."""

from __future__ import annotations

import argparse

EXAMPLES = """examples:
  sr3 export --model runs/291 --output natural.safetensors
  sr3 export --model runs/291 --output natural.safetensors --fp32 --set sampler.name=euler --set sampler.steps=8
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="write a run's EMA weights and config to one .safetensors file",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--model", required=True, help="run directory, checkpoint folder or .safetensors file")
    p.add_argument("--output", required=True, help="the .safetensors file to write")
    p.add_argument("--fp32", action="store_true", help="keep float32 weights (default: float16, half the size)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="default sampler setting, e.g. sampler.steps=8")


def run(args: argparse.Namespace) -> None:
    from sr3.checkpoint import export_weights
    from sr3.pretrained import resolve_model

    path = export_weights(resolve_model(args.model), args.output, half=not args.fp32, overrides=args.set)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")
