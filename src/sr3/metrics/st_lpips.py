"""ST-LPIPS (Ghildyal & Liu 2022, "Shift-tolerant Perceptual Similarity Metric"), AlexNet trunk.

A learned perceptual distance: deep features of both images, unit-normalised over channels, squared
differences weighted per channel by calibrated linear layers, averaged over space and summed over five
layers. Its trunk is an anti-aliased AlexNet (stride-1 convolutions, each downsampling a reflect-padded
[1, 2, 1]^2 blur with stride 2, after the ReLU's max pool), so a shift of a pixel or two barely changes
the score, unlike LPIPS. Lower is more similar; identical images score 0. Its numbers are not LPIPS's.

The calibrated weights ship in the `stlpips-pytorch` wheel (BSD-2), read from the installed
distribution without importing it (its import pulls torchvision, which this project cannot install).
"""

from __future__ import annotations

import functools
import importlib.metadata
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from sr3.errors import SR3Error

WEIGHTS = "stlpips_pytorch/weights/vST0.0/alex_shift_tolerant.pth"
CHANNELS = (64, 192, 384, 256, 256)
# the smallest side whose deepest feature map (after three blur-downsamplings) is still wider than their reflect pad
MIN_SIDE = 21
# LPIPS v0.1's input scaling: images in [-1, 1] are shifted and scaled per channel towards ImageNet's statistics
SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)


class BlurDownsample(nn.Module):
    """Anti-aliased downsampling (Zhang 2019): reflect-pad by 2, blur by the normalised [1, 2, 1] outer product, stride 2."""

    def __init__(self, channels: int):
        super().__init__()
        taps = torch.tensor([1.0, 2.0, 1.0])
        kernel = taps[:, None] * taps[None, :]
        self.register_buffer("filt", (kernel / kernel.sum()).expand(channels, 1, 3, 3).clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.pad(x, (2, 2, 2, 2), mode="reflect"), self.filt, stride=2, groups=x.shape[1])


class ShiftTolerantAlexNet(nn.Module):
    """The five feature stages of ST-LPIPS's AlexNet; module names follow the weight file's layout."""

    def __init__(self):
        super().__init__()
        c1, c2, c3, c4, c5 = CHANNELS
        self.slice1 = nn.Sequential()
        self.slice1.add_module("0", nn.Conv2d(3, c1, 11, stride=1, padding=2))
        self.slice1.add_module("1", BlurDownsample(c1))
        self.slice1.add_module("2", nn.ReLU())
        self.slice2 = nn.Sequential()
        self.slice2.add_module("3", nn.MaxPool2d(3, stride=1))
        self.slice2.add_module("4", BlurDownsample(c1))
        self.slice2.add_module("5", nn.Conv2d(c1, c2, 5, padding=2))
        self.slice2.add_module("6", nn.ReLU())
        self.slice3 = nn.Sequential()
        self.slice3.add_module("7", nn.MaxPool2d(3, stride=1))
        self.slice3.add_module("8", BlurDownsample(c2))
        self.slice3.add_module("9", nn.Conv2d(c2, c3, 3, padding=1))
        self.slice3.add_module("10", nn.ReLU())
        self.slice4 = nn.Sequential()
        self.slice4.add_module("11", nn.Conv2d(c3, c4, 3, padding=1))
        self.slice4.add_module("12", nn.ReLU())
        self.slice5 = nn.Sequential()
        self.slice5.add_module("13", nn.Conv2d(c4, c5, 3, padding=1))
        self.slice5.add_module("14", nn.ReLU())

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        features = []
        for stage in (self.slice1, self.slice2, self.slice3, self.slice4, self.slice5):
            x = stage(x)
            features.append(x)
        return features


class _Linear(nn.Module):
    """A calibrated per-channel weighting: a 1x1 convolution to one channel, no bias (`lin{k}.model.1`)."""

    def __init__(self, channels: int):
        super().__init__()
        self.model = nn.Sequential()
        self.model.add_module("1", nn.Conv2d(channels, 1, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class _Scaling(nn.Module):
    """LPIPS v0.1's input scaling, (x - shift) / scale per channel (`scaling_layer`)."""

    def __init__(self):
        super().__init__()
        self.register_buffer("shift", torch.tensor(SHIFT).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor(SCALE).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.shift) / self.scale


class STLPIPS(nn.Module):
    """d(x, y) for batches [B, 3, H, W] in [-1, 1] -> [B]; images at least MIN_SIDE px on each side."""

    def __init__(self):
        super().__init__()
        self.scaling_layer = _Scaling()
        self.net = ShiftTolerantAlexNet()
        for k, c in enumerate(CHANNELS):
            self.add_module(f"lin{k}", _Linear(c))

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if x.shape != y.shape or x.ndim != 4 or x.shape[1] != 3:
            raise SR3Error(f"ST-LPIPS compares two RGB batches of one shape; got {tuple(x.shape)} and {tuple(y.shape)}")
        if min(x.shape[-2:]) < MIN_SIDE:
            raise SR3Error(f"ST-LPIPS needs images of at least {MIN_SIDE}x{MIN_SIDE} pixels; got {tuple(x.shape[-2:])}")
        fx, fy = self.net(self.scaling_layer(x)), self.net(self.scaling_layer(y))
        total = x.new_zeros(x.shape[0])
        for k, (a, b) in enumerate(zip(fx, fy)):
            diff = (_unit(a) - _unit(b)) ** 2
            total = total + getattr(self, f"lin{k}")(diff).mean(dim=(1, 2, 3))
        return total


def _unit(features: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    """Features divided by their L2 norm over channels, at every position."""
    return features / (features.pow(2).sum(dim=1, keepdim=True).sqrt() + eps)


def weights_path() -> Path:
    """The calibrated ST-LPIPS weights inside the installed `stlpips-pytorch` distribution."""
    try:
        path = Path(str(importlib.metadata.distribution("stlpips-pytorch").locate_file(WEIGHTS)))
    except importlib.metadata.PackageNotFoundError:
        raise SR3Error("ST-LPIPS needs the package stlpips-pytorch==0.0.2 (pip install stlpips-pytorch==0.0.2)") from None
    if not path.is_file():
        raise SR3Error(f"the ST-LPIPS weights are missing from the installed stlpips-pytorch ({path}); reinstall it")
    return path


@functools.lru_cache(maxsize=4)
def load_st_lpips(device: str = "cpu") -> STLPIPS:
    """The ST-LPIPS network with its calibrated weights, in eval mode on `device` (loaded once per device)."""
    state = torch.load(weights_path(), map_location="cpu", weights_only=True)  # tensors only: no code is unpickled
    net = STLPIPS()
    net.load_state_dict(state)
    return net.eval().requires_grad_(False).to(device)


@torch.inference_mode()
def st_lpips(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """ST-LPIPS distance of two batches [B, 3, H, W] (or single images [3, H, W]) in [-1, 1]: [B] (or a 0-d tensor)."""
    single = x.ndim == 3
    x, y = (x[None], y[None]) if single else (x, y)
    net = load_st_lpips(str(x.device))
    d = net(x.float(), y.float())
    return d[0] if single else d
