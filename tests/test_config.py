import json

import pytest

from sr3.config import Config, from_dict, load_config, preset_names, to_dict
from sr3.errors import SR3Error


def test_presets_load_and_round_trip_through_json():
    for name in preset_names():
        cfg = load_config(name)
        assert from_dict(Config, json.loads(json.dumps(to_dict(cfg)))) == cfg


def test_overrides_are_typed():
    cfg = load_config("tiny", ["train.lr=3e-4", "model.channel_mults=[1, 2]", "sampler.name=ddim"])
    assert cfg.train.lr == 3e-4 and isinstance(cfg.train.lr, float)
    assert cfg.model.channel_mults == [1, 2]
    assert cfg.sampler.name == "ddim"


@pytest.mark.parametrize(
    "override, message",
    [
        ("train.lrr=1", "unknown config key 'train.lrr'"),
        ("train.batch_size=two", "must be int"),
        ("noise.loss=l3", "must be one of l1, l2"),
        ("model.channel_mults=4", "must be a list"),
        ("nonsense", "section.key=value"),
        ("sampler.tile=-8", r"sampler.tile' must be 0 \(whole images\) or at least 8"),
        ("sampler.tile=4", r"sampler.tile' must be 0 \(whole images\) or at least 8"),
        ("noise.sigma_max=-0.5", r"'noise.sigma_max' must be in \[0, inf\]"),
        ("noise.min_snr=-1", r"'noise.min_snr' must be in \[0, inf\]"),
        ("train.ema_rampup=2", r"'train.ema_rampup' must be in \[0, 1\]"),
    ],
)
def test_bad_overrides_give_clear_errors(override, message):
    with pytest.raises(SR3Error, match=message):
        load_config("tiny", [override])


def test_refiner_training_keys_default_off_and_set():
    plain = load_config("tiny")
    assert (plain.noise.sigma_max, plain.noise.min_snr, plain.train.ema_rampup) == (0.0, 0.0, 0.0)
    cfg = load_config("tiny", ["noise.sigma_max=0.5", "noise.min_snr=5", "train.ema_rampup=0.05"])
    assert (cfg.noise.sigma_max, cfg.noise.min_snr, cfg.train.ema_rampup) == (0.5, 5.0, 0.05)
    assert isinstance(cfg.noise.min_snr, float)


def test_config_file_yaml_and_json(tmp_path):
    (tmp_path / "a.yaml").write_text("train:\n  lr: 1.0e-3\n")
    (tmp_path / "b.json").write_text(json.dumps({"data": {"scale": 8}}))
    assert load_config(str(tmp_path / "a.yaml")).train.lr == 1e-3
    assert load_config(str(tmp_path / "b.json")).data.scale == 8
    with pytest.raises(SR3Error, match="neither a file nor a preset"):
        load_config(str(tmp_path / "missing.yaml"))


def test_configs_of_older_checkpoints_read_in_todays_keys():
    from sr3.config import config_from_dict, to_dict

    old = to_dict(load_config("tiny"))
    del old["model"]["arch"], old["sampler"]["tile"], old["sampler"]["colour_fix"], old["data"]["degradation"]
    old["train"] = {**{k: v for k, v in old["train"].items() if k != "precision"}, "mixed_precision": "no"}
    cfg = config_from_dict(old)
    assert cfg.train.precision == "fp32" and cfg.model.arch == "unet" and cfg.data.degradation == "bicubic"
    assert cfg.sampler.tile == 128 and cfg.sampler.colour_fix is True
    assert config_from_dict({"train": {"mixed_precision": "bf16"}}).train.precision == "bf16"
    assert load_config("faces-16-128").train.precision == "bf16"


def test_precision_names_are_one_vocabulary():
    from sr3.config import PRECISIONS
    from sr3.device import ACCELERATE_NAMES, AUTOCAST_DTYPES

    assert PRECISIONS == ("fp32", "bf16", "fp16")
    assert tuple(AUTOCAST_DTYPES) == tuple(ACCELERATE_NAMES) == PRECISIONS
    with pytest.raises(SR3Error, match="must be one of fp32, bf16, fp16"):
        load_config("tiny", ["train.precision=no"])


def test_an_unset_tile_of_older_checkpoints_keeps_its_128_pixel_tiles():
    from sr3.config import config_from_dict, to_dict

    old = to_dict(load_config("tiny"))
    del old["sampler"]["colour_fix"]
    old["sampler"]["tile"] = 0  # the old default, which sr3 upscale replaced by 128
    assert config_from_dict(old).sampler.tile == 128
    assert config_from_dict({"sampler": {"tile": 0, "colour_fix": True}}).sampler.tile == 0  # today's 0: whole images


def test_the_old_flat_unet_keys_and_sdunet_read_as_unet_options():
    from sr3.config import config_from_dict, to_dict

    old = to_dict(load_config("tiny"))
    del old["model"]["options"]
    shipped = {**old, "model": {**old["model"], "patch": 1, "attn_window": 0, "norm_window": 0}}
    assert config_from_dict(shipped) == load_config("tiny")  # the defaults meant no options
    sdunet = {**old, "model": {**old["model"], "arch": "sdunet", "patch": 2, "attn_window": 0, "norm_window": 64}}
    model = config_from_dict(sdunet).model
    assert model.arch == "unet" and model.options == {"patch": 2, "norm": "window", "norm_window": 64}
    windows = {**old, "model": {**old["model"], "arch": "sdunet", "attn_window": 8, "norm_window": 16}}
    assert config_from_dict(windows).model.options == {"attn_window": 8, "norm": "window", "norm_window": 16}
    assert load_config("faces-8x-sdunet").model == config_from_dict(
        {"model": {"arch": "sdunet", "patch": 2, "image_size": 128, "base_channels": 40, "channel_mults": [1, 2, 4, 4],
                   "num_res_blocks": 1, "attn_resolutions": [16, 8], "attn_head_channels": 64, "norm_window": 64}}
    ).model


def test_network_options_are_a_mapping_of_scalars_set_like_any_key():
    cfg = load_config("tiny", ["model.options.patch=2", "model.options.norm=window", "model.options.norm_window=8"])
    assert cfg.model.options == {"patch": 2, "norm": "window", "norm_window": 8}
    with pytest.raises(SR3Error, match="'model.options.patch' must be a number, string or boolean"):
        load_config("tiny", ["model.options.patch=[2, 2]"])
    with pytest.raises(SR3Error, match="'model.options' must be a mapping"):
        load_config("tiny", ["model.options=2"])


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["model.in_channels=9"], "model.in_channels must be 6 for SR"),
        (["model.in_channels=6", "predictor.with_bicubic=true"], "model.in_channels must be 9 for SR"),
        (["model.num_classes=2"], "data.mode=classes"),
        (["data.mode=classes"], "data.mode=classes"),
        (["model.in_channels=3", "noise.residual=true"], "need an SR stage"),
        (["augment.noise_max=0.3"], "augment_embedding=true"),
        (["data.hr_size=16", "data.scale=4"], "at least 11 px"),
    ],
)
def test_keys_that_contradict_each_other_are_refused(overrides, message):
    with pytest.raises(SR3Error, match=message):
        load_config("tiny", overrides)


def test_consistent_stages_pass():
    load_config("tiny", ["model.in_channels=9", "predictor.with_bicubic=true"])  # prediction + bicubic
    load_config("tiny", ["model.in_channels=3", "model.num_classes=2", "data.mode=classes"])  # a CDM base model
    load_config("tiny", ["model.augment_embedding=true", "augment.noise_max=0.3", "noise.residual=true"])
