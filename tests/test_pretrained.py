"""Shipped models: found by name, loadable offline, better than bicubic on real photos; the shipped cascade."""

import pytest
import torch
from PIL import Image

from sr3.cascade import Cascade, class_index
from sr3.cli.main import main
from sr3.errors import SR3Error
from sr3.evaluate import image_scores
from sr3.imaging import to_tensor
from sr3.resize import imresize, mod_crop
from sr3.pipeline import SR3Pipeline
from sr3.pretrained import CASCADES, DEFAULT_MODEL, PRETRAINED, UPSCALING_CASCADES, pretrained_path, resolve_model

from conftest import photo


@pytest.mark.parametrize("name", list(PRETRAINED))
def test_every_shipped_model_is_a_small_half_precision_file_with_a_card(name):
    path = pretrained_path(name)
    assert path.stat().st_size < 40e6
    assert path.with_suffix(".md").is_file()
    pipe = SR3Pipeline.load(name)
    assert pipe.cfg.noise.residual and pipe.scale == {"natural-4x": 4, "faces-8x": 8, "natural-4x-regression": 4, "photo-4x": 4,
                                                    "faces-16x-regression": 16, "faces-8x-regression": 8,
                                                    "faces-8x-refiner": 8, "photo-4x-regression": 4}[name]


def test_names_resolve_and_paths_win(tmp_path, monkeypatch):
    assert resolve_model(DEFAULT_MODEL) == pretrained_path(DEFAULT_MODEL)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "natural-4x").mkdir()
    assert resolve_model("natural-4x") == tmp_path.joinpath("natural-4x").relative_to(tmp_path)
    with pytest.raises(SR3Error, match="shipped models: natural-4x"):
        pretrained_path("nope")
    with pytest.raises(SR3Error, match="nor a shipped model"):
        resolve_model("nope")


@pytest.mark.parametrize("name", ["astronaut", "coffee"])
def test_natural_4x_beats_bicubic_on_a_photo(name):
    """A 128 x 128 crop of a real photo, downscaled 4x by MATLAB bicubic, upscaled back with the default settings."""
    hr = to_tensor(mod_crop(photo(name), 4).crop((96, 64, 224, 192)))
    lr = imresize(hr, scale=0.25).clamp(-1, 1)
    pipe = SR3Pipeline.load("natural-4x")
    sr = pipe.super_resolve(lr[None], [0])[0]
    model = image_scores(sr, hr, lr, 4)
    bicubic = image_scores(imresize(lr, scale=4).clamp(-1, 1), hr, lr, 4)
    assert model["psnr_y"] > bicubic["psnr_y"] + 0.3
    assert model["consistency"] < bicubic["consistency"]
    assert torch.isfinite(sr).all()


def test_photo_4x_undoes_blur_and_noise_better_than_natural_4x():
    """A real photo crop blurred and noised as a camera would, then downscaled: photo-4x restores it closer."""
    from sr3.noise import seeded_generator
    from sr3.data.realworld import RealWorldConfig, StageConfig, degrade_real

    hr = to_tensor(mod_crop(photo("astronaut"), 4).crop((96, 64, 224, 192)))
    camera = RealWorldConfig(first=StageConfig(sigma=(2.0, 2.0), kernel_probs=(1, 0, 0, 0, 0, 0), resize_probs=(0, 0, 1),
                                               gaussian_prob=1.0, noise_sigma=(10.0, 10.0), jpeg_prob=0),
                             second_prob=0, final_modes=("matlab",), final_jpeg_prob=0)
    lr = degrade_real(hr, 4, seeded_generator(0), camera)
    scores = {name: image_scores(SR3Pipeline.load(name).super_resolve(lr[None], [0])[0], hr, lr, 4, perceptual=True)
              for name in ("natural-4x", "photo-4x")}  # measured: 28.24 against 27.02 dB, ST-LPIPS 0.203 against 0.359
    assert scores["photo-4x"]["psnr_y"] > scores["natural-4x"]["psnr_y"] + 0.5
    assert scores["photo-4x"]["st_lpips"] < 0.75 * scores["natural-4x"]["st_lpips"]


