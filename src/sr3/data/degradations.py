"""How an HR image becomes its LR input (`data.degradation`): for training pairs and `sr3 eval` alike.

A degradation maps an HR tensor [C, H, W] in [-1, 1] to its LR image [C, H/scale, W/scale], rounded to
8 bits as a saved file would be, drawing any randomness from the per-sample `generator` the data
pipeline makes, so a pair is a pure function of its sample number and training resumes exactly.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from PIL import Image

from sr3.data.realworld import PHOTO, degrade_real
from sr3.errors import SR3Error
from sr3.imaging import quantize, to_tensor
from sr3.resize import imresize, mod_crop

Degradation = Callable[[torch.Tensor, int, torch.Generator], torch.Tensor]


def bicubic(hr: torch.Tensor, scale: int, generator: torch.Generator) -> torch.Tensor:
    """MATLAB-compatible antialiased bicubic downscaling, as the SR test sets' own LR images are made."""
    return quantize(imresize(hr, scale=1 / scale))


def realworld(hr: torch.Tensor, scale: int, generator: torch.Generator) -> torch.Tensor:
    """Second-order blur, resize, noise and JPEG at random (`sr3.data.realworld`), as camera photos are degraded."""
    return degrade_real(hr, scale, generator)


def photo(hr: torch.Tensor, scale: int, generator: torch.Generator) -> torch.Tensor:
    """The milder real-world mixture of `sr3.data.realworld.PHOTO`, a fifth of it clean bicubic: camera photos."""
    return degrade_real(hr, scale, generator, PHOTO)


DEGRADATIONS: dict[str, Degradation] = {
    "bicubic": bicubic,
    "realworld": realworld,
    "photo": photo,
}


def get_degradation(name: str) -> Degradation:
    """The degradation registered under `name`."""
    if name not in DEGRADATIONS:
        raise SR3Error(f"unknown degradation '{name}'; choose from: {', '.join(DEGRADATIONS)}")
    return DEGRADATIONS[name]


def degrade(name: str, hr: torch.Tensor, scale: int, generator: torch.Generator) -> torch.Tensor:
    """The LR image of `hr` under degradation `name`."""
    return get_degradation(name)(hr, scale, generator)


def degraded_pair(hr: Image.Image, scale: int, name: str, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(HR, LR) tensors of an HR image: cropped to a multiple of `scale` (SR sets' "GTmod"), then degraded."""
    hr_tensor = to_tensor(mod_crop(hr, scale))
    return hr_tensor, degrade(name, hr_tensor, scale, generator)
