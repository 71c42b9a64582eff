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