def test_shipped_cascade_generates_64px_images_by_class_name(tmp_path):
    out = tmp_path / "out"
    assert main(["generate", "--model", "tinyimagenet-10", "--class", "lemon", "-n", "1", "-o", str(out),
                 "--steps", "2", "--quiet"]) == 0
    (image,) = out.iterdir()
    assert image.name == "n07749582_00000.png" and Image.open(image).size == (64, 64)


def test_shipped_cascade_conditions_on_the_class_and_ships_its_ablation():
    assert set(CASCADES) == {"tinyimagenet-10", "natural-16x", "faces-16x"}
    assert [name for name in CASCADES if Cascade.load(name).is_upscaler] == list(UPSCALING_CASCADES)
    cascade = Cascade.load("tinyimagenet-10", overrides=["0.steps=2", "1.steps=2"])
    assert [p.cfg.data.hr_size for p in cascade.pipelines] == [32, 64]
    assert cascade.pipelines[1].cfg.model.augment_embedding
    lemon = class_index("lemon", cascade.class_names, cascade.cfg.class_titles, cascade.num_classes)
    cliff = class_index("n09246464", cascade.class_names, cascade.cfg.class_titles, cascade.num_classes)
    images = cascade.sample(torch.tensor([lemon, cliff]), [0, 0])[-1]
    assert (images[0] - images[1]).abs().mean() > 0.05
    plain = Cascade.load("tinyimagenet-10", overrides=["1.model=sr32-64-noaug.safetensors", "1.aug_level=0"])
    assert not plain.pipelines[1].cfg.model.augment_embedding


def test_natural_16x_chains_the_shipped_natural_4x_and_its_augmented_stage(tmp_path):
    cascade = Cascade.load("natural-16x")
    assert cascade.is_upscaler and cascade.scale == 16 and cascade.sampling_steps() == 2
    assert cascade.cfg.stages[0].model == "natural-4x" and cascade.pipelines[1].cfg.model.augment_embedding
    assert not any(p.name.startswith("natural-4x") for p in pretrained_path("natural-4x").parent.joinpath("natural-16x").iterdir())
    src, out = tmp_path / "in.png", tmp_path / "out.png"
    photo("coffee").resize((24, 16)).save(src)
    assert main(["upscale", str(src), "-o", str(out), "--model", "natural-16x", "--quiet"]) == 0
    assert Image.open(out).size == (384, 256)


def test_faces_16x_draws_a_real_face_closer_than_bicubic_and_its_regression_twin():
    """8 -> 32 -> 128 on a real face (the astronaut's, 128 px, downscaled 16x by MATLAB bicubic)."""
    cascade = Cascade.load("faces-16x", overrides=["1.steps=5"])
    assert cascade.is_upscaler and cascade.scale == 16 and cascade.cfg.stages[1].sampler == "ddpm"
    assert [p.cfg.data.hr_size for p in cascade.pipelines] == [32, 128] and cascade.pipelines[1].cfg.model.augment_embedding
    hr = to_tensor(photo("astronaut").crop((180, 47, 308, 175)))
    lr = imresize(hr, scale=1 / 16).clamp(-1, 1)
    sr = cascade.super_resolve(lr[None].repeat(2, 1, 1, 1), [0, 1])[-1]
    twin = SR3Pipeline.load("faces-16x-regression").super_resolve(lr[None], [0])[0]
    scores = {name: image_scores(x, hr, lr, 16, perceptual=True)
              for name, x in (("cascade", sr[0]), ("twin", twin), ("bicubic", imresize(lr, scale=16).clamp(-1, 1)))}
    # measured: ST-LPIPS 0.485 against 0.600 (twin) and 0.817 (bicubic)
    assert scores["cascade"]["st_lpips"] < 0.9 * scores["twin"]["st_lpips"] < 0.9 * scores["bicubic"]["st_lpips"]
    assert scores["cascade"]["psnr_y"] > scores["bicubic"]["psnr_y"]
    assert (sr[0] - sr[1]).abs().mean() > 0.01  # ancestral steps: another seed, another face
