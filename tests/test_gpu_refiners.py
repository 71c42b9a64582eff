"""gpu/refiners.py: packing the device run's images within a budget, and the whole run in miniature on the CPU."""

from __future__ import annotations

import filecmp
import json
import sys
from pathlib import Path

import pytest
import torch
from conftest import PHOTOS, photo
from PIL import Image

from sr3.checkpoint import read_weights
from sr3.data.pairs import split_files
from sr3.imaging import list_images
from sr3.upscaler import load_upscaler

SCRIPT = Path(__file__).resolve().parents[1] / "gpu" / "refiners.py"
MODELS = ("faces-8x-regression", "faces-8x-refiner", "natural-4x-regression", "natural-4x-refiner",
          "photo-4x-regression", "photo-4x-refiner")


sys.path.insert(0, str(SCRIPT.parent))
import refiners


def fake_data(root: Path, photo_dir: Path, faces="UTKFace/images", t91="T91", photos="ImageNet-1k-samples") -> Path:
    """A data tree laid out like ../shared/data (or another layout), from scikit-image photos; RealSR beside it."""
    for i in range(24):  # enough names that the 10% hash split holds some out
        photo(PHOTOS[i % len(PHOTOS)]).resize((100, 100)).save(_mkdir(root / faces) / f"{20 + i}_0_0_2017{i:04d}.jpg")
    for f in sorted(photo_dir.iterdir()):
        Image.open(f).save(_mkdir(root / t91) / f.name)
        Image.open(f).save(_mkdir(root / photos) / f"n0{f.stem}.JPEG", quality=90)
    Image.open(next(photo_dir.iterdir())).save(_mkdir(root / "RealSR" / "HR") / "Canon_001_LR4.png")
    return root


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="module")
def data_tree(tmp_path_factory, photo_dir) -> Path:
    return fake_data(tmp_path_factory.mktemp("shared"), photo_dir)


@pytest.fixture(scope="module")
def packed(tmp_path_factory, data_tree) -> Path:
    out = tmp_path_factory.mktemp("gpu") / "data"
    refiners.main(["pack", "--data", str(data_tree), "--out", str(out)])
    return out


def test_pack_takes_training_faces_t91_and_photos_byte_for_byte(data_tree, packed):
    faces = list_images(data_tree / "UTKFace")
    train, held = split_files(faces, 0.1, "train"), split_files(faces, 0.1, "holdout")
    assert held, "the fake faces should include held-out ones"
    assert sorted(p.name for p in list_images(packed / "faces")) == sorted(p.name for p in train)
    assert sorted(p.name for p in list_images(packed / "t91")) == sorted(p.name for p in list_images(data_tree / "T91"))
    assert len(list_images(packed / "photos")) == len(PHOTOS)
    assert not any("Canon" in p.name for p in packed.rglob("*")), "RealSR must never be packed"
    for f in train:
        assert filecmp.cmp(f, packed / "faces" / f.relative_to(data_tree / "UTKFace"), shallow=False)
    manifest = json.loads((packed / refiners.MANIFEST).read_text())
    files = [p for p in packed.rglob("*") if p.is_file() and p.name != refiners.MANIFEST]
    assert sorted(name for name, _ in manifest["files"]) == sorted(p.relative_to(packed).as_posix() for p in files)
    assert all((packed / name).stat().st_size == size for name, size in manifest["files"])


def test_pack_fills_the_budget_with_photos_and_refuses_when_faces_and_t91_exceed_it(tmp_path, photo_dir, capsys):
    data = fake_data(tmp_path / "other", photo_dir, faces="people", t91="yang91", photos="imgs")
    layout = ["--data", str(data), "--faces", "people", "--t91", "yang91", "--photos", "imgs"]
    fixed = sum(f.stat().st_size for f in split_files(list_images(data / "people"), 0.1, "train") + list_images(data / "yang91"))
    smallest = min(f.stat().st_size for f in list_images(data / "imgs"))
    budget = fixed + 8192 + smallest
    refiners.main(["pack", *layout, "--out", str(tmp_path / "pack"), "--budget-mb", str(budget / refiners.MIB)])
    photos = list_images(tmp_path / "pack" / "photos")
    assert 1 <= len(photos) < len(PHOTOS)
    assert sum(f.stat().st_size for f in (tmp_path / "pack").rglob("*") if f.is_file()) <= budget
    capsys.readouterr()

    with pytest.raises(SystemExit) as exc:
        refiners.main(["pack", *layout, "--out", str(tmp_path / "small"), "--budget-mb", str(fixed / 2 / refiners.MIB)])
    assert exc.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith("error:") and "--max-faces" in err and err.count("\n") == 1
    assert not (tmp_path / "small").exists()


@pytest.mark.slow
def test_tiny_train_exports_six_models_that_upscale_and_refiners_regain_their_predictor(tmp_path, packed):
    out, models = tmp_path / "out", tmp_path / "models"
    refiners.main(["train", "--data", str(packed), "--out", str(out), "--work", str(tmp_path / "work"), "--tiny"])
    files = sorted(p.name for p in out.iterdir())
    assert len(files) <= 8 and all((out / f).stat().st_size < 16 * refiners.MIB for f in files)  # what a device returns
    assert "budget.json" in files and "train.log" in files
    budget = json.loads((out / "budget.json").read_text())
    records = {m: r for chain in budget["chains"].values() for m, r in chain["models"].items()}
    assert sorted(records) == sorted(MODELS)
    assert all(r["steps"] == 2 and r["samples_seen"] == 4 and r["wall_s"] > 0 for r in records.values())
    assert budget["device"] and all(chain["returncode"] == 0 for chain in budget["chains"].values())

    refiners.main(["assemble", "--run", str(out), "--out", str(models)])
    for name in MODELS:
        scale = 8 if name.startswith("faces") else 4
        lr = photo("astronaut").resize((16, 16), Image.BICUBIC)
        (sr, _), = load_upscaler(models / f"{name}.safetensors").upscale([lr], [0])
        assert sr.size == (16 * scale, 16 * scale)
    for refiner in MODELS[1::2]:
        carried = read_weights(models / f"{refiner}.safetensors").predictor
        own = read_weights(models / f"{refiner.replace('refiner', 'regression')}.safetensors")
        assert carried is not None and carried.cfg == own.cfg
        assert all(torch.equal(carried.weights[k], own.weights[k]) for k in own.weights)

    (out / "photo-4x-regression.safetensors").write_bytes((out / "natural-4x-regression.safetensors").read_bytes())
    with pytest.raises(SystemExit):  # a refiner is never put together with a predictor it did not train against
        refiners.main(["assemble", "--run", str(out), "--out", str(tmp_path / "wrong")])
