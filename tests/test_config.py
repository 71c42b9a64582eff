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
        ("sampler.tile=-8", "sampler.tile' must be in"),
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
