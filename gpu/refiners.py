"""Train the three refiner chains on one lent GPU in a single command, and pack the images that run needs.

A chain is a regression predictor, exported, then the SR3 refiner of its prediction (`predictor.model` set to
that export): faces-8x-regression -> faces-8x-refiner, natural-4x-regression -> natural-4x-refiner and
photo-4x-regression -> photo-4x-refiner. Why one command: a lent GPU runs one command of at most 10 minutes
over a copy of the working tree (64 MiB in all, carried paths included), on a bare machine with no package
index, and gives back at most 8 files of at most 16 MiB, 64 MiB together. So the data travel packed, the three
chains run side by side (one process each, keeping the GPU busy while each waits on its data loader), each
phase's step count is planned from its own measured seconds per step against a deadline, and $OUT receives
float16 EMA weights, `budget.json` (steps, samples seen, device, wall time per model) and `train.log`. A
refiner carrying its predictor is too large to come back whole, so $OUT holds the three predictors and the
three refiners without theirs (`NAME.detached.safetensors`), and `assemble` puts each pair together here.

Here, once (reads UTKFace/, T91/ and ImageNet-1k-samples/ under --data; never RealSR, which is for evaluation):
    python gpu/refiners.py pack --data ../shared/data --out gpu/data

On the device machine, carrying gpu/data (no install: the script puts this checkout's src/ on the path,
since the machine has no package index and its torch is not the pinned one), with timeout_s=600:
    PYTHONUNBUFFERED=1 python3 gpu/refiners.py train --data gpu/data --out "$OUT"

Back here, the six whole models (file names = model names) from the fetched files:
    python gpu/refiners.py assemble --run FETCHED_OUT --out models/

A CPU smoke test of the same code path (2 steps a model, batch 2, six images a folder):
    python gpu/refiners.py train --data gpu/data --out /tmp/refiners --tiny
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))  # this checkout's sr3, installed or not

from sr3.errors import SR3Error
from sr3.imaging import list_images

MIB = 2**20
DEVICE_LIMIT_MIB = 64  # what travels to the device machine: the working tree and the carried paths together
SOURCES = {"faces": "UTKFace", "t91": "T91", "photos": "ImageNet-1k-samples"}  # pack's subfolders of --data
MANIFEST = "manifest.json"
DETACHED, DETACHED_META = ".detached.safetensors", "detached_predictor"  # a refiner file without its predictor

# Throughput assumptions, all measured again at run time (the plan never relies on them): `natural-4x` trained
# alone at about 930-1,000 64-px crops a second on an H200 with 6 loader workers, data-loader bound, so three
# chains sharing 16 cores should each see roughly 300-600 crops (or 128-px faces) a second: at batch 64 some
# 5-10 steps a second, i.e. on the order of 1,000-2,000 steps in each phase of an 8-minute run.
WARMUP_STEPS = 30  # the first chunk of a phase, whose logged seconds per step plan the next
CHUNK_S = 90.0  # later chunks: each ends with a checkpoint, a validation and an export (a second or two)
PREDICTOR_SHARE = 0.4  # of a chain's time, to the regression predictor; the rest to the refiner
RESERVE_S = 20.0  # at the end, for the last exports and budget.json
GRACE_S = 60.0  # past the deadline before a chain still running is killed (its last export stays in $OUT)
TINY_IMAGES, TINY_STEPS = 6, 2


@dataclass(frozen=True)
class Chain:
    """A predictor preset, the refiner preset that refines it, the packed folders both train on, and GPU settings."""

    predictor: str
    refiner: str
    folders: tuple[str, ...]
    batch_size: int
    worker_share: int  # of the loader workers; the `photo` degradations cost the most per sample
    predictor_init: str = ""  # train.init of the predictor when the preset names none


CHAINS = {
    "faces": Chain("faces-8x-regression", "faces-8x-refiner", ("faces",), 32, 4),
    "natural": Chain("natural-4x-regression", "natural-4x-refiner", ("t91", "photos"), 64, 4, "natural-4x-regression"),
    "photo": Chain("photo-4x-regression", "photo-4x-refiner", ("t91", "photos"), 64, 6),
}


# ---- pack ----------------------------------------------------------------------------------------------------


def _source(data: Path, given: str | None, key: str) -> Path:
    folder = data / (given or SOURCES[key])
    if any(part.lower() == "realsr" for part in folder.parts):
        raise SR3Error(f"{folder}: RealSR is for evaluation only and is never packed")
    if not folder.is_dir():
        raise SR3Error(f"{folder} is not a folder (pass --{key} SUBFOLDER of --data)")
    return folder


def select_files(args: argparse.Namespace) -> tuple[dict[str, Path], dict[str, list[tuple[Path, str]]]]:
    """The source folders, and (file, path in the pack) of each part: the faces' training split, T91, the photos."""
    from sr3.config import load_config
    from sr3.data.pairs import split_files

    holdout = {load_config(c.refiner).data.holdout for c in CHAINS.values() if "faces" in c.folders}
    assert len(holdout) == 1, "the faces presets disagree on data.holdout"
    data = Path(args.data)
    roots = {key: _source(data, getattr(args, key), key) for key in SOURCES}
    faces = split_files(list_images(roots["faces"]), holdout.pop(), "train")[: args.max_faces]
    chosen = {"faces": faces, "t91": list_images(roots["t91"]), "photos": list_images(roots["photos"])}
    parts = {key: [(f, f"{key}/{f.relative_to(roots[key]).as_posix()}") for f in files] for key, files in chosen.items()}
    return roots, parts


