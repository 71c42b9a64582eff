"""One interface for every upscaler: a single model and an SR-only cascade are held and used alike."""

import numpy as np
import pytest
import torch
from PIL import Image

from sr3.errors import SR3Error
from sr3.pipeline import SR3Pipeline
from sr3.upscaler import UpscaleSettings, load_upscaler

from conftest import photo, tiny_weights

AUG = ["model.augment_embedding=true", "augment.noise_max=0.05", "sampler.steps=2"]


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    root = tmp_path_factory.mktemp("upscalers")
    tiny_weights(root / "a.safetensors", ["data.scale=2", "sampler.steps=2"], 1)
    tiny_weights(root / "b.safetensors", ["data.scale=2", "sampler.steps=1"], 2)
    tiny_weights(root / "aug.safetensors", AUG, 3)
    (root / "cascade.yaml").write_text("stages:\n  - {model: a.safetensors}\n  - {model: b.safetensors}\n")
    return root


def test_a_model_and_a_cascade_answer_the_same_questions(weights):
    model, cascade = load_upscaler(weights / "a.safetensors"), load_upscaler(weights)
    assert (model.scale, model.steps, model.nfe) == (2, 2, 2)
    assert (cascade.scale, cascade.steps, cascade.nfe) == (4, 3, 3)
    img = photo("coffee").resize((10, 6))
    for upscaler, record_keys in ((model, {"sampler", "steps", "denoise"}), (cascade, {"stages", "scale"})):
        ticks = []
        [(out, record)] = upscaler.upscale([img], [4], ticks.append)
        assert out.size == (10 * upscaler.scale, 6 * upscaler.scale) and len(ticks) == upscaler.steps
        assert record["seed"] == 4 and record_keys <= record.keys()
        assert set(upscaler.describe()) == {"scale", "sampler", "steps", "nfe", "denoise", "takes_steps"}
        assert upscaler.settings()["nfe"] == upscaler.nfe


def test_a_model_upscaler_gives_the_pipelines_own_pixels(weights):
    pipe = SR3Pipeline.load(weights / "a.safetensors")
    img = photo("astronaut").resize((12, 12))
    [(out, _)] = load_upscaler(weights / "a.safetensors", settings=UpscaleSettings(steps=3, sampler="ddpm")).upscale([img], [7])
    assert out.tobytes() == pipe.upscale(img, steps=3, sampler="ddpm", seed=7).tobytes()


def test_settings_are_checked_when_given_and_configured_keeps_the_networks(weights):
    model = load_upscaler(weights / "a.safetensors")
    other = model.configured(UpscaleSettings(steps=5))
    assert other.pipe is model.pipe and other.steps == 5
    with pytest.raises(SR3Error, match="STAGE.KEY=VALUE settings are a cascade's"):
        load_upscaler(weights / "a.safetensors", settings=UpscaleSettings(stages=("1.steps=1",)))
    with pytest.raises(SR3Error, match="not trained with a noise level"):
        model.configured(UpscaleSettings(denoise=0.5))
    cascade = load_upscaler(weights, settings=UpscaleSettings(stages=("1.steps=2",)))
    assert cascade.steps == 4
    with pytest.raises(SR3Error, match="each stage samples as its file says"):
        cascade.configured(UpscaleSettings(steps=3))
    with pytest.raises(SR3Error, match="tile must be 0"):
        model.configured(UpscaleSettings(tile=3))


def test_auto_denoise_is_resolved_once_per_image_and_recorded(weights):
    model = load_upscaler(weights / "aug.safetensors", settings=UpscaleSettings(denoise="auto"))
    clean = photo("chelsea").resize((16, 12))
    pixels = torch.from_numpy(np.asarray(clean, dtype=np.float32))
    noisy = Image.fromarray((pixels + 40 * torch.randn_like(pixels)).clamp(0, 255).byte().numpy())
    (_, quiet), (_, loud) = model.upscale([clean, noisy], [0, 1])
    assert 0 <= quiet["denoise"] < loud["denoise"] <= 1
    assert quiet["colour_fix"] is (quiet["denoise"] == 0) and loud["colour_fix"] is False
