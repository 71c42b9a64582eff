"""`sr3 train`: train an SR3 model on a folder of HR images."""

from __future__ import annotations

import argparse

from sr3.config import load_config, preset_names

EXAMPLES = """examples:
  sr3 train --config small-4x --data ../data/T91 --data ../data/BSD200 --output runs/291 --steps 20000
  sr3 train --config runs/t91/config.json --data ../data/T91 --output runs/t91 --steps 40000 --resume
  accelerate launch --num_processes 8 -m sr3.cli.main train --config natural-64-256 --data imagenet/ --output runs/in --steps 1000000
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train an SR3 model on a folder of HR images",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--config", required=True, help=f"YAML/JSON config file or preset ({', '.join(preset_names())})")
    p.add_argument("--data", required=True, action="append", help="folder of HR training images, searched recursively (repeat for several)")
    p.add_argument("--output", required=True, help="run directory: checkpoints, config, logs, sample grids")
    p.add_argument("--steps", required=True, type=int, help="total optimiser steps to train to")
    p.add_argument("--resume", action="store_true", help="continue the run in --output from its latest checkpoint")
    p.add_argument("--val-data", help="folder of HR validation images (default: centre crops of the first training images)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key, e.g. train.lr=2e-4")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> None:
    from sr3.train.loop import Trainer

    cfg = load_config(args.config, args.set)
    trainer = Trainer(cfg, args.data, args.output, resume=args.resume, val_dir=args.val_data)
    trainer.fit(args.steps, progress=not args.quiet)
