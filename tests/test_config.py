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
    ],
)
def test_bad_overrides_give_clear_errors(override, message):
    with pytest.raises(SR3Error, match=message):
        load_config("tiny", [override])


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
