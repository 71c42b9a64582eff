import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from sr3.cli.main import main

from conftest import photo


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, photo_dir):
    run = tmp_path_factory.mktemp("cli") / "run"
    args = ["train", "--config", "tiny", "--data", str(photo_dir), "--output", str(run), "--steps", "4", "--quiet",
            "--set", "train.val_every=4", "--set", "train.checkpoint_every=2"]
    assert main(args) == 0
    return run


def test_train_writes_checkpoints_logs_and_grids(trained_run):
    assert sorted(p.name for p in (trained_run / "checkpoints").iterdir()) == ["step-0000002", "step-0000004"]
    assert (trained_run / "samples" / "step-0000004.png").is_file()
    assert (trained_run / "metrics.jsonl").read_text().count("\n") >= 2


def test_upscale_file_and_folder(trained_run, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    photo("chelsea").resize((18, 12)).save(src / "a.png")
    photo("coffee").resize((18, 12)).convert("L").save(src / "b.jpg")
    assert main(["upscale", str(src / "a.png"), "-o", str(tmp_path / "a_x4.png"), "--model", str(trained_run),
                 "--steps", "2", "--seed", "3", "--quiet"]) == 0
    out = Image.open(tmp_path / "a_x4.png")
    assert out.size == (72, 48)
    assert out.text["sr3:seed"] == "3" and out.text["sr3:steps"] == "2" and out.text["sr3:tile"] == "128"
    assert main(["upscale", str(src), "-o", str(tmp_path / "out"), "--model", str(trained_run), "--steps", "2",
                 "--batch-size", "2", "--quiet"]) == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.png", "b.png"]


def test_eval_writes_the_contracted_json(trained_run, tmp_path, capsys):
    hr = tmp_path / "hr"
    hr.mkdir()
    photo("astronaut").resize((50, 42)).save(hr / "astro.png")
    out = tmp_path / "eval.json"
    assert main(["eval", "--model", str(trained_run), "--hr", str(hr), "--scale", "4", "--steps", "2",
                 "--json", str(out), "--quiet"]) == 0
    result = json.loads(out.read_text())
    keys = {"psnr_y", "ssim_y", "psnr_rgb", "consistency", "n_images"}
    assert keys <= result.keys() and keys <= result["bicubic"].keys()
    assert result["n_images"] == 1 and 15 < result["bicubic"]["psnr_y"] < 40
    assert "bicubic" in capsys.readouterr().out


@pytest.mark.parametrize("fast", [True, False])
def test_upscale_bf16_is_recorded_and_warned_where_slow(fast, trained_run, tmp_path, capsys, monkeypatch):
    reason = None if fast else "this CPU has no bf16 instructions (AMX or AVX-512 BF16)"
    monkeypatch.setattr("sr3.device.slow_bf16_reason", lambda device: reason)
    photo("chelsea").resize((16, 12)).save(tmp_path / "a.png")
    assert main(["upscale", str(tmp_path / "a.png"), "-o", str(tmp_path / "b.png"), "--model", str(trained_run),
                 "--steps", "1", "--precision", "bf16", "--quiet"]) == 0
    assert Image.open(tmp_path / "b.png").text["sr3:precision"] == "bf16"
    err = capsys.readouterr().err
    assert ("no bf16 instructions" in err) is not fast


def test_eval_table_says_how_the_model_was_sampled():
    from sr3.cli.eval import format_table

    row = {"psnr_y": 30.0, "ssim_y": 0.9, "psnr_rgb": 29.0, "ssim_rgb": 0.88, "consistency": 1e-5}
    result = {**row, "bicubic": row, "n_images": 3, "seconds_per_image": 0.5, "colour_fix": True, "precision": "fp32"}
    regression = format_table({**result, "sampler": "regression", "steps": 1, "nfe": 1})
    assert "regression sampler, 1 step (1 network evaluation), colour fix, 0.50 s/image" in regression
    assert "euler sampler, 2 steps (2 network evaluations)" in format_table({**result, "sampler": "euler", "steps": 2, "nfe": 2})
    bf16 = format_table({**result, "sampler": "euler", "steps": 2, "nfe": 2, "precision": "bf16", "colour_fix": False})
    assert "(2 network evaluations), no colour fix, bf16," in bf16
    header, model_row = bf16.splitlines()[:2]
    assert header.split()[1:] == ["PSNR-Y", "SSIM-Y", "PSNR-RGB", "SSIM-RGB", "consist."]  # the metric table's labels
    assert model_row.split()[1:] == ["30.00", "0.9000", "29.00", "0.8800", "1.00e-05"]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["upscale", "missing.png", "-o", "x.png", "--model", "RUN"], "input missing.png does not exist"),
        (["upscale", "IMG", "-o", "x.png", "--model", "RUN", "--sampler", "nope"], "unknown sampler 'nope'"),
        (["upscale", "IMG", "-o", "x.png", "--model", "nowhere"], "neither a file or folder nor a shipped model"),
        (["eval", "--model", "RUN", "--hr", "HRDIR", "--scale", "2"], "upscales x4, but --scale 2"),
        (["eval", "--model", "RUN", "--hr", "HRDIR", "--scale", "4", "--tile", "-1"], "--tile must be 0 (whole images) or at least 8"),
        (["train", "--config", "tiny", "--data", "HRDIR", "--output", "OUT", "--steps", "1", "--set", "train.lrr=1"],
         "unknown config key 'train.lrr'"),
        (["train", "--config", "nope", "--data", "HRDIR", "--output", "OUT", "--steps", "1"], "neither a file nor a preset"),
        (["train", "--config", "tiny", "--data", "EMPTY", "--output", "OUT", "--steps", "1"], "no images"),
        (["train", "--config", "tiny", "--data", "HRDIR", "--output", "OUT", "--steps", "1", "--set",
          "train.batch_size=0"], "'train.batch_size' must be in [1, inf]"),
        (["train", "--config", "tiny", "--data", "HRDIR", "--output", "IMG", "--steps", "1"], "is a file"),
        (["train", "--config", "tiny", "--data", "HRDIR", "--output", "RUN", "--steps", "2", "--resume"],
         "not beyond the run's current step 4"),
        (["upscale", "IMG", "-o", "x.png", "--model", "RUN", "--device", "nope"], "unknown device 'nope'"),
        (["upscale", "IMG", "IMG", "-o", "OUT", "--model", "RUN"], "would both be written to"),
        (["eval", "--model", "RUN", "--hr", "HRDIR", "--lr", "LR8", "--scale", "4"], "wrong --scale?"),
        (["eval", "--model", "RUN", "--hr", "HRDIR", "--scale", "4", "--json", "OUT/x.json"], "cannot write --json"),
        (["eval", "--model", "RUN", "--hr", "HRDIR", "--scale", "4", "--holdout"], "without a held-out split"),
        (["export", "--model", "RUN", "--output", "OUT/x.safetensors"], "its folder does not exist"),
        (["export", "--model", "RUN", "--output", "IMG"], "export to a .safetensors file"),
    ],
)
def test_user_mistakes_are_one_line_and_nonzero(argv, message, trained_run, tmp_path, capsys):
    img = tmp_path / "img.png"
    photo().resize((16, 16)).save(img)
    hr = tmp_path / "hr"
    hr.mkdir()
    photo().resize((32, 32)).save(hr / "x.png")
    (tmp_path / "empty").mkdir()
    (tmp_path / "lr8").mkdir()
    photo().resize((4, 4)).save(tmp_path / "lr8" / "x.png")
    subst = {"LR8": str(tmp_path / "lr8"), "EMPTY": str(tmp_path / "empty"), "RUN": str(trained_run), "IMG": str(img), "HRDIR": str(hr), "OUT": str(tmp_path / "out")}
    code = main([subst.get(a, a) for a in argv])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err


