import dataclasses
import json

import pytest
import torch
from safetensors.torch import save_file

from sr3.checkpoint import (
    export_weights,
    list_checkpoints,
    load_train_state,
    load_network,
    resolve_weights,
    save_checkpoint,
)
from sr3.config import load_config, to_dict
from sr3.errors import SR3Error
from sr3.models.unet import UNet


def _save(run, step, cfg, net, opt, keep=3):
    return save_checkpoint(run, step, cfg, net.state_dict(), net.state_dict(), opt, keep_last=keep)


def test_round_trip_restores_weights_and_optimizer(tmp_path):
    cfg = load_config("tiny")
    net = UNet(cfg.model)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
    net(torch.randn(1, 6, 32, 32), torch.rand(1)).square().mean().backward()
    opt.step()
    ckpt = _save(tmp_path, 7, cfg, net, opt)
    fresh = UNet(cfg.model)
    fresh_opt = torch.optim.AdamW(fresh.parameters(), lr=1e-3)
    step, weights, ema = load_train_state(ckpt, fresh_opt)
    assert step == 7
    assert all(torch.equal(weights[k], v) for k, v in net.state_dict().items())
    before, after = opt.state_dict()["state"], fresh_opt.state_dict()["state"]
    assert before.keys() == after.keys()
    assert all(torch.equal(before[i][k], after[i][k]) for i in before for k in before[i])
    loaded, loaded_cfg = load_network(tmp_path)
    assert loaded_cfg == cfg and torch.equal(loaded.conv_in.weight, net.conv_in.weight)


def test_keep_last_and_unfinished_temp_folders(tmp_path):
    cfg = load_config("tiny")
    net = UNet(cfg.model)
    opt = torch.optim.AdamW(net.parameters())
    for step in (1, 2, 3, 4):
        _save(tmp_path, step, cfg, net, opt, keep=2)
    (tmp_path / "checkpoints" / "step-0000009.tmp-123").mkdir()  # a crash mid-write
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step-0000003", "step-0000004"]
    assert resolve_weights(tmp_path).parent.name == "step-0000004"


def test_missing_or_foreign_weights_are_user_errors(tmp_path):
    with pytest.raises(SR3Error, match="not found"):
        load_network(tmp_path / "nothing")
    with pytest.raises(SR3Error, match="no checkpoint"):
        load_network(tmp_path)
    (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 16)
    with pytest.raises(SR3Error, match="cannot read model weights"):
        load_network(tmp_path / "junk.safetensors")


def test_export_writes_half_precision_with_sampler_defaults(tmp_path):
    cfg = load_config("tiny")
    net = UNet(cfg.model)
    opt = torch.optim.AdamW(net.parameters())
    _save(tmp_path, 3, cfg, net, opt)
    out = export_weights(tmp_path, tmp_path / "model.safetensors", overrides=["sampler.name=euler", "sampler.steps=6"])
    full = export_weights(tmp_path, tmp_path / "model32.safetensors", half=False)
    assert out.stat().st_size < 0.6 * full.stat().st_size
    loaded, loaded_cfg = load_network(out)
    assert loaded_cfg.sampler.name == "euler" and loaded_cfg.sampler.steps == 6 and loaded_cfg.model == cfg.model
    w = net.conv_in.weight
    assert loaded.conv_in.weight.dtype == torch.float32
    assert torch.allclose(loaded.conv_in.weight, w, rtol=1e-3, atol=1e-4)
    with pytest.raises(SR3Error, match="only change the sampler"):
        export_weights(tmp_path, tmp_path / "x.safetensors", overrides=["model.base_channels=8"])
    with pytest.raises(SR3Error, match="must be in"):
        export_weights(tmp_path, tmp_path / "x.safetensors", overrides=["sampler.steps=0"])


def test_networks_are_chosen_by_name_and_old_checkpoints_load(tmp_path):
    from sr3.models import NETWORKS, build_network
    from sr3.pipeline import SR3Pipeline

    cfg = load_config("tiny")
    assert cfg.model.arch == "unet" and isinstance(build_network(cfg.model), NETWORKS["unet"])
    with pytest.raises(SR3Error, match="unknown network model.arch 'resnet'; choose from: unet"):
        build_network(dataclasses.replace(cfg.model, arch="resnet"))
    net = build_network(cfg.model)
    meta = to_dict(cfg)
    del meta["model"]["arch"]  # written before networks had names
    save_file(net.state_dict(), tmp_path / "old.safetensors", metadata={"config": json.dumps(meta), "step": "3"})
    loaded, loaded_cfg = load_network(tmp_path / "old.safetensors")
    assert loaded_cfg.model.arch == "unet"
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), loaded.state_dict().values()))
    assert SR3Pipeline.load(tmp_path / "old.safetensors").multiple == net.downscale_factor


def test_export_refuses_a_sampler_that_cannot_sample_the_model(tmp_path):
    cfg = load_config("tiny")
    net = UNet(cfg.model)
    run = tmp_path / "run"
    _save(run, 1, cfg, net, torch.optim.AdamW(net.parameters()))
    with pytest.raises(SR3Error, match="sampler 'regression' does not sample a diffusion model"):
        export_weights(run, tmp_path / "x.safetensors", overrides=["sampler.name=regression"])
