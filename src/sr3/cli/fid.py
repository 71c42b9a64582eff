"""`sr3 fid`: FID and KID of a folder of generated images against a reference folder."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from tqdm.auto import tqdm

from sr3.cli.common import add_reference_args, check_json, load_reference

EXAMPLES = """examples:
  sr3 fid samples/ --ref TinyImageNet-val/images --ref-labels TinyImageNet-val/labels.csv \\
      --ref-classes n07749582,n01641577 --json fid.json
(needs the optional extra: pip install 'sr3[fid]')
"""

def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "fid", help="FID/KID against a reference folder", epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("images", help="folder of generated images")
    add_reference_args(p)
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", help="write the figures to this JSON file")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> None:
    from sr3.device import resolve_device
    from sr3.metrics.fid import fid_kid, folder_features, load_inception

    check_json(args.json)
    net = load_inception(resolve_device(args.device))
    with tqdm(desc="images", unit="img", disable=args.quiet) as bar:
        features = folder_features(args.images, net, progress=bar.update)
    result = fid_kid(features, load_reference(args, net))
    print(f"FID {result['fid']:.2f}  KID {result['kid']:.4f} ± {result['kid_std']:.4f}  "
          f"({result['n_images']} images vs {result['n_reference']} reference)")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
