"""Checkpoints: safetensors weights with the config in their metadata, written atomically.

A checkpoint is a folder `checkpoints/step-NNNNNNN/` in a run directory holding
    ema.safetensors          EMA weights + config: all inference needs
    train_state.safetensors  raw weights and optimiser tensors, for exact resume
    train_state.json         step and optimiser hyper-parameters
It is written to a temporary folder and renamed into place, so a crash never leaves a half checkpoint.
No pickle is ever loaded. A stage that refines a regression network's prediction (`predictor.name:
regression`) carries that network in its own weights file: its tensors under `predictor.`, its config in
the metadata key `predictor_config`, so one file still ships.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
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
PREDICTOR_PREFIX, PREDICTOR_META = "predictor.", "predictor_config"


@dataclass
class StoredModel:
    """What a weights file holds: the config, the network's weights, the step, and the predictor network it carries."""

    cfg: Config
    weights: dict[str, torch.Tensor]
    step: int = 0
    predictor: StoredModel | None = None

    def packed(self, dtype: torch.dtype | None = None) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
        """(tensors, metadata) of a weights file: floating tensors cast to `dtype` if given, the predictor's prefixed."""
        cast = lambda w: {k: v.to(dtype) if dtype is not None and v.is_floating_point() else v for k, v in w.items()}  # noqa: E731
        tensors = cast(self.weights)
        meta = {"config": json.dumps(to_dict(self.cfg)), "step": str(self.step)}
        if self.predictor is not None:
            tensors |= {PREDICTOR_PREFIX + k: v for k, v in cast(self.predictor.weights).items()}
            meta[PREDICTOR_META] = json.dumps(to_dict(self.predictor.cfg))
        return _contiguous(tensors), meta


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
    predictor: StoredModel | None = None,
) -> Path:
    """Write a full checkpoint atomically, then drop all but the newest `keep_last`; the EMA file carries `predictor`."""
    final = checkpoint_dir(run_dir, step)
    tmp = final.with_name(final.name + f".tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    ema_tensors, meta = StoredModel(cfg, ema, step, predictor).packed()
    save_file(ema_tensors, tmp / EMA_FILE, metadata=meta)
    meta = {"config": meta["config"], "step": meta["step"]}
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
    return int(info["step"]), model, read_weights(ckpt / EMA_FILE).weights


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


def read_weights(path: str | Path) -> StoredModel:
    """The config, weights, step and carried predictor of a weights file written by `save_checkpoint` or an export."""
    file = resolve_weights(path)
    try:
        with safe_open(str(file), framework="pt") as f:
            meta = f.metadata() or {}
        tensors = load_file(file)
    except (SafetensorError, OSError) as exc:
        raise SR3Error(f"cannot read model weights {file}: {exc}") from None
    if "config" not in meta:
        raise SR3Error(f"{file} has no sr3 config in its metadata")
    own = {k: v for k, v in tensors.items() if not k.startswith(PREDICTOR_PREFIX)}
    stored = StoredModel(config_from_dict(json.loads(meta["config"])), own, int(meta.get("step", 0)))
    if PREDICTOR_META in meta:
        carried = {k[len(PREDICTOR_PREFIX) :]: v for k, v in tensors.items() if k.startswith(PREDICTOR_PREFIX)}
        stored.predictor = StoredModel(config_from_dict(json.loads(meta[PREDICTOR_META])), carried)
    return stored


def build_stored(stored: StoredModel, where: str | Path) -> torch.nn.Module:
    """The network of `stored` in eval mode with its weights (float32); `where` names the file in errors."""
    net = build_network(stored.cfg.model)
    try:
        net.load_state_dict({k: v.float() for k, v in stored.weights.items()})
    except RuntimeError:
        raise SR3Error(f"{where} does not hold the EMA weights of its config's network") from None
    return net.eval()


def load_network(path: str | Path) -> tuple[torch.nn.Module, Config]:
    """The network in eval mode with the EMA weights of a run, checkpoint or weights file, and its config."""
    stored = read_weights(path)
    return build_stored(stored, resolve_weights(path)), stored.cfg


def _widens_input(name: str, source: torch.Tensor, own: torch.Tensor) -> bool:
    """Whether `own` is the source's first convolution with more input channels, all else equal."""
    return (
        name == "conv_in.weight"
        and source.ndim == own.ndim == 4
        and source.shape[1] < own.shape[1]
        and source.shape[:1] + source.shape[2:] == own.shape[:1] + own.shape[2:]
    )


def widened_input(source: torch.Tensor, channels: int) -> torch.Tensor:
    """A first convolution's weight [out, in, k, k] with `channels` inputs: the source's in the leading inputs, zero
    for the rest, so the network computes the source's function of its leading input channels.

    A refiner's input [noisy, prediction, bicubic] then starts as the function [noisy, bicubic] had, on [noisy,
    prediction]: the prediction takes the place of the condition. A `patch` stem folds each input channel into a
    consecutive run of channels, so the leading runs are still the leading channels.
    """
    out = source.new_zeros(source.shape[0], channels, *source.shape[2:])
    out[:, : source.shape[1]] = source
    return out


def init_from(net: torch.nn.Module, source: str | Path) -> list[str]:
    """Load the EMA weights of `source` into `net` wherever names and shapes agree, to fine-tune it; returns
    the parameters `net` has beyond the source, which keep their initialisation, and a first convolution widened
    for more input channels (`widened_input`). An augmentation-level embedding new to the network starts with a
    zero output, so training starts from the source's function.
    """
    weights = {k: v.float() for k, v in read_weights(source).weights.items()}
    own = net.state_dict()
    unknown = sorted(set(weights) - set(own))
    differ = sorted(k for k in set(weights) & set(own) if weights[k].shape != own[k].shape)
    widened = [k for k in differ if _widens_input(k, weights[k], own[k])]
    wrong = [k for k in differ if k not in widened]
    if unknown or wrong:
        raise SR3Error(
            f"train.init {source} is not this network: {len(unknown)} of its parameters are not in the config's model "
            f"and {len(wrong)} differ in shape (e.g. {(unknown + wrong)[0]})"
        )
    weights.update({k: widened_input(weights[k], own[k].shape[1]) for k in widened})
    net.load_state_dict(weights, strict=False)
    new = sorted((set(own) - set(weights)) | set(widened))
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
    stored = read_weights(src)
    stored.cfg = config_from_dict(to_dict(stored.cfg), list(overrides))
    if not stored.cfg.noise.regression:  # a regression model always samples with `regression`, whatever it names
        check_fits(stored.cfg.sampler.name, regression=False)
    dst = Path(dst)
    if dst.suffix != ".safetensors":
        raise SR3Error(f"export to a .safetensors file; got {dst}")
    if not dst.parent.is_dir():
        raise SR3Error(f"cannot write {dst}: its folder does not exist")
    tensors, meta = stored.packed(torch.float16 if half else torch.float32)
    tmp = dst.with_name(dst.name + f".tmp-{os.getpid()}")
    save_file(tensors, tmp, metadata=meta)
    os.replace(tmp, dst)
    return dst
