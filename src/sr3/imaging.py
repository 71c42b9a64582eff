"""Images in and out: reading (upright, 8-bit, checked), writing with the settings as PNG text, finding image
files, and PIL <-> tensors in [-1, 1]. Resampling is `sr3.resize`'s."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError
from PIL.PngImagePlugin import PngInfo

from sr3.errors import ImageTooLarge, SR3Error

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"})

# PIL modes of 16-bit images (some Pillow versions open 16-bit PNGs as 32-bit 'I'); their values span 0..65535.
_SIXTEEN_BIT_MODES = frozenset({"I", "I;16", "I;16L", "I;16B", "I;16N"})


def load_image(path: str | Path, mode: str = "RGB") -> Image.Image:
    """Read an image file, upright by its EXIF orientation, as 8-bit `mode` ("RGB" or "L").

    Grey, palette, CMYK and alpha images are converted (alpha is dropped); 16-bit images are scaled to 8 bits.
    Raises SR3Error naming the file when it is missing, unreadable or truncated.
    """
    if mode not in ("RGB", "L"):
        raise ValueError(f"mode must be 'RGB' or 'L', got {mode!r}")
    return open_image(path).convert(mode)


@contextmanager
def _reading(label: object):
    """Turn PIL's errors while reading image `label` into one-line SR3Errors naming it."""
    try:
        yield
    except FileNotFoundError:
        raise SR3Error(f"cannot read image {label}: no such file") from None
    except UnidentifiedImageError:
        raise SR3Error(f"cannot read image {label}: not an image format PIL can read") from None
    except Image.DecompressionBombError as e:
        raise ImageTooLarge(f"cannot read image {label}: {e}") from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        raise SR3Error(f"cannot read image {label}: {reason}") from None


def open_image(source: str | Path | BinaryIO, max_pixels: int | None = None, name: str | None = None) -> Image.Image:
    """Read an image file in its own mode, upright by its EXIF orientation, 16-bit scaled to 8 bits; info kept.

    `source` is a path or an open binary file (`name` then names it in messages). `max_pixels` refuses a
    larger image from its header, before any pixel is decoded (`ImageTooLarge`), as PIL's own
    decompression-bomb guard does at its far larger limit.
    """
    label = name or source
    with _reading(label), Image.open(source) as img:
        if max_pixels is not None and img.width * img.height > max_pixels:
            raise ImageTooLarge(
                f"image {label} has {img.width}x{img.height} = {img.width * img.height:,} pixels;"
                f" at most {max_pixels:,} are accepted"
            )
        img.load()
        img = ImageOps.exif_transpose(img)
    return eight_bit(img)


def image_size(path: str | Path) -> tuple[int, int]:
    """(width, height) of an image file upright, from its header alone: no pixel is decoded."""
    with _reading(path), Image.open(path) as img:
        turned = img.getexif().get(ExifTags.Base.Orientation, 1) in (5, 6, 7, 8)
        return (img.height, img.width) if turned else img.size


def eight_bit(img: Image.Image) -> Image.Image:
    """A 16-bit grey image as 8-bit grey, 0..65535 mapped onto 0..255 (convert("L") would clip above 255); info kept.
    Any other image is returned as it is."""
    if img.mode not in _SIXTEEN_BIT_MODES:
        return img
    wide = np.asarray(img, dtype=np.float64)
    out = Image.fromarray(np.clip(np.round(wide / 257.0), 0, 255).astype(np.uint8), mode="L")
    out.info.update(img.info)
    return out


def save_image(image: Image.Image, path: str | Path, settings: dict) -> None:
    """Save an output; PNGs carry the sampling settings (model, sampler, steps, seed...) as text metadata."""
    path = Path(path)
    info = PngInfo()
    for key, value in settings.items():
        info.add_text(f"sr3:{key}", str(value))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        extra = {"icc_profile": image.info["icc_profile"]} if "icc_profile" in image.info else {}
        if path.suffix.lower() == ".png":
            image.save(path, pnginfo=info, **extra)
        else:
            image.convert("RGB" if image.mode == "RGBA" else image.mode).save(path, **extra)
    except (OSError, ValueError) as exc:
        raise SR3Error(f"cannot write {path}: {exc}") from None


def list_images(folder: str | Path) -> list[Path]:
    """All image files under `folder`, recursively, sorted; extensions matched case-insensitively."""
    folder = Path(folder)
    if not folder.is_dir():
        raise SR3Error(f"image folder {folder} does not exist or is not a folder")
    paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
    if not paths:
        raise SR3Error(f"no images ({', '.join(sorted(IMAGE_EXTENSIONS))}) found in {folder}")
    return paths


def to_tensor(img: Image.Image) -> torch.Tensor:
    """An 8-bit PIL image as a float32 tensor [C, H, W] in [-1, 1]."""
    array = np.array(img)
    if array.dtype != np.uint8:
        raise ValueError(f"to_tensor expects an 8-bit image, got PIL mode {img.mode!r}")
    if array.ndim == 2:
        array = array[:, :, None]
    return torch.from_numpy(array).permute(2, 0, 1).float() / 127.5 - 1.0


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """[C, H, W] in [-1, 1] -> HWC uint8 array, rounded as `to_pil` rounds (for metrics on saved pixels)."""
    return ((x.detach().float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).cpu().numpy()


def quantize(x: torch.Tensor) -> torch.Tensor:
    """x in [-1, 1] (any shape) rounded to the 256 levels of an 8-bit image, as `to_tensor(to_pil(x))` gives."""
    return ((x.detach().float().clamp(-1, 1) + 1) * 127.5).round() / 127.5 - 1.0


def to_pil(x: torch.Tensor) -> Image.Image:
    """A tensor [C, H, W] in [-1, 1] (C = 1 or 3) as an 8-bit PIL image; values are clamped and rounded."""
    if x.ndim != 3 or x.shape[0] not in (1, 3):
        raise ValueError(f"to_pil expects a tensor [C, H, W] with C = 1 or 3, got shape {tuple(x.shape)}")
    array = to_uint8(x)
    return Image.fromarray(array[:, :, 0], mode="L") if array.shape[2] == 1 else Image.fromarray(array, mode="RGB")