def fit_budget(roots: dict[str, Path], parts: dict[str, list[tuple[Path, str]]], budget: int) -> tuple[dict, int]:
    """The manifest (source folders; [path in the pack, bytes] of each file) of the faces and T91 whole plus the
    photos that fit, in name order, and the pack's size in bytes, the manifest's own included."""
    manifest = {"sources": {k: str(v) for k, v in roots.items()},
                "files": [[name, f.stat().st_size] for k in ("faces", "t91") for f, name in parts[k]]}
    size = lambda: sum(b for _, b in manifest["files"]) + len(json.dumps(manifest))
    total = size()
    if total > budget:
        raise SR3Error(
            f"the faces' training split and T91 alone take {total / MIB:.1f} MiB, over the {budget / MIB:.1f} MiB "
            "budget; take fewer faces with --max-faces"
        )
    for f, name in parts["photos"]:
        e = [name, f.stat().st_size]
        cost = e[1] + len(json.dumps(e)) + 2  # the file and its manifest entry
        if total + cost <= budget:
            manifest["files"].append(e)
            total += cost
    while size() > budget:  # should the estimate have been short
        manifest["files"].pop()
    return manifest, size()


def _link_or_copy(src: Path, dst: Path) -> None:
    """A hard link where the file system allows one, else a byte copy: never a re-encode."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def travelling_tree_bytes(exclude: Path) -> int | None:
    """Bytes of the rest of the working tree that travels with a device call (tracked and unignored files)."""
    try:
        out = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-z", "-co", "--exclude-standard"],
                             capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    paths = [ROOT / p for p in out.decode().split("\0") if p]
    return sum(p.stat().st_size for p in paths if p.is_file() and exclude not in p.parents)


def pack(args: argparse.Namespace) -> None:
    out = Path(args.out).resolve()
    if out.exists() and any(out.iterdir()) and not (out / MANIFEST).is_file():
        raise SR3Error(f"{out} holds files that no earlier pack wrote; choose an empty or new --out")
    roots, parts = select_files(args)
    manifest, total = fit_budget(roots, parts, int(args.budget_mb * MIB))
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    sources = {name: f for files in parts.values() for f, name in files}
    for name, _ in manifest["files"]:
        _link_or_copy(sources[name], tmp / name)
    (tmp / MANIFEST).write_text(json.dumps(manifest))
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)
    counts = {k: sum(name.startswith(k + "/") for name, _ in manifest["files"]) for k in parts}
    print(f"packed {counts['faces']} faces (training split), {counts['t91']} T91 images and {counts['photos']} of "
          f"{len(parts['photos'])} photos into {out}: {total / MIB:.1f} MiB of a {args.budget_mb:g} MiB budget")
    rest = travelling_tree_bytes(out)
    if rest is not None:
        together = (rest + total) / MIB
        print(f"the rest of the working tree travels with it: {rest / MIB:.1f} MiB; together {together:.1f} MiB")
        if together > DEVICE_LIMIT_MIB:
            print(f"warning: over the {DEVICE_LIMIT_MIB} MiB a device call takes; it would be refused", file=sys.stderr)


# ---- train: the parent process -------------------------------------------------------------------------------


def train(args: argparse.Namespace) -> None:
    data, out = Path(args.data).resolve(), Path(args.out).resolve()
    for folder in sorted({f for c in CHAINS.values() for f in c.folders}):
        list_images(data / folder)  # a missing or empty part fails now, before any process starts
    out.mkdir(parents=True, exist_ok=True)
    work = Path(args.work or tempfile.mkdtemp(prefix="sr3-refiners-")).resolve()
    work.mkdir(parents=True, exist_ok=True)
    start = time.time()
    deadline = start + 60 * args.minutes
    procs = {name: _start_chain(name, args, data, out, work, deadline) for name in CHAINS}
    for name, proc in procs.items():
        try:
            proc.wait(timeout=max(1.0, deadline + GRACE_S - time.time()))
        except subprocess.TimeoutExpired:
            proc.kill()  # one of ours, by its handle; its last export is already in $OUT
            proc.wait()
    log = _budget_log(args, procs, work, time.time() - start)
    log["files"] = {p.name: p.stat().st_size for p in sorted(out.glob("*.safetensors"))}
    (out / "budget.json").write_text(json.dumps(log, indent=1))
    with open(out / "train.log", "w") as f:
        for name in CHAINS:
            f.write(f"==== {name}\n" + (work / f"{name}.log").read_text()[-200_000:])
    failed = [name for name, proc in procs.items() if proc.returncode != 0]
    print(f"wrote {len(log['files'])} weights files, budget.json and train.log to {out} in {log['wall_s']:.0f} s")
    if failed:
        raise SR3Error(f"chain(s) {', '.join(failed)} failed; see {out / 'train.log'}")


def _start_chain(name: str, args, data: Path, out: Path, work: Path, deadline: float) -> subprocess.Popen:
    cmd = [sys.executable, str(Path(__file__).resolve()), "chain", name, "--data", str(data), "--out", str(out),
           "--work", str(work), "--deadline", str(deadline), "--steps-scale", str(args.steps_scale)]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")])))
    env.setdefault("OMP_NUM_THREADS", "2")  # the main processes only feed the GPU; the loader workers do the CPU work
    with open(work / f"{name}.log", "w") as log:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(cmd + (["--tiny"] if args.tiny else []), stdout=log, stderr=subprocess.STDOUT, env=env)


def _budget_log(args, procs: dict, work: Path, wall: float) -> dict:
    import torch

    device = _device()
    chains = {}
    for name, proc in procs.items():
        record = work / f"{name}.json"
        chains[name] = json.loads(record.read_text()) if record.is_file() else {}
        chains[name]["returncode"] = proc.returncode
    return {
        "device": torch.cuda.get_device_name() if device.type == "cuda" else platform.processor() or device.type,
        "torch": torch.__version__,
        "cpu_count": os.cpu_count(),
        "minutes": args.minutes,
        "steps_scale": args.steps_scale,
        "tiny": args.tiny,
        "wall_s": round(wall, 1),
        "chains": chains,
    }


# ---- chain: one process per chain ----------------------------------------------------------------------------


def _device():
    import torch

    return torch.accelerator.current_accelerator() or torch.device("cpu")


def _workers(name: str, tiny: bool) -> int:
    """This chain's share of the loader workers: the cores left after one main process per chain."""
    if tiny:
        return 0
    spare = max(0, (os.cpu_count() or 1) - len(CHAINS))
    return spare * CHAINS[name].worker_share // sum(c.worker_share for c in CHAINS.values())


