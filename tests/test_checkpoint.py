import dataclasses
import json

import pytest
import torch
from safetensors.torch import save_file

from sr3.checkpoint import (
    export_weights,
    init_from,
    list_checkpoints,
    load_train_state,
    load_network,
    resolve_weights,
    save_checkpoint,
)
from sr3.config import load_config, to_dict
from sr3.errors import SR3Error
from sr3.models import build_network
from sr3.models.unet import UNet

from conftest import tiny_weights


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
    assert cfg.model.arch == "unet" and isinstance(build_network(cfg.model), NETWORKS["unet"].build)
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


def test_an_sdunet_checkpoint_loads_as_the_unet_with_its_options(tmp_path):
    """Written when the stem and window norms were the `sdunet` network with flat `model` keys: the same
    parameter names, so the same weights give the same outputs."""
    cfg = load_config("tiny", ["model.options.patch=2", "model.options.norm=window", "model.options.norm_window=4"])
    torch.manual_seed(0)
    net = build_network(cfg.model).eval()
    for p in net.parameters():
        p.data.add_(0.05 * torch.randn_like(p))
    meta = to_dict(cfg)
    meta["model"] = {**{k: v for k, v in meta["model"].items() if k != "options"},
                     "arch": "sdunet", "patch": 2, "attn_window": 0, "norm_window": 4}
    save_file(net.state_dict(), tmp_path / "old.safetensors", metadata={"config": json.dumps(meta)})
    loaded, loaded_cfg = load_network(tmp_path / "old.safetensors")
    assert loaded_cfg == cfg and loaded.downscale_factor == 8
    x = torch.randn(1, 6, 16, 24, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(loaded(x, torch.tensor([0.5])), net(x, torch.tensor([0.5])))


def test_export_refuses_a_sampler_that_cannot_sample_the_model(tmp_path):
    cfg = load_config("tiny")
    net = UNet(cfg.model)
    run = tmp_path / "run"
    _save(run, 1, cfg, net, torch.optim.AdamW(net.parameters()))
    with pytest.raises(SR3Error, match="sampler 'regression' does not sample a diffusion model"):
        export_weights(run, tmp_path / "x.safetensors", overrides=["sampler.name=regression"])


@pytest.mark.parametrize("stem", [[], ["model.options.patch=2"]])
def test_init_from_widens_the_input_so_the_prediction_takes_the_conditions_place(tmp_path, stem):
    """faces-8x sees [noisy, bicubic], a refiner [noisy, prediction, bicubic]: started from it, the refiner
    computes the source's function of [noisy, prediction], whatever its third input."""
    source = tiny_weights(tmp_path / "src.safetensors", stem)
    six = UNet(load_config("tiny", stem).model).eval()
    init_from(six, source)
    nine = UNet(load_config("tiny", [*stem, "model.in_channels=9", "predictor.with_bicubic=true"]).model).eval()
    assert "conv_in.weight" in init_from(nine, source)
    gen = torch.Generator().manual_seed(3)
    x, c, other = (torch.randn(2, 3, 16, 16, generator=gen) for _ in range(3))
    g = torch.tensor([0.3, 0.9])
    with torch.no_grad():
        want = six(torch.cat([x, c], 1), g)
        assert want.abs().mean() > 0.01  # a network that computes something
        assert torch.allclose(nine(torch.cat([x, c, other], 1), g), want, atol=1e-6)
        assert torch.allclose(nine(torch.cat([x, c, 5 * other], 1), g), want, atol=1e-6)
        assert not torch.allclose(nine(torch.cat([x, other, c], 1), g), want, atol=1e-3)  # the order matters


def test_init_from_still_refuses_any_other_shape_mismatch(tmp_path):
    wide = tiny_weights(tmp_path / "wide.safetensors", ["model.in_channels=9", "predictor.with_bicubic=true"])
    with pytest.raises(SR3Error, match="is not this network: 0 of its parameters .* and 1 differ"):
        init_from(UNet(load_config("tiny").model), wide)  # fewer inputs than the source: not a widening
    source = tiny_weights(tmp_path / "src.safetensors", [])
    more_out = dataclasses.replace(load_config("tiny").model, in_channels=12, out_channels=6)
    with pytest.raises(SR3Error, match="is not this network: 0 of its parameters .* and 2 differ .*conv_out"):
        init_from(UNet(more_out), source)  # a wider input is accepted only when the rest agrees
