"""Training pairs made on the fly from a folder of HR images, with data order a pure function of the seed.

Sample number n of a run always yields the same (HR, LR) pair: the image comes from a per-epoch
permutation seeded by (seed, epoch) and the crop, flip and degradation from a generator seeded by
(seed, n). This makes resuming exact and makes every rank's shard of a global batch well defined.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Literal

import torch
from PIL import Image
from torch.utils.data import Dataset

from sr3.config import DataConfig
from sr3.data.degradations import degrade, get_degradation
from sr3.errors import SR3Error
from sr3.imaging import list_images, load_image, to_tensor
from sr3.noise import CENTRE_STREAM, PAIR_STREAM, seeded_generator
from sr3.resize import imresize


def in_holdout(path: Path, fraction: float) -> bool:
    """Whether an image belongs to the held-out split: a hash of its file name alone, so the split is the
    same on every machine and for every copy of the data."""
    digest = hashlib.sha256(path.name.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


def in_split(path: Path, fraction: float, split: Literal["train", "holdout"]) -> bool:
    """Whether an image belongs to the training or the held-out part (all are training when `fraction` is 0)."""
    return in_holdout(path, fraction) == (split == "holdout")


def split_files(files: list[Path], fraction: float, split: Literal["train", "holdout"]) -> list[Path]:
    """The training or held-out part of a file list."""
    return [f for f in files if in_split(f, fraction, split)]


class SRPairs(Dataset):
    """(HR, LR) pairs of one or more folders of HR images: random crops and flips (`crops`), whole resized
    faces (`faces`), or whole resized images labelled by their class sub-folder (`classes`, adds "label").

    Index with a global sample number; see the module docstring. An item holds "hr", "lr" (by the
    `cfg.degradation`) and "sample" (the number, which seeds the sample's training noise). `split` picks
    the training images or the `cfg.holdout` fraction kept out of them.
    """

    def __init__(
        self,
        folders: str | Path | Sequence[str | Path],
        cfg: DataConfig,
        seed: int = 0,
        split: Literal["train", "holdout"] = "train",
        cache: bool = False,
    ):
        if cfg.hr_size % cfg.scale:
            raise SR3Error(f"data.hr_size {cfg.hr_size} must be a multiple of data.scale {cfg.scale}")
        get_degradation(cfg.degradation)  # an unknown name fails before any image is read
        self.cfg, self.seed = cfg, seed
        folders = [folders] if isinstance(folders, (str, Path)) else list(folders)
        located = [(f, Path(folder)) for folder in folders for f in list_images(folder)]
        located = [(f, root) for f, root in located if in_split(f, cfg.holdout, split)]
        if not located:
            raise SR3Error(f"the {split} split of {', '.join(map(str, folders))} holds no images")
        files = [f for f, _ in located]
        sizes = [_size(f) for f in files]  # every header read now: a bad file is named before training starts
        if cfg.mode == "crops":
            files = [f for f, size in zip(files, sizes) if min(size) >= cfg.hr_size]
            if not files:
                raise SR3Error(f"no image in {', '.join(map(str, folders))} is at least {cfg.hr_size} px on its short side")
        self.files = files
        if cfg.mode == "classes":
            self.class_names, self.labels = _class_labels(located, cfg.class_names)
        self._perm: tuple[int, torch.Tensor] | None = None
        self._cache: dict[int, Image.Image] | None = {} if cache else None

    def __len__(self) -> int:
        return len(self.files)

    def image_index(self, n: int) -> int:
        """Which image sample n draws: position n % N of epoch n // N's permutation."""
        epoch, pos = divmod(n, len(self.files))
        if self._perm is None or self._perm[0] != epoch:
            self._perm = (epoch, torch.randperm(len(self.files), generator=seeded_generator(self.seed, epoch)))
        return int(self._perm[1][pos])

    def __getitem__(self, n: int) -> dict[str, torch.Tensor]:
        gen = seeded_generator(self.seed, n, PAIR_STREAM)
        index = self.image_index(n)
        img = self._image(index)
        hr = self._crop(img, gen) if self.cfg.mode == "crops" else self._whole(img)
        if torch.rand((), generator=gen) < 0.5:
            hr = hr.flip(-1)
        return self._item(hr, index, n, gen)

    def _image(self, index: int) -> Image.Image:
        """Image `index` decoded, from memory once seen if caching (a crop costs far less than a decode)."""
        if self._cache is None:
            return load_image(self.files[index])
        if index not in self._cache:
            self._cache[index] = load_image(self.files[index])
        return self._cache[index]

    def _item(self, hr: torch.Tensor, index: int, n: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
        item = {"hr": hr, "lr": degrade(self.cfg.degradation, hr, self.cfg.scale, gen), "sample": torch.tensor(n)}
        if self.cfg.mode == "classes":
            item["label"] = torch.tensor(self.labels[index])
        return item

    def centre_pair(self, i: int) -> dict[str, torch.Tensor]:
        """A fixed pair of image i (centre crop or whole image, no flip), for validation."""
        gen = seeded_generator(self.seed, i, CENTRE_STREAM)
        img = self._image(i)
        if self.cfg.mode != "crops":
            hr = self._whole(img)
        else:
            s = self.cfg.hr_size
            left, top = (img.width - s) // 2, (img.height - s) // 2
            hr = to_tensor(img.crop((left, top, left + s, top + s)))
        return self._item(hr, i, i, gen)

    def _crop(self, img: Image.Image, gen: torch.Generator) -> torch.Tensor:
        s = self.cfg.hr_size
        top = int(torch.randint(img.height - s + 1, (), generator=gen))
        left = int(torch.randint(img.width - s + 1, (), generator=gen))
        return to_tensor(img.crop((left, top, left + s, top + s)))

    def _whole(self, img: Image.Image) -> torch.Tensor:
        """A whole image (e.g. an aligned face), centre-cropped to square and resized to hr_size (e.g. 200 -> 128)."""
        return square_resize(img, self.cfg.hr_size)


def _class_labels(located: list[tuple[Path, Path]], known: list[str]) -> tuple[list[str], list[int]]:
    """Class names (sorted sub-folder names, or `known` ones) and each file's label."""
    folders = [f.relative_to(root).parts[0] if len(f.relative_to(root).parts) > 1 else "" for f, root in located]
    if "" in folders:
        raise SR3Error("data.mode=classes needs every image inside a class sub-folder of the data folder")
    names = list(known) or sorted(set(folders))
    unknown = sorted(set(folders) - set(names))
    if unknown:
        raise SR3Error(f"class folders {', '.join(unknown)} are not among data.class_names")
    index = {name: i for i, name in enumerate(names)}
    return names, [index[f] for f in folders]


def _size(path: Path) -> tuple[int, int]:
    """Image size from the header only; unreadable files are reported by path."""
    try:
        with Image.open(path) as img:
            return img.size
    except (OSError, SyntaxError) as exc:
        raise SR3Error(f"cannot read image {path}: {exc}") from None


class GlobalBatches:
    """Infinite batch sampler: lists of global sample numbers for one rank, starting at `start_step`.

    Micro-batch m of optimiser step s on rank r covers samples ((s * accum + m) * world + r) * B + [0, B).
    """

    def __init__(self, batch: int, accum: int = 1, world: int = 1, rank: int = 0, start_step: int = 0):
        self.batch, self.accum, self.world, self.rank, self.start_step = batch, accum, world, rank, start_step

    def __iter__(self) -> Iterator[list[int]]:
        micro = self.start_step * self.accum
        while True:
            base = (micro * self.world + self.rank) * self.batch
            yield list(range(base, base + self.batch))
            micro += 1


def square_resize(img: Image.Image, size: int) -> torch.Tensor:
    """An image centre-cropped to a square and resized to size x size by MATLAB-style bicubic (aligned faces)."""
    side = min(img.size)
    left, top = (img.width - side) // 2, (img.height - side) // 2
    square = to_tensor(img.crop((left, top, left + side, top + side)))
    return square if side == size else imresize(square, size=(size, size)).clamp(-1, 1)