def _kinds(folder):
    """One file per input kind users bring: RGB, grey, RGBA, palette, 16-bit PNG, CMYK JPEG, EXIF-rotated JPEG."""
    base = photo("chelsea").resize((16, 12))
    base.save(folder / "rgb.png")
    base.convert("L").save(folder / "gray.png")
    rgba = base.convert("RGBA")
    rgba.putalpha(128)
    rgba.save(folder / "rgba.png")
    base.convert("P", palette=Image.ADAPTIVE).save(folder / "palette.png")
    Image.fromarray((np.asarray(base.convert("L"), dtype=np.uint16) * 257)).save(folder / "deep.png")
    base.convert("CMYK").save(folder / "cmyk.jpg")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    base.save(folder / "rotated.jpg", exif=exif)


def test_every_input_kind_upscales(trained_run, tmp_path):
    src = tmp_path / "kinds"
    src.mkdir()
    _kinds(src)
    assert main(["upscale", str(src), "--model", str(trained_run), "--steps", "1", "--quiet"]) == 0
    out = tmp_path / "kinds_sr3"
    modes = {p.stem: Image.open(p) for p in out.iterdir()}
    assert {k: v.mode for k, v in modes.items()} == {
        "rgb": "RGB", "gray": "L", "rgba": "RGBA", "palette": "RGB", "deep": "L", "cmyk": "RGB", "rotated": "RGB"}
    assert all(v.size == (64, 48) for k, v in modes.items() if k != "rotated")
    assert modes["rotated"].size == (48, 64)
    assert np.asarray(modes["rgba"].getchannel("A")).mean() == pytest.approx(128, abs=1)