def _tiny_folder(src: Path, dst: Path) -> Path:
    """A folder of links to the first images of `src`, for a smoke test on the real pack."""
    for f in list_images(src)[:TINY_IMAGES]:
        _link_or_copy(f, dst / f.name)
    return dst


def chain(args: argparse.Namespace) -> None:
    """Train and export one chain's predictor, then its refiner on that export; records go to WORK/NAME.json."""
    from sr3.checkpoint import export_weights
    from sr3.device import slow_bf16_reason

    name, c, work, out = args.name, CHAINS[args.name], Path(args.work), Path(args.out)
    folders = {f: Path(args.data) / f for f in c.folders}
    if args.tiny:
        folders = {f: _tiny_folder(p, work / "tiny-data" / name / f) for f, p in folders.items()}
    precision = "bf16" if slow_bf16_reason(_device()) is None else "fp32"
    common = [
        f"train.batch_size={2 if args.tiny else c.batch_size}",
        f"train.num_workers={_workers(name, args.tiny)}",
        "train.cache_images=true",
        f"train.precision={precision}",
        f"train.log_every={1 if args.tiny else 10}",
        "train.val_every=100000000",  # validation and checkpoints at each chunk's end only
        "train.checkpoint_every=100000000",
        "train.keep_last=1",
        f"train.val_images={2 if args.tiny else 8}",
    ]
    # the packed faces are all of the training split, so the held-out split is empty: validate on training faces
    val_dir = str(folders["faces"]) if "faces" in folders else None
    record, start = {"precision": precision, "models": {}}, time.time()
    until = start + PREDICTOR_SHARE * (args.deadline - RESERVE_S - start)
    predictor_file = out / f"{c.predictor}.safetensors"
    stages = [
        (c.predictor, common + ([f"train.init={c.predictor_init}"] if c.predictor_init else []), until,
         lambda run: export_weights(run, predictor_file)),
        (c.refiner, common + [f"predictor.model={predictor_file}"], args.deadline - RESERVE_S,
         lambda run: export_detached(run, out / f"{c.refiner}{DETACHED}", c.predictor)),
    ]
    try:
        for preset, overrides, phase_end, export in stages:
            record["models"][preset] = train_phase(preset, overrides, list(folders.values()), val_dir, work / preset,
                                                   export, phase_end, args)
    finally:
        (work / f"{name}.json").write_text(json.dumps(record, indent=1))


