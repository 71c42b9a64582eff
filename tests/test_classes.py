"""Class-conditional models (CDM): labelled folders, base models without an image condition, label dropout."""

import json

import pytest
import torch

from sr3.conditioning import batch_condition
from sr3.diffusion import Cond
from sr3.guidance import ClassifierFreeGuidance
from sr3.noise import PerSampleNoise
from sr3.config import load_config
from sr3.data.pairs import SRPairs
from sr3.errors import SR3Error
from sr3.pipeline import SR3Pipeline
from sr3.schedules import training_gammas
from sr3.train.loop import Trainer

from conftest import PHOTOS, photo, untrained_pipeline

BASE = ["model.in_channels=3", "model.num_classes=2", "data.mode=classes", "data.hr_size=16", "data.scale=2",
        "model.image_size=16", "train.val_every=2", "train.checkpoint_every=2", "train.label_dropout=0.2"]


@pytest.fixture(scope="module")
def class_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("classes")
    for i, name in enumerate(PHOTOS[:4]):
        folder = root / ("cat" if i % 2 else "dog")
        folder.mkdir(exist_ok=True)
        photo(name).resize((24, 24)).save(folder / f"{name}.png")
    return root


def test_labels_come_from_class_folders(class_dir):
    data = SRPairs(class_dir, load_config("tiny", BASE).data)
    assert data.class_names == ["cat", "dog"]
    assert sorted(data.labels) == [0, 0, 1, 1]
    item = data[0]
    assert item["hr"].shape == (3, 16, 16) and item["label"].item() == data.labels[data.image_index(0)]


def test_a_base_model_trains_and_records_its_classes(class_dir, tmp_path):
    Trainer(load_config("tiny", BASE), class_dir, tmp_path / "run").fit(2, progress=False)
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["data"]["class_names"] == ["cat", "dog"]
    assert (tmp_path / "run" / "samples" / "step-0000002.png").is_file()
    pipe = SR3Pipeline.load(tmp_path / "run")
    x = pipe.generate(2, [0, 0], pipe.sampler_config(steps=2), labels=torch.tensor([0, 1]))
    assert x.shape == (2, 3, 16, 16)


def test_different_classes_give_different_samples_under_one_seed():
    pipe = untrained_pipeline(load_config("tiny", BASE))
    a, b = (pipe.generate(1, [7], pipe.sampler_config(steps=2), labels=torch.tensor([c])) for c in (0, 1))
    assert (a - b).abs().max() > 1e-3
    again = pipe.generate(1, [7], pipe.sampler_config(steps=2), labels=torch.tensor([0]))
    assert torch.equal(a, again)
    with pytest.raises(SR3Error, match="one class label"):
        pipe.generate(1, [7], labels=torch.tensor([2]))


def test_label_dropout_replaces_labels_with_the_null_class():
    cfg = load_config("tiny", BASE)
    batch = {"hr": torch.zeros(4000, 3, 2, 2), "lr": torch.zeros(4000, 3, 1, 1), "label": torch.zeros(4000, dtype=torch.long)}
    cond = batch_condition(batch, cfg, None, training_gammas(cfg.noise), PerSampleNoise(range(4000)))  # a base model: no predictor
    assert cond.image is None
    assert (cond.labels == 2).float().mean().item() == pytest.approx(0.2, abs=0.03)


def test_class_count_must_match_the_folders(class_dir, tmp_path):
    with pytest.raises(SR3Error, match="2 class folders, but model.num_classes=3"):
        Trainer(load_config("tiny", BASE + ["model.num_classes=3"]), class_dir, tmp_path / "run")
    with pytest.raises(SR3Error, match="data.mode=classes"):
        Trainer(load_config("tiny", ["model.num_classes=2"]), class_dir, tmp_path / "run")


def test_a_class_conditional_sr_stage_with_augmentation_trains(class_dir, tmp_path):
    cfg = load_config("tiny", BASE + ["model.in_channels=6", "model.augment_embedding=true", "augment.noise_max=0.3"])
    Trainer(cfg, class_dir, tmp_path / "run").fit(2, progress=False)
    pipe = SR3Pipeline.load(tmp_path / "run")
    lr = torch.rand(2, 3, 8, 8) * 2 - 1
    out = pipe.super_resolve(lr, [0, 1], pipe.sampler_config(steps=2), labels=torch.tensor([1, 0]), aug_level=0.1)
    assert out.shape == (2, 3, 16, 16)


def test_generate_cli_by_class_name_and_guidance(class_dir, tmp_path, capsys):
    from PIL import Image

    from sr3.cli.main import main

    Trainer(load_config("tiny", BASE), class_dir, tmp_path / "run").fit(2, progress=False)
    out = tmp_path / "out"
    assert main(["generate", "--model", str(tmp_path / "run"), "--class", "dog", "-n", "3", "-o", str(out),
                 "--steps", "2", "--guidance", "1.0", "--batch-size", "2", "--quiet"]) == 0
    files = sorted(p.name for p in out.iterdir())
    assert files == ["dog_00000.png", "dog_00001.png", "dog_00002.png"]
    assert Image.open(out / files[0]).size == (16, 16)
    assert main(["generate", "--model", str(tmp_path / "run"), "--class", "bird", "-o", str(out)]) == 2
    assert "unknown class 'bird'; classes: cat, dog" in capsys.readouterr().err


@pytest.mark.parametrize("stage", ["base", "sr"])
def test_guidance_is_one_plus_w_conditional_minus_w_unconditional(stage):
    """D_w = (1 + w) D(x | c) - w D(x | no class), against two plain calls of the denoiser (Ho & Salimans 2021)."""
    sr = ["model.in_channels=6", "model.augment_embedding=true", "augment.noise_max=0.3"]
    pipe = untrained_pipeline(load_config("tiny", BASE + (sr if stage == "sr" else [])))
    gen = torch.Generator().manual_seed(5)
    x, sigma, labels = torch.randn(2, 3, 16, 16, generator=gen), torch.tensor([0.3, 0.8]), torch.tensor([1, 0])
    image = torch.rand(2, 3, 16, 16, generator=gen) * 2 - 1 if stage == "sr" else None
    aug = torch.tensor([0.1, 0.2]) if stage == "sr" else None
    w = 2.5
    with torch.no_grad():
        guided = ClassifierFreeGuidance(pipe.denoiser, w, null_label=2)(x, sigma, Cond(image, labels, aug))
        d_c = pipe.denoiser(x, sigma, Cond(image, labels, aug))
        d_u = pipe.denoiser(x, sigma, Cond(image, torch.full_like(labels, 2), aug))
    assert (d_c - d_u).abs().amax(dim=(1, 2, 3)).min() > 1e-2  # the labels matter in both samples
    torch.testing.assert_close(guided, (1 + w) * d_c - w * d_u, rtol=0, atol=1e-5)


def test_generate_samples_with_the_guided_denoiser():
    pipe = untrained_pipeline(load_config("tiny", BASE))
    labels = torch.tensor([1])
    plain = pipe.generate(1, [3], pipe.sampler_config(steps=2), labels=labels)
    guided = pipe.generate(1, [3], pipe.sampler_config(steps=2), labels=labels, guidance=2.0)
    assert (plain - guided).abs().max() > 1e-4
