"""`sr3 fid`: FID (and KID) of a folder of generated images against a reference folder."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from tqdm.auto import tqdm

from sr3.errors import SR3Error

EXAMPLES = """examples:
  sr3 fid samples/ --ref TinyImageNet-val-10/ --kid --json fid.json
(needs the optional extra: pip install 'sr3[fid]')
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "fid", help="FID/KID against a reference folder", epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("images", help="folder of generated images")
    p.add_argument("--ref", required=True, help="folder of reference images (statistics are cached)")
    p.add_argument("--kid", action="store_true", help="also Kernel Inception Distance")
    p.add_argument("--cache", default=str(Path.home() / ".cache" / "sr3" / "fid"), help="reference statistics cache")
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", help="write the figures to this JSON file")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> None:
    from sr3.metrics.fid import (
        folder_features,
        frechet_distance,
        kernel_inception_distance,
        load_inception,
        reference_statistics,
        statistics,
    )
    from sr3.pipeline import resolve_device

    if args.json and not Path(args.json).resolve().parent.is_dir():
        raise SR3Error(f"cannot write --json {args.json}: its folder does not exist")
    net = load_inception(resolve_device(args.device))
    with tqdm(desc="images", unit="img", disable=args.quiet) as bar:
        features = folder_features(args.images, net, progress=bar.update)
    with tqdm(desc="reference", unit="img", disable=args.quiet) as bar:
        if args.kid:
            ref_features = folder_features(args.ref, net, progress=bar.update)
            mu_ref, sigma_ref = statistics(ref_features)
        else:
            mu_ref, sigma_ref = reference_statistics(args.ref, net, args.cache, progress=bar.update)
    mu, sigma = statistics(features)
    result = {"fid": frechet_distance(mu, sigma, mu_ref, sigma_ref), "n_images": len(features)}
    if args.kid:
        result["kid"], result["kid_std"] = kernel_inception_distance(features, ref_features)
        result["n_reference"] = len(ref_features)
    print("  ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in result.items()))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
