"""Shared fixtures: real photos from scikit-image's bundled samples, and tiny configs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import skimage.data
import torch
from PIL import Image

from sr3.config import load_config

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
needs_shared = pytest.mark.skipif(not (SHARED_DATA / "T91").is_dir(), reason="shared data sets not present")

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry", "hubble_deep_field")


def photo(name: str = "astronaut") -> Image.Image:
    """A real RGB photo shipped inside scikit-image."""
    return Image.fromarray(getattr(skimage.data, name)()).convert("RGB")


def untrained_pipeline(cfg):
    """A pipeline on a seeded, perturbed untrained U-Net: non-trivial outputs (the zero-init output layer too)."""
    from sr3.models.unet import UNet
    from sr3.pipeline import SR3Pipeline

    torch.manual_seed(0)
    net = UNet(cfg.model)
    for p in net.parameters():
        p.data.add_(0.02 * torch.randn_like(p))
    return SR3Pipeline(net, cfg)


def tiny_weights(path, overrides, seed=0):
    """A weights file of a seeded, perturbed untrained `tiny` U-Net with `overrides`, as `sr3 export` writes one."""
    import json

    from safetensors.torch import save_file

    from sr3.config import to_dict
    from sr3.models.unet import UNet

    cfg = load_config("tiny", overrides)
    torch.manual_seed(seed)
    net = UNet(cfg.model)
    for p in net.parameters():
        p.data.add_(0.05 * torch.randn_like(p))
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, path, metadata={"config": json.dumps(to_dict(cfg))})
    return path


@pytest.fixture(autouse=True)
def _seeded():
    """Every test starts from the same global RNG state, so none depends on the order tests run in."""
    torch.manual_seed(0)
    np.random.seed(0)


@pytest.fixture(scope="module")
def one_thread():
    """Tiny convolutions: syncing intra-op threads costs more than it saves, badly so on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def photo_dir(tmp_path_factory) -> Path:
    """A folder of real photos, downsized to keep tiny training runs fast."""
    root = tmp_path_factory.mktemp("photos")
    for name in PHOTOS:
        img = photo(name)
        img.resize((img.width // 4, img.height // 4), Image.BICUBIC).save(root / f"{name}.png")
    return root


@pytest.fixture
def tiny_config():
    """The `tiny` preset with fast logging, validation and checkpoint intervals."""
    return load_config(
        "tiny",
        ["train.log_every=2", "train.val_every=1000", "train.checkpoint_every=2", "train.keep_last=5"],
    )
