"""Models shipped inside the package, addressed by name: `sr3 upscale photo.jpg --model faces-8x`.

Each is a half-precision safetensors file with its training config in the metadata, and a model
card (`NAME.md`) saying how it was trained and how well it does; a cascade is a folder holding its
`cascade.yaml`, stage weights and card. Nothing is ever downloaded.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from sr3.errors import SR3Error

PRETRAINED = {
    "natural-4x": "general photos, 4x (trained on T91 + BSD200)",
    "faces-8x": "aligned faces, 16x16 -> 128x128 (trained on UTKFace)",
    "natural-4x-regression": "natural-4x's regression baseline: same network and data, plain L1, one evaluation",
    "photo-4x": "real camera photos, 4x: blur, noise and JPEG removed, --denoise S|auto (natural-4x fine-tuned)",
    "faces-16x-regression": "faces-16x's regression baseline: aligned faces 8x8 -> 128x128 in one L1-trained evaluation",
    "faces-8x-regression": "aligned faces 16x16 -> 128x128 in one L1-trained evaluation: the sharpest PSNR, smooth faces",
    "photo-4x-regression": "photo-4x's regression baseline and predictor: natural-4x-regression fine-tuned on the photo degradations",
    "faces-8x-refiner": "experimental: faces-8x-regression's prediction refined by 4 ancestral steps (predict, then refine)",
}
DEFAULT_MODEL = "natural-4x"
UPSCALING_CASCADES = {  # SR stages only: upscalers like the models above
    "natural-16x": "general photos, 16x (e.g. 64 -> 1024): natural-4x, then a 4x stage trained with blur and noise augmentation",
    "faces-16x": "aligned faces, 8x8 -> 128x128: 8 -> 32, then 32 -> 128 by faces-8x fine-tuned with blur and noise augmentation",
}
CASCADES = {
    "tinyimagenet-10": "class-conditional 64x64 images of 10 Tiny ImageNet classes (base 32 px, then SR 32 -> 64)",
    **UPSCALING_CASCADES,
}
CASCADE_FILE = "cascade.yaml"


def pretrained_path(name: str) -> Path:
    """The weights file of a shipped model."""
    if name not in PRETRAINED:
        raise SR3Error(f"no shipped model named '{name}'; shipped models: {', '.join(PRETRAINED)}")
    path = Path(str(resources.files("sr3") / "weights" / f"{name}.safetensors"))
    if not path.is_file():
        raise SR3Error(f"the weights of '{name}' are missing from this installation ({path}); reinstall sr3")
    return path


def resolve_model(spec: str | Path) -> Path:
    """A model given by path (run directory, checkpoint folder, weights file) or by shipped name.

    An existing path wins over a name, so a local folder called `natural-4x` is still usable.
    """
    path = Path(spec)
    if path.exists():
        return path
    if str(spec) in PRETRAINED:
        return pretrained_path(str(spec))
    raise SR3Error(f"model '{spec}' is neither a file or folder nor a shipped model ({', '.join(PRETRAINED)})")


def resolve_cascade(spec: str | Path) -> Path:
    """The YAML file of a cascade given as a file, a folder holding `cascade.yaml`, or a shipped name."""
    path = Path(spec)
    if path.is_dir() and (path / CASCADE_FILE).is_file():
        return path / CASCADE_FILE
    if path.is_file():
        return path
    if str(spec) in CASCADES:
        packaged = Path(str(resources.files("sr3") / "weights" / str(spec) / CASCADE_FILE))
        if packaged.is_file():
            return packaged
        raise SR3Error(f"the files of cascade '{spec}' are missing from this installation; reinstall sr3")
    raise SR3Error(f"cascade '{spec}' is neither a cascade file or folder nor a shipped cascade ({', '.join(CASCADES) or 'none'})")


def is_cascade(spec: str | Path) -> bool:
    """Whether `spec` names a cascade (a YAML file, a folder with `cascade.yaml`, a shipped cascade)."""
    path = Path(spec)
    if path.is_dir():
        return (path / CASCADE_FILE).is_file()
    if path.is_file():
        return path.suffix.lower() in (".yaml", ".yml")
    return str(spec) in CASCADES
