"""The benchmark scripts' contracts: the JSON keys they promise and the errors they give, on the tiny preset."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import photo

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
STEP_KEYS = {"seconds_per_step", "gflop_per_step", "params", "peak_gflops_measured", "fraction_of_peak", "peak_rss_mb"}


def bench(script: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(BENCHMARKS / script), *args], capture_output=True, text=True)


@pytest.mark.slow
def test_speed_table_runs_both_scripts_and_saves_their_records(tmp_path):
    out = tmp_path / "speed.json"
    done = bench("speed_table.py", "--row", "step:tiny:32:1", "--row", "train:tiny:32:2", "--threads", "1",
                 "--json", str(out))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 4 and lines[2].startswith("| tiny | denoising step | 32x32, batch 1 |")
    assert "samples/s" in lines[3]
    step, train = json.loads(out.read_text())
    assert STEP_KEYS <= step.keys() and step["channels_last"] and step["threads"] == 1
    assert step["gflop_per_step"] > 0 and 0 < step["fraction_of_peak"]
    assert train["row"]["kind"] == "train" and train["batch"] == 2 and train["samples_per_second"] > 0


@pytest.mark.slow
def test_bad_rows_are_one_line_errors():
    done = bench("speed_table.py", "--row", "step:tiny:33:1")
    assert done.returncode == 2 and "speed_table.py: error: --resolution 33 must be a positive multiple of 4" in done.stderr
    assert "Traceback" not in done.stderr
    done = bench("speed_table.py", "--row", "step:tiny:32:1", "--json", "/nonexistent/x.json")
    assert done.returncode == 2 and "cannot write --json" in done.stderr
    done = bench("speed_table.py", "--row", "fast:tiny:32:1")
    assert done.returncode == 2 and "KIND:PRESET:RESOLUTION:BATCH" in done.stderr


def test_diversity_is_zero_for_a_regressor_and_positive_for_ancestral_sampling(tmp_path):
    sys.path.insert(0, str(BENCHMARKS))
    from diversity import seed_std

    assert seed_std(torch.stack([-torch.ones(3, 4, 4), torch.ones(3, 4, 4)])) == pytest.approx(127.5)
    hr = tmp_path / "hr"
    hr.mkdir()
    photo("coffee").resize((64, 48)).save(hr / "coffee.png")
    out = tmp_path / "div.json"
    done = bench("diversity.py", "--model", "natural-4x-regression", "--hr", str(hr), "--seeds", "2", "--threads", "1")
    assert done.returncode == 0, done.stderr
    assert "per-pixel std over 2 seeds 0.00 grey levels" in done.stdout
    done = bench("diversity.py", "--model", "natural-4x", "--hr", str(hr), "--seeds", "3", "--sampler", "ddpm",
                 "--steps", "4", "--threads", "1", "--json", str(out))
    assert done.returncode == 0, done.stderr
    record = json.loads(out.read_text())
    assert record["seeds"] == 3 and record["n_images"] == 1 and record["seed_std"] > 0.1
    done = bench("diversity.py", "--model", "natural-4x", "--hr", str(hr), "--seeds", "1")
    assert done.returncode == 2 and "at least 2" in done.stderr and "Traceback" not in done.stderr


def test_rrdbnet_is_esrgans_4x_network_and_the_speed_run_times_both(tmp_path):
    sys.path.insert(0, str(BENCHMARKS))
    from rrdbnet import RRDBNet

    net = RRDBNet()
    assert sum(p.numel() for p in net.parameters()) == 16_697_987  # Real-ESRGAN's x4plus: 16.7 M
    with torch.inference_mode():
        assert net(torch.rand(1, 3, 8, 12)).shape == (1, 3, 32, 48)
    out = tmp_path / "speed.json"
    done = bench("vs_rrdbnet.py", "--size", "16", "--repeats", "1", "--threads", "1", "--json", str(out))
    assert done.returncode == 0, done.stderr
    r = json.loads(out.read_text())
    assert r["output"] == [64, 64] and r["seconds"] > 0 and r["rrdbnet_seconds"] > 0 and r["rrdbnet_gflop"] > 0
    assert r["ratio"] == pytest.approx(r["seconds"] / r["rrdbnet_seconds"])
    done = bench("vs_rrdbnet.py", "--model", "faces-8x", "--size", "16")
    assert done.returncode == 2 and "faces-8x upscales 8x" in done.stderr and "Traceback" not in done.stderr


def test_quality_vs_nfe_puts_a_baseline_model_on_the_same_images(tmp_path):
    hr = tmp_path / "hr"
    hr.mkdir()
    for name in ("coffee", "chelsea"):
        photo(name).resize((64, 48)).save(hr / f"{name}.png")
    out = tmp_path / "nfe.json"
    done = bench("quality_vs_nfe.py", "--model", "natural-4x", "--hr", str(hr), "--samplers", "euler", "--nfe", "1",
                 "--baseline", "natural-4x-regression", "--threads", "1", "--json", str(out),
                 "--plot", str(tmp_path / "nfe.png"))
    assert done.returncode == 0, done.stderr
    r = json.loads(out.read_text())
    (baseline,) = r["baselines"]
    (row,) = r["rows"]
    assert baseline["model"] == "natural-4x-regression" and baseline["sampler"] == "regression"
    assert row["sampler"] == "euler" and row["nfe"] == 1 and baseline["psnr_y"] != row["psnr_y"]
    assert baseline["psnr_y"] > r["bicubic"]["psnr_y"] and (tmp_path / "nfe.png").stat().st_size > 0
    both = tmp_path / "both.json"  # a curve measured in two parts, drawn as one
    done = bench("quality_vs_nfe.py", "--model", "natural-4x", "--hr", str(hr), "--samplers", "ddpm", "--nfe", "2",
                 "--merge", str(out), "--threads", "1", "--json", str(both))
    assert done.returncode == 0, done.stderr
    merged = json.loads(both.read_text())
    assert [(r["sampler"], r["nfe"]) for r in merged["rows"]] == [("ddpm", 2), ("euler", 1)]
    assert merged["rows"][1] == row and merged["baselines"] == [baseline] and merged["bicubic"] == r["bicubic"]
    done = bench("quality_vs_nfe.py", "--model", "natural-4x", "--hr", str(hr), "--samplers", "", "--merge", str(both))
    assert done.returncode == 0 and done.stdout.count("ddpm") == 1 and "bicubic" in done.stdout
    done = bench("quality_vs_nfe.py", "--model", "natural-4x", "--hr", str(hr), "--limit", "1", "--samplers", "",
                 "--merge", str(both))
    assert done.returncode == 2 and "not natural-4x on 1 of" in done.stderr
    done = bench("quality_vs_nfe.py", "--model", "natural-4x", "--hr", str(hr), "--samplers", "euler", "--nfe", "1",
                 "--baseline", "faces-8x")
    assert done.returncode == 2 and "--baseline faces-8x upscales 8x, not 4x" in done.stderr


def test_quality_vs_nfe_draws_a_curve_per_refinement_start_on_images_it_may_skip(tmp_path):
    hr = tmp_path / "hr"
    hr.mkdir()
    for name in ("coffee", "chelsea", "rocket"):
        photo(name).resize((48, 32)).save(hr / f"{name}.png")
    out = tmp_path / "starts.json"
    done = bench("quality_vs_nfe.py", "--model", "natural-4x", "--hr", str(hr), "--skip", "1", "--samplers", "ddpm",
                 "--nfe", "1,2", "--sigma-max", "0.1,0.4", "--threads", "1", "--json", str(out))
    assert done.returncode == 0, done.stderr
    r = json.loads(out.read_text())
    assert r["images"] == 2 and "ddpm@0.4" in done.stdout
    assert [(row["sigma_max"], row["nfe"]) for row in r["rows"]] == [(0.1, 1), (0.1, 2), (0.4, 1), (0.4, 2)]
    assert {row["curve"] for row in r["rows"]} == {"ddpm from sigma 0.1", "ddpm from sigma 0.4"}
    drawn = tmp_path / "beside.png"  # another model's curves beside, on the same images only
    done = bench("quality_vs_nfe.py", "--model", "natural-4x-regression", "--hr", str(hr), "--skip", "1",
                 "--samplers", "regression", "--nfe", "1", "--beside", str(out), "--threads", "1", "--plot", str(drawn))
    assert done.returncode == 0 and drawn.stat().st_size > 0, done.stderr
    done = bench("quality_vs_nfe.py", "--model", "natural-4x-regression", "--hr", str(hr), "--samplers", "regression",
                 "--nfe", "1", "--beside", str(out))
    assert done.returncode == 2 and "after skipping 1" in done.stderr
    done = bench("quality_vs_nfe.py", "--model", "natural-4x", "--hr", str(hr), "--skip", "3", "--samplers", "ddpm")
    assert done.returncode == 2 and "leaves none of the 3 images" in done.stderr
