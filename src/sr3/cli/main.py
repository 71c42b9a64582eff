"""`sr3` entry point: dispatches subcommands and turns user mistakes into one line and exit code 2."""

from __future__ import annotations

import argparse
import sys

from sr3 import __version__
from sr3.cli import eval as eval_cmd
from sr3.cli import cas, cascade, compare, export, fid, generate, schedule, serve, study, train, upscale
from sr3.errors import SR3Error

COMMANDS = {
    "train": train,
    "upscale": upscale,
    "eval": eval_cmd,
    "generate": generate,
    "fid": fid,
    "export": export,
    "cascade": cascade,
    "cas": cas,
    "schedule": schedule,
    "compare": compare,
    "serve": serve,
    "study": study,
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sr3", description="Image super-resolution by iterative refinement (SR3) and cascaded diffusion."
    )
    parser.add_argument("--version", action="version", version=f"sr3 {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module in COMMANDS.items():
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        COMMANDS[args.command].run(args)
    except SR3Error as exc:
        print(f"sr3 {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"sr3 {args.command}: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