def train_phase(preset: str, overrides: list[str], data: list[Path], val_dir, run_dir: Path, export,
                until: float, args) -> dict:
    """Train `preset` in chunks until `until` (wall clock), each chunk's steps planned from the last chunk's
    logged seconds per step; `export(run_dir)` runs after every chunk, so a killed run keeps its last weights."""
    from sr3.config import load_config
    from sr3.train.loop import Trainer

    start = time.time()
    cfg = load_config(preset, overrides)
    trainer = Trainer(cfg, [str(d) for d in data], run_dir, val_dir=val_dir)
    cap = TINY_STEPS if args.tiny else None
    chunks, target = [], 1 if args.tiny else WARMUP_STEPS
    while target > trainer.step:
        tick, before = time.time(), trainer.step
        trainer.fit(target, progress=False)
        export(run_dir)
        took = time.time() - tick
        sec = _last_metric(run_dir, "sec_per_step")
        chunks.append({"steps": trainer.step - before, "seconds": round(took, 2), "sec_per_step": round(sec, 4)})
        overhead = max(0.0, took - (trainer.step - before) * sec)  # checkpoint, validation, export, loader start
        left = until - time.time()
        chunk = left if left < 1.5 * CHUNK_S else CHUNK_S
        if chunk - overhead < 0.1 * CHUNK_S:  # a tail too short to pay for its checkpoint and validation
            break
        target = trainer.step + int(args.steps_scale * (chunk - overhead) / sec)
        if cap is not None:
            target = min(target, cap)
    t = cfg.train
    print(f"{preset}: {trainer.step} steps in {time.time() - start:.0f} s", flush=True)
    return {
        "steps": trainer.step,
        "batch_size": t.batch_size * t.grad_accum,
        "samples_seen": trainer.step * t.batch_size * t.grad_accum,
        "init": t.init,
        "predictor": cfg.predictor.model,
        "num_workers": t.num_workers,
        "wall_s": round(time.time() - start, 1),
        "chunks": chunks,
        "last_loss": _last_metric(run_dir, "loss"),
        "last_validation": _last_validation(run_dir),
    }


def _metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line]


def _last_metric(run_dir: Path, key: str) -> float:
    return [m[key] for m in _metrics(run_dir) if key in m][-1]


def _last_validation(run_dir: Path) -> dict:
    """The last validation figures (on training images here: the held-out ones do not travel)."""
    val = [m for m in _metrics(run_dir) if any(k.startswith("val/") for k in m)]
    return val[-1] if val else {}


# ---- refiners without their predictor: what comes back from the device, and putting them together here ----------