def test_default_output_name_and_any_scale(trained_run, tmp_path):
    img = tmp_path / "shot.jpg"
    photo().resize((16, 16)).save(img)
    assert main(["upscale", str(img), "--model", str(trained_run), "--steps", "1", "--scale", "3", "--quiet"]) == 0
    assert Image.open(tmp_path / "shot_sr3.png").size == (48, 48)


def test_icc_profile_is_carried_to_the_output(trained_run, tmp_path):
    from PIL import ImageCms

    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    photo().resize((16, 16)).save(tmp_path / "icc.png", icc_profile=profile)
    assert main(["upscale", str(tmp_path / "icc.png"), "-o", str(tmp_path / "out.png"), "--model", str(trained_run),
                 "--steps", "1", "--quiet"]) == 0
    assert Image.open(tmp_path / "out.png").info.get("icc_profile") == profile


def test_the_command_line_and_python_sample_alike(trained_run, tmp_path):
    from sr3.pipeline import SR3Pipeline

    img = photo("coffee").resize((40, 28))
    img.save(tmp_path / "in.png")
    assert main(["upscale", str(tmp_path / "in.png"), "-o", str(tmp_path / "cli.png"), "--model", str(trained_run),
                 "--quiet"]) == 0
    cli = Image.open(tmp_path / "cli.png")
    python = SR3Pipeline.load(trained_run).upscale(img)
    assert np.array_equal(np.asarray(cli), np.asarray(python))
    assert cli.text["sr3:tile"] == "128" and cli.text["sr3:colour_fix"] == "True"


def test_help_builds_without_torch():
    """`sr3 --help` stays instant: no subcommand imports torch to build its parser."""
    code = ("import sys; from sr3.cli.main import build_parser; build_parser().format_help(); "
            "assert 'torch' not in sys.modules, sorted(m for m in sys.modules if m.startswith('sr3'))")
    subprocess.run([sys.executable, "-c", code], check=True)
    out = subprocess.run([sys.executable, "-m", "sr3.cli.main", "upscale", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "ddpm | ddim | euler | heun | dpmpp_2m" in out.stdout


def test_compare_writes_a_contact_sheet(trained_run, tmp_path):
    hr = tmp_path / "hr"
    hr.mkdir()
    for name in ("coffee", "chelsea"):
        photo(name).resize((48, 32)).save(hr / f"{name}.png")
    out = tmp_path / "sheet.png"
    assert main(["compare", str(hr), "--hr", "-o", str(out), "--method", str(trained_run),
                 "--method", f"{trained_run}:ddpm:2", "--panel", "64", "--quiet"]) == 0
    sheet = Image.open(out)
    # 5 columns (LR, bicubic, two methods, HR) of 64 px with 4-px gaps; per row a 64x43 panel and its 64-px zoom
    assert sheet.width == 5 * 64 + 4 * 4 and sheet.height == 16 + 2 * (43 + 2 + 64 + 4)
    assert main(["compare", str(hr), "-o", str(out), "--method", "nope:x"]) == 2
    assert main(["compare", str(hr), "-o", str(out), "--method", str(trained_run), "--zoom", "2,0,1"]) == 2
    # LR made by another degradation; a denoise strength only for a model trained with a noise level
    args = ["compare", str(hr), "--hr", "--degradation", "realworld", "-o", str(out), "--panel", "64", "--quiet"]
    assert main([*args, "--method", str(trained_run)]) == 0
    assert main([*args, "--method", f"{trained_run},denoise=0.5"]) == 2
    assert main([*args, "--degradation", "nope", "--method", str(trained_run)]) == 2
