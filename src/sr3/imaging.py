"""Images in and out: loading, PIL <-> tensor in [-1, 1], MATLAB-compatible bicubic resize, Gaussian blur, RGB -> Y.

SR test sets make their low-resolution inputs with MATLAB's antialiased `imresize(..., 'bicubic')`; PIL's BICUBIC
differs from it by many grey levels, so `imresize` reimplements MATLAB's kernel, boundary rule and order of axes.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, UnidentifiedImageError
from PIL.PngImagePlugin import PngInfo

from sr3.errors import ImageTooLarge, SR3Error

GREY_WEIGHTS = (0.299, 0.587, 0.114)
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


def open_image(source: str | Path | BinaryIO, max_pixels: int | None = None, name: str | None = None) -> Image.Image:
    """Read an image file in its own mode, upright by its EXIF orientation, 16-bit scaled to 8 bits; info kept.

    `source` is a path or an open binary file (`name` then names it in messages). `max_pixels` refuses a
    larger image from its header, before any pixel is decoded (`ImageTooLarge`), as PIL's own
    decompression-bomb guard does at its far larger limit.
    """
    label = name or source
    try:
        with Image.open(source) as img:
            if max_pixels is not None and img.width * img.height > max_pixels:
                raise ImageTooLarge(
                    f"image {label} has {img.width}x{img.height} = {img.width * img.height:,} pixels;"
                    f" at most {max_pixels:,} are accepted"
                )
            img.load()
            img = ImageOps.exif_transpose(img)
    except FileNotFoundError:
        raise SR3Error(f"cannot read image {label}: no such file") from None
    except UnidentifiedImageError:
        raise SR3Error(f"cannot read image {label}: not an image format PIL can read") from None
    except Image.DecompressionBombError as e:
        raise ImageTooLarge(f"cannot read image {label}: {e}") from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        raise SR3Error(f"cannot read image {label}: {reason}") from None
    return eight_bit(img)


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


@dataclass
class UpscaleInput:
    """An image split for super-resolution: RGB for the model, and what the output must get back."""

    rgb: Image.Image
    alpha: Image.Image | None  # resized apart, deterministically, by `resize_plane`
    gray: bool
    icc_profile: bytes | None


def split_for_upscale(img: Image.Image) -> UpscaleInput:
    """Separate colour from alpha (RGBA, LA, palette transparency) and note grey inputs (16-bit ones as 8-bit
    grey) and the ICC profile."""
    img = eight_bit(img)
    has_alpha = img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info)
    alpha = img.convert("RGBA").getchannel("A") if has_alpha else None
    gray = img.mode in ("1", "L", "LA")
    return UpscaleInput(img.convert("RGB"), alpha, gray, img.info.get("icc_profile"))


def resize_plane(img: Image.Image, size: tuple[int, int]) -> Image.Image:
    """Resize an 8-bit PIL image to (width, height) with the MATLAB-compatible bicubic."""
    x = to_tensor(img)
    return to_pil(imresize(x, size=(size[1], size[0])).clamp(-1, 1))


def join_upscaled(rgb: torch.Tensor, part: UpscaleInput, size: tuple[int, int] | None = None) -> Image.Image:
    """The output image of an upscaled `split_for_upscale` part: the model's RGB [3, H, W] in [-1, 1],
    resampled to (width, height) `size` before its one rounding to 8 bits, with grey, alpha and the ICC
    profile of the input restored."""
    size = size or (rgb.shape[-1], rgb.shape[-2])
    if size != (rgb.shape[-1], rgb.shape[-2]):
        rgb = imresize(rgb, size=(size[1], size[0]))
    if part.gray:  # ITU-R 601 luma, as PIL's convert("L"), taken before the rounding
        rgb = (torch.tensor(GREY_WEIGHTS, dtype=rgb.dtype).view(3, 1, 1) * rgb).sum(dim=0, keepdim=True)
    image = to_pil(rgb)
    if part.alpha is not None:
        image.putalpha(resize_plane(part.alpha, size))
    if part.icc_profile:
        image.info["icc_profile"] = part.icc_profile
    return image


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


def pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """x [B, C, H, W] padded at the bottom and right to multiples of `multiple`: mirrored, or repeated where
    the image is too small to mirror. Crop the result of a size-preserving network back to [..., :H, :W]."""
    h, w = x.shape[-2:]
    pad_h, pad_w = -h % multiple, -w % multiple
    if not (pad_h or pad_w):
        return x
    mode = "reflect" if pad_h < h and pad_w < w else "replicate"
    return F.pad(x, (0, pad_w, 0, pad_h), mode=mode)


def to_pil(x: torch.Tensor) -> Image.Image:
    """A tensor [C, H, W] in [-1, 1] (C = 1 or 3) as an 8-bit PIL image; values are clamped and rounded."""
    if x.ndim != 3 or x.shape[0] not in (1, 3):
        raise ValueError(f"to_pil expects a tensor [C, H, W] with C = 1 or 3, got shape {tuple(x.shape)}")
    array = to_uint8(x)
    return Image.fromarray(array[:, :, 0], mode="L") if array.shape[2] == 1 else Image.fromarray(array, mode="RGB")


def mod_crop(img: Image.Image, multiple: int) -> Image.Image:
    """Crop the bottom and right edges so both sides are multiples of `multiple` (SR sets' "GTmod" crop)."""
    if multiple < 1:
        raise ValueError(f"multiple must be positive, got {multiple}")
    width, height = img.size
    if width < multiple or height < multiple:
        raise SR3Error(f"image of size {width}x{height} is smaller than the crop multiple {multiple}")
    return img.crop((0, 0, width - width % multiple, height - height % multiple))


def labels_from_csv(path: str | Path, classes: Iterable[str]) -> dict[str, str]:
    """File name -> class for the rows of a labels CSV whose class is one of `classes`.

    The CSV needs a `file` column; the class is the first other value of a row that names one of `classes`
    (e.g. the `wnid` of TinyImageNet-val's `file,wnid,class_index,class_name`).
    """
    try:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
    except OSError as exc:
        raise SR3Error(f"cannot read labels {path}: {exc}") from None
    if not rows or "file" not in rows[0]:
        raise SR3Error(f"labels {path} needs a header with a 'file' column")
    known = set(classes)
    labels = {}
    for row in rows:
        hits = [v for k, v in row.items() if k != "file" and v in known]
        if hits:
            labels[row["file"]] = hits[0]
    return labels


def square_resize(img: Image.Image, size: int) -> torch.Tensor:
    """An image centre-cropped to a square and resized to size x size by MATLAB-style bicubic (aligned faces)."""
    side = min(img.size)
    left, top = (img.width - side) // 2, (img.height - side) // 2
    square = to_tensor(img.crop((left, top, left + side, top + side)))
    return square if side == size else imresize(square, size=(size, size)).clamp(-1, 1)


def estimate_noise_std(image: torch.Tensor) -> float:
    """Standard deviation of the Gaussian noise in an image [C, H, W] on [-1, 1], by scikit-image's robust
    wavelet (median absolute deviation) estimator, averaged over channels."""
    from skimage.restoration import estimate_sigma

    unit = ((image.detach().float().cpu().clamp(-1, 1) + 1) / 2).numpy()
    return 2 * float(estimate_sigma(unit, channel_axis=0, average_sigmas=True))


def rgb_to_y(rgb: np.ndarray) -> np.ndarray:
    """Luma Y of ITU-R BT.601 as MATLAB's `rgb2ycbcr`: RGB [H, W, 3] in [0, 255] -> Y [H, W] in [16, 235], float64."""
    rgb = np.asarray(rgb, dtype=np.float64)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"rgb_to_y expects an array [H, W, 3], got shape {rgb.shape}")
    return rgb @ np.array([65.481, 128.553, 24.966]) / 255.0 + 16.0