def _digest(stored) -> str:
    """sha256 of a network's float16 weights file contents (names and bytes), to match a predictor to its file."""
    import hashlib

    import torch

    tensors, _ = type(stored)(stored.cfg, stored.weights).packed(torch.float16)
    h = hashlib.sha256()
    for k in sorted(tensors):
        h.update(k.encode() + tensors[k].contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def export_detached(run_dir: Path, dst: Path, predictor: str) -> None:
    """A refiner's float16 EMA weights without the predictor it carries (the predictor's own export comes back
    beside it), with the predictor's file name, config and digest, so `assemble` can put the two together.

    Why: a refiner carrying its predictor is about 18 MB, over the 16 MiB a device file may be, and the six
    models whole are 78 MiB, over the 64 MiB that come back.
    """
    import torch
    from safetensors.torch import save_file

    from sr3.checkpoint import read_weights
    from sr3.config import to_dict

    stored = read_weights(run_dir)
    carried, stored.predictor = stored.predictor, None
    tensors, meta = stored.packed(torch.float16)
    meta |= {DETACHED_META: json.dumps({"file": f"{predictor}.safetensors", "digest": _digest(carried),
                                        "config": to_dict(carried.cfg)})}
    tmp = dst.with_name(dst.name + f".tmp-{os.getpid()}")
    save_file(tensors, tmp, metadata=meta)
    os.replace(tmp, dst)


def assemble(args: argparse.Namespace) -> None:
    """The six whole models from what `train` wrote: each refiner gets back the predictor it trained against."""
    import torch
    from safetensors import safe_open
    from safetensors.torch import save_file

    from sr3.checkpoint import read_weights
    from sr3.config import to_dict

    run, out = Path(args.run), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for c in CHAINS.values():
        detached = run / f"{c.refiner}{DETACHED}"
        if not detached.is_file():
            raise SR3Error(f"{detached} is missing: did the chain of {c.refiner} fail? (see budget.json)")
        with safe_open(str(detached), framework="pt") as f:
            link = json.loads((f.metadata() or {})[DETACHED_META])
        predictor = read_weights(run / link["file"])
        if _digest(predictor) != link["digest"] or to_dict(predictor.cfg) != link["config"]:
            raise SR3Error(f"{run / link['file']} is not the predictor {detached.name} was trained against")
        stored = read_weights(detached)
        stored.predictor = predictor
        tensors, meta = stored.packed(torch.float16)
        save_file(tensors, out / f"{c.refiner}.safetensors", metadata=meta)
        shutil.copyfile(run / link["file"], out / link["file"])
    for name in ("budget.json", "train.log"):
        if (run / name).is_file() and (run / name).resolve() != (out / name).resolve():
            shutil.copyfile(run / name, out / name)
    print(f"wrote {2 * len(CHAINS)} models to {out}")


# ---- the command line ----------------------------------------------------------------------------------------


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    pk = sub.add_parser("pack", help="gather the training images into one folder that fits the device's budget")
    pk.add_argument("--data", required=True, help="folder holding the data sets (../shared/data)")
    pk.add_argument("--out", required=True, help="the folder to write (an ignored path: gpu/data)")
    pk.add_argument("--budget-mb", type=float, default=DEVICE_LIMIT_MIB, help="largest pack in MiB (default 64)")
    pk.add_argument("--max-faces", type=int, help="take only the first N faces of the training split")
    for key, folder in SOURCES.items():
        pk.add_argument(f"--{key}", help=f"its subfolder of --data (default {folder})")
    tr = sub.add_parser("train", help="train the three chains side by side; exports and budget.json go to --out")
    tr.add_argument("--data", required=True, help="a folder `pack` wrote")
    tr.add_argument("--out", required=True, help="where the six models, budget.json and train.log go ($OUT)")
    tr.add_argument("--minutes", type=float, default=8.0, help="wall-clock target of the whole run (default 8)")
    tr.add_argument("--steps-scale", type=float, default=0.9, help="fraction of the planned steps to run (default 0.9)")
    tr.add_argument("--work", help="run directories (default: a new temporary folder)")
    tr.add_argument("--tiny", action="store_true", help="CPU smoke test: 2 steps a model, batch 2, 6 images a folder")
    asm = sub.add_parser("assemble", help="the six whole models from what `train` wrote (refiners regain their predictor)")
    asm.add_argument("--run", required=True, help="the folder `train` wrote ($OUT as fetched)")
    asm.add_argument("--out", required=True, help="where the six models go")
    ch = sub.add_parser("chain", help="(internal) one chain; `train` starts one per chain")
    ch.add_argument("name", choices=list(CHAINS))
    for flag in ("--data", "--out", "--work"):
        ch.add_argument(flag, required=True)
    ch.add_argument("--deadline", type=float, required=True, help="wall-clock end (seconds since the epoch)")
    ch.add_argument("--steps-scale", type=float, default=0.9)
    ch.add_argument("--tiny", action="store_true")
    return p


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    try:
        {"pack": pack, "train": train, "assemble": assemble, "chain": chain}[args.command](args)
    except SR3Error as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
