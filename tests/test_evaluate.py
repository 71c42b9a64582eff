import pytest
import torch

from sr3.data.pairs import split_files
from sr3.evaluate import evaluate, evaluation_pairs, same_size_batches
from sr3.resize import imresize
from sr3.metrics.scores import image_scores
from sr3.upscaler import ModelUpscaler, UpscaleSettings

from conftest import SHARED_DATA, needs_shared, photo, untrained_pipeline


def _bicubic_means(pairs, scale):
    rows = [image_scores(imresize(p.lr, scale=scale).clamp(-1, 1), p.hr, p.lr, scale) for p in pairs]
    return {k: sum(r[k] for r in rows) / len(rows) for k in rows[0]}


@needs_shared
@pytest.mark.parametrize("lr_dir", ["LRbicx4", None])
def test_set5_bicubic_matches_the_literature(lr_dir):
    """Set5 x4 bicubic: 28.42 dB / 0.8104 (Y, 4-px border) as in the SR literature, with given or generated LR."""
    pairs = evaluation_pairs(SHARED_DATA / "Set5" / "HR", SHARED_DATA / "Set5" / lr_dir if lr_dir else None, 4)
    means = _bicubic_means(pairs, 4)
    assert len(pairs) == 5
    assert means["psnr_y"] == pytest.approx(28.42, abs=0.03)
    assert means["ssim_y"] == pytest.approx(0.8104, abs=0.002)


def test_pairs_from_hr_only_are_mod_cropped(tmp_path):
    photo("chelsea").crop((0, 0, 103, 70)).save(tmp_path / "cat.png")
    (pair,) = evaluation_pairs(tmp_path, None, 4)
    assert pair.hr.shape == (3, 68, 100) and pair.lr.shape == (3, 17, 25)


def test_perfect_output_scores():
    hr = torch.rand(3, 32, 32) * 2 - 1
    lr = imresize(hr, scale=0.25)
    scores = image_scores(hr, hr, lr, 4)
    assert scores["psnr_y"] == float("inf") and scores["ssim_y"] == pytest.approx(1.0)
    assert scores["consistency"] < 1e-5


@pytest.mark.slow
@needs_shared
def test_b100_bicubic_matches_the_literature():
    """B100 x4 bicubic with LR made by our MATLAB-compatible resize: 25.96 dB / 0.668 as published."""
    pairs = evaluation_pairs(SHARED_DATA / "B100" / "HR", None, 4)[:100]
    means = _bicubic_means(pairs, 4)
    assert len(pairs) == 100
    assert means["psnr_y"] == pytest.approx(25.96, abs=0.02)
    assert means["ssim_y"] == pytest.approx(0.668, abs=0.002)


def test_faces_evaluation_resizes_and_keeps_to_the_holdout(tmp_path):
    for i in range(12):
        photo("astronaut").crop((i, 0, 200 + i, 200)).save(tmp_path / f"face{i:02d}.png")
    pairs = evaluation_pairs(tmp_path, None, 8, size=128, holdout=0.3)
    expected = split_files(sorted(tmp_path.iterdir()), 0.3, "holdout")
    assert [p.name for p in pairs] == [p.stem for p in expected] and 0 < len(pairs) < 12
    assert pairs[0].hr.shape == (3, 128, 128) and pairs[0].lr.shape == (3, 16, 16)


def test_batched_evaluation_scores_as_one_by_one(tmp_path, tiny_config):
    """Same-size images sampled together keep their own seeds' noise: the same figures as one at a time."""
    for i, (left, size) in enumerate([(0, 64), (40, 64), (80, 64), (0, 48)]):
        photo("astronaut").crop((left, 0, left + 256, 256)).resize((size, size)).save(tmp_path / f"im{i}.png")
    pairs = evaluation_pairs(tmp_path, None, tiny_config.data.scale)
    assert [(first, len(run)) for first, run in same_size_batches(pairs, 2)] == [(0, 2), (2, 1), (3, 1)]
    model = ModelUpscaler(untrained_pipeline(tiny_config), "tiny", UpscaleSettings(steps=3, sampler="ddpm"))
    one, batched = evaluate(model, pairs, seed=5), evaluate(model, pairs, seed=5, batch_size=3)
    for a, b in zip(one["per_image"], batched["per_image"]):
        assert a["image"] == b["image"]
        assert a["psnr_y"] == pytest.approx(b["psnr_y"], abs=1e-3)
        assert a["consistency"] == pytest.approx(b["consistency"], rel=1e-3, abs=1e-9)
    assert one["psnr_y"] != evaluate(model, pairs, seed=6, batch_size=3)["psnr_y"]