def _cubic(x: torch.Tensor) -> torch.Tensor:
    """Keys' cubic convolution kernel with a = -0.5, the kernel of MATLAB's 'bicubic'."""
    ax = x.abs()
    ax2, ax3 = ax**2, ax**3
    near = (1.5 * ax3 - 2.5 * ax2 + 1) * (ax <= 1)
    far = (-0.5 * ax3 + 2.5 * ax2 - 4 * ax + 2) * ((ax > 1) & (ax <= 2))
    return near + far


def _resize_matrix(in_length: int, out_length: int, scale: float) -> torch.Tensor:
    """The [out, in] float64 matrix of MATLAB's `contributions` for one axis: antialiased, mirrored at the edges.

    Dense rather than banded: one matmul per axis runs on any device and dtype, and image sides keep it small.
    """
    # Antialiasing: when shrinking, stretch the kernel by 1/scale so it low-passes to the output's Nyquist rate.
    stretch = scale if scale < 1 else 1.0
    width = 4.0 / stretch
    x = torch.arange(1, out_length + 1, dtype=torch.float64)  # 1-based output coordinates, as in MATLAB
    u = x / scale + 0.5 * (1 - 1 / scale)  # the input coordinate each output pixel centre maps to
    left = torch.floor(u - width / 2)
    taps = math.ceil(width) + 2
    indices = left[:, None] + torch.arange(taps, dtype=torch.float64)
    weights = stretch * _cubic(stretch * (u[:, None] - indices))
    weights = weights / weights.sum(dim=1, keepdim=True)
    # Half-sample symmetric boundary: index into [1..n, n..1] cyclically (0-based below).
    folded = torch.remainder(indices.long() - 1, 2 * in_length)
    folded = torch.where(folded < in_length, folded, 2 * in_length - 1 - folded)
    rows = torch.arange(out_length)[:, None].expand_as(folded)
    matrix = torch.zeros(out_length, in_length, dtype=torch.float64)
    return matrix.index_put_((rows, folded), weights, accumulate=True)


