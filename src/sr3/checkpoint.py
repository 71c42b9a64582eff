"""Checkpoints: safetensors weights with the config in their metadata, written atomically.

A checkpoint is a folder `checkpoints/step-NNNNNNN/` in a run directory holding
    ema.safetensors          EMA weights + config: all inference needs
    train_state.safetensors  raw weights and optimiser tensors, for exact resume
    train_state.json         step and optimiser hyper-parameters
It is written to a temporary folder and renamed into place, so a crash never leaves a half checkpoint.
No pickle is ever loaded.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file

from sr3.config import Config, config_from_dict, to_dict
from sr3.errors import SR3Error
from sr3.models import build_network
from sr3.samplers import check_fits

EMA_FILE, STATE_FILE, STATE_JSON = "ema.safetensors", "train_state.safetensors", "train_state.json"
PREFIX = "step-"


def checkpoint_dir(run_dir: Path, step: int) -> Path:
    return Path(run_dir) / "checkpoints" / f"{PREFIX}{step:07d}"


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Complete checkpoints of a run, oldest first (temporary folders are ignored)."""
    root = Path(run_dir) / "checkpoints"
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and p.name.startswith(PREFIX) and p.name[len(PREFIX) :].isdigit()]
    return sorted(found, key=lambda p: int(p.name[len(PREFIX) :]))


def save_checkpoint(
    run_dir: Path,
    step: int,
    cfg: Config,
    model: dict[str, torch.Tensor],
    ema: dict[str, torch.Tensor],
    optimizer: torch.optim.Optimizer,
    keep_last: int,
) -> Path:
    """Write a full checkpoint atomically, then drop all but the newest `keep_last`."""
    final = checkpoint_dir(run_dir, step)
    tmp = final.with_name(final.name + f".tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    meta = {"config": json.dumps(to_dict(cfg)), "step": str(step)}
    save_file(_contiguous(ema), tmp / EMA_FILE, metadata=meta)
    opt_state = optimizer.state_dict()
    tensors = {f"model.{k}": v for k, v in model.items()}
    for idx, state in opt_state["state"].items():
        tensors.update({f"optim.{idx}.{name}": t for name, t in state.items()})
    save_file(_contiguous(tensors), tmp / STATE_FILE, metadata=meta)
    (tmp / STATE_JSON).write_text(json.dumps({"step": step, "param_groups": opt_state["param_groups"]}))
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    for old in list_checkpoints(run_dir)[:-keep_last] if keep_last > 0 else []:
        shutil.rmtree(old)
    return final


def _contiguous(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().contiguous().cpu() for k, v in tensors.items()}


def load_train_state(ckpt: Path, optimizer: torch.optim.Optimizer) -> tuple[int, dict, dict]:
    """Restore the optimiser in place; return (step, model weights, EMA weights)."""
    info = json.loads((ckpt / STATE_JSON).read_text())
    flat = load_file(ckpt / STATE_FILE)
    model = {k[len("model.") :]: v for k, v in flat.items() if k.startswith("model.")}
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in flat.items():
        if key.startswith("optim."):
            _, idx, name = key.split(".", 2)
            state.setdefault(int(idx), {})[name] = value
    optimizer.load_state_dict({"state": state, "param_groups": info["param_groups"]})
    return int(info["step"]), model, load_file(ckpt / EMA_FILE)


def resolve_weights(path: str | Path) -> Path:
    """The EMA weights file for a run directory (latest checkpoint), a checkpoint folder or a .safetensors file."""
    path = Path(path)
    if path.is_file():
        return path
    if (path / EMA_FILE).is_file():
        return path / EMA_FILE
    if path.is_dir():
        ckpts = list_checkpoints(path)
        if not ckpts:
            raise SR3Error(f"no checkpoint in {path}")
        return ckpts[-1] / EMA_FILE
    raise SR3Error(f"model {path} not found")


def read_weights(path: str | Path) -> tuple[Config, dict[str, torch.Tensor], int]:
    """(config, weights, step) of a weights file written by `save_checkpoint`."""
    file = resolve_weights(path)
    try:
        with safe_open(str(file), framework="pt") as f:
            meta = f.metadata() or {}
        weights = load_file(file)
    except (SafetensorError, OSError) as exc:
        raise SR3Error(f"cannot read model weights {file}: {exc}") from None
    if "config" not in meta:
        raise SR3Error(f"{file} has no sr3 config in its metadata")
    return config_from_dict(json.loads(meta["config"])), weights, int(meta.get("step", 0))


def load_network(path: str | Path) -> tuple[torch.nn.Module, Config]:
    """The network in eval mode with the EMA weights of a run, checkpoint or weights file, and its config."""
    cfg, weights, _ = read_weights(path)
    net = build_network(cfg.model)
    try:
        net.load_state_dict({k: v.float() for k, v in weights.items()})
    except RuntimeError:
        raise SR3Error(f"{resolve_weights(path)} does not hold the EMA weights of its config's network") from None
    return net.eval(), cfg


def init_from(net: torch.nn.Module, source: str | Path) -> list[str]:
    """Load the EMA weights of `source` into `net` wherever names and shapes agree, to fine-tune it; returns
    the parameters `net` has beyond the source, which keep their initialisation. An augmentation-level
    embedding new to the network starts with a zero output, so training starts from the source's function.
    """
    _, weights, _ = read_weights(source)
    own = net.state_dict()
    unknown = sorted(set(weights) - set(own))
    wrong = sorted(k for k in set(weights) & set(own) if weights[k].shape != own[k].shape)
    if unknown or wrong:
        raise SR3Error(
            f"train.init {source} is not this network: {len(unknown)} of its parameters are not in the config's model "
            f"and {len(wrong)} differ in shape (e.g. {(unknown + wrong)[0]})"
        )
    net.load_state_dict({k: v.float() for k, v in weights.items()}, strict=False)
    new = sorted(set(own) - set(weights))
    if any(k.startswith("aug_embed.") for k in new):
        out = net.aug_embed.mlp[-1]
        torch.nn.init.zeros_(out.weight)
        torch.nn.init.zeros_(out.bias)
    return new


def export_weights(src: str | Path, dst: str | Path, half: bool = True, overrides: list[str] = ()) -> Path:
    """A standalone inference file of a run's EMA weights: config (with `sampler.*` overrides) in the metadata.

    `half` stores float16 (half the size; weights are cast back to float32 when loaded). Written to a
    temporary name and renamed, like checkpoints.
    """
    bad = [o for o in overrides if not o.startswith("sampler.")]
    if bad:
        raise SR3Error(f"an export may only change the sampler settings; got {', '.join(bad)}")
    cfg, weights, step = read_weights(src)
    cfg = config_from_dict(to_dict(cfg), list(overrides))
    if not cfg.noise.regression:  # a regression model always samples with `regression`, whatever it names
        check_fits(cfg.sampler.name, regression=False)
    dst = Path(dst)
    if dst.suffix != ".safetensors":
        raise SR3Error(f"export to a .safetensors file; got {dst}")
    if not dst.parent.is_dir():
        raise SR3Error(f"cannot write {dst}: its folder does not exist")
    dtype = torch.float16 if half else torch.float32
    tensors = {k: v.to(dtype) if v.is_floating_point() else v for k, v in weights.items()}
    tmp = dst.with_name(dst.name + f".tmp-{os.getpid()}")
    save_file(_contiguous(tensors), tmp, metadata={"config": json.dumps(to_dict(cfg)), "step": str(step)})
    os.replace(tmp, dst)
    return dst
