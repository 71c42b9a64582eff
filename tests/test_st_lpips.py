"""ST-LPIPS: agreement with the reference package's own computation, and the properties a distance must have."""

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from PIL import Image, ImageFilter

from sr3.errors import SR3Error
from sr3.imaging import to_tensor
from sr3.metrics.st_lpips import st_lpips

from conftest import PHOTOS, photo

# The reference package imports torchvision, torchsummary and IPython at import time and uses none of them
# for this network; they are stubbed so it runs beside this torch, in a process of its own.
REFERENCE = textwrap.dedent("""
    import json, sys, types
    import torch
    for name in ("torchvision", "torchvision.models", "torchsummary", "IPython"):
        sys.modules[name] = types.ModuleType(name)
    sys.modules["torchvision"].models = sys.modules["torchvision.models"]
    sys.modules["torchsummary"].summary = sys.modules["IPython"].embed = None
    from stlpips_pytorch.stlpips import LPIPS
    net = LPIPS(net="alex", variant="shift_tolerant", verbose=False)
    pairs = torch.load(sys.argv[1], weights_only=True)
    with torch.no_grad():
        print(json.dumps([float(net(a[None], b[None]).flatten()[0]) for a, b in zip(pairs["a"], pairs["b"])]))
""")


def _pairs():
    """A dozen real image pairs: each photo beside a blurred, shifted, noisy or JPEG-compressed copy of itself."""
    out = []
    for i, name in enumerate(PHOTOS * 2):
        img = photo(name).resize((96, 80), Image.BICUBIC)
        if i % 4 == 0:
            other = img.filter(ImageFilter.GaussianBlur(1.5))
        elif i % 4 == 1:
            other = img.transform(img.size, Image.AFFINE, (1, 0, 2, 0, 1, 1))  # a 2-pixel shift
        elif i % 4 == 2:
            noisy = np.asarray(img, dtype=np.float64) + np.random.default_rng(i).normal(0, 12, (80, 96, 3))
            other = Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))
        else:
            other = photo(PHOTOS[(i + 1) % len(PHOTOS)]).resize((96, 80), Image.BICUBIC)
        out.append((to_tensor(img), to_tensor(other)))
    return out


def test_agrees_with_the_reference_package(tmp_path):
    pairs = _pairs()
    torch.save({"a": torch.stack([a for a, _ in pairs]), "b": torch.stack([b for _, b in pairs])}, tmp_path / "p.pt")
    script = tmp_path / "reference.py"
    script.write_text(REFERENCE)
    out = subprocess.run([sys.executable, str(script), str(tmp_path / "p.pt")], capture_output=True, text=True, check=True)
    reference = torch.tensor(json.loads(out.stdout), dtype=torch.float64)
    ours = st_lpips(torch.stack([a for a, _ in pairs]), torch.stack([b for _, b in pairs])).double()
    assert len(reference) == 12 and reference.min() > 0.001
    assert torch.allclose(ours, reference, atol=1e-5, rtol=0), (ours - reference).abs().max()


def test_identical_images_score_zero_and_more_blur_scores_worse():
    img = photo("chelsea").resize((128, 96), Image.BICUBIC)
    x = to_tensor(img)
    assert st_lpips(x, x).item() == 0.0
    scores = [st_lpips(x, to_tensor(img.filter(ImageFilter.GaussianBlur(r)))).item() for r in (0.5, 1, 2, 4)]
    assert all(a < b for a, b in zip(scores, scores[1:])), scores
    noisy = [st_lpips(x, (x + s * torch.randn_like(x)).clamp(-1, 1)).item() for s in (0.02, 0.05, 0.1, 0.2)]
    assert all(a < b for a, b in zip(noisy, noisy[1:])), noisy


def test_tolerates_a_shift_more_than_it_tolerates_blur():
    img = photo("astronaut").resize((128, 128), Image.BICUBIC)
    x = to_tensor(img)
    shifted = to_tensor(img.transform(img.size, Image.AFFINE, (1, 0, 1, 0, 1, 0)))
    blurred = to_tensor(img.filter(ImageFilter.GaussianBlur(1.5)))
    assert st_lpips(x[..., 8:-8, 8:-8], shifted[..., 8:-8, 8:-8]) < st_lpips(x, blurred) / 3


def test_bad_shapes_are_clear_errors():
    with pytest.raises(SR3Error, match="one shape"):
        st_lpips(torch.zeros(1, 3, 32, 32), torch.zeros(1, 3, 32, 31))
    for h, w in ((8, 8), (20, 20), (16, 32)):  # 20 px passed the old check of 16 and failed inside the network
        with pytest.raises(SR3Error, match="at least 21x21"):
            st_lpips(torch.zeros(1, 3, h, w), torch.zeros(1, 3, h, w))
    assert st_lpips(torch.zeros(1, 3, 21, 21), torch.ones(1, 3, 21, 21)).item() > 0