def imresize(
    x: torch.Tensor, scale: float | None = None, size: tuple[int, int] | None = None
) -> torch.Tensor:
    """Resize like MATLAB's `imresize(x, scale or size, 'bicubic')`, antialiased when shrinking.

    x: float tensor [..., H, W] (e.g. [B, C, H, W]), any value range, device and dtype; gradients pass through.
    scale: one factor for both axes; the output is ceil(scale * H) x ceil(scale * W), as in MATLAB.
    size: the output (height, width) instead. Give exactly one of `scale` and `size`.
    """
    if (scale is None) == (size is None):
        raise ValueError("give exactly one of scale and size")
    if not x.is_floating_point() or x.ndim < 2:
        raise ValueError(f"imresize expects a float tensor [..., H, W], got {x.dtype} of shape {tuple(x.shape)}")
    in_h, in_w = x.shape[-2:]
    if scale is not None:
        if scale <= 0:
            raise ValueError(f"scale must be positive, got {scale}")
        scales = (float(scale), float(scale))
        out_h, out_w = math.ceil(scale * in_h), math.ceil(scale * in_w)
    else:
        out_h, out_w = size
        if out_h < 1 or out_w < 1:
            raise ValueError(f"size must be positive, got {size}")
        scales = (out_h / in_h, out_w / in_w)
    # MATLAB resizes the axis with the smaller scale first (height on a tie); the order changes the rounding.
    for axis in sorted((0, 1), key=lambda a: scales[a]):
        if axis == 0:
            matrix = _resize_matrix(in_h, out_h, scales[0]).to(device=x.device, dtype=x.dtype)
            x = matrix @ x
        else:
            matrix = _resize_matrix(in_w, out_w, scales[1]).to(device=x.device, dtype=x.dtype)
            x = x @ matrix.T
    return x


def gaussian_kernel1d(kernel_size: int, sigma: float | torch.Tensor) -> torch.Tensor:
    """Normalised 1-D Gaussian taps: shape [kernel_size] for a float sigma, [B, kernel_size] for a sigma tensor [B].

    A tensor sigma of 0 gives the identity kernel (no blur), which lets a batch mix blurred and clean samples.
    """
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be odd and positive, got {kernel_size}")
    if isinstance(sigma, torch.Tensor):
        device, dtype = sigma.device, torch.float64 if sigma.dtype == torch.float64 else torch.float32
        sigma = sigma.to(dtype).clamp_min(1e-12)[..., None]
    else:
        if sigma <= 0:
            raise ValueError(f"sigma must be positive, got {sigma}")
        device, dtype = None, torch.float32
    t = torch.arange(kernel_size, device=device, dtype=dtype) - (kernel_size - 1) / 2
    taps = torch.exp(-(t**2) / (2 * sigma**2))
    return taps / taps.sum(dim=-1, keepdim=True)


def gaussian_blur(x: torch.Tensor, sigma: float | torch.Tensor, kernel_size: int) -> torch.Tensor:
    """Separable Gaussian blur of x [..., H, W] with reflect padding; the output has x's shape.

    sigma: one float for all images, or a tensor [B] giving each sample x[b] its own blur (CDM's augmentation).
    """
    per_sample = isinstance(sigma, torch.Tensor) and sigma.ndim > 0
    if per_sample and (sigma.ndim != 1 or x.ndim < 3 or sigma.shape[0] != x.shape[0]):
        raise ValueError(f"sigma of shape {tuple(sigma.shape)} does not match a batch of shape {tuple(x.shape)}")
    height, width = x.shape[-2:]
    pad = kernel_size // 2
    if pad >= height or pad >= width:
        raise ValueError(f"kernel_size {kernel_size} is too large for an image of size {height}x{width}")
    taps = gaussian_kernel1d(kernel_size, sigma).to(device=x.device, dtype=x.dtype).reshape(-1, kernel_size)
    # Each sample's planes form a group of a depthwise convolution, all groups sharing their sample's taps.
    groups = x.numel() // (height * width)
    taps = taps.repeat_interleave(groups // taps.shape[0], dim=0)
    planes = F.pad(x.reshape(1, groups, height, width), (pad, pad, pad, pad), mode="reflect")
    planes = F.conv2d(planes, taps[:, None, :, None], groups=groups)
    planes = F.conv2d(planes, taps[:, None, None, :], groups=groups)
    return planes.reshape(x.shape)
