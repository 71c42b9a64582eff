"""Predictors: what an SR stage refines, by name; a regression network's prediction travels inside the stage's file."""

import pytest
import torch
from PIL import Image

from sr3.checkpoint import export_weights, read_weights
from sr3.cli.main import main
from sr3.conditioning import sampling_condition, upsample
from sr3.config import load_config
from sr3.diffusion import diffused_image
from sr3.errors import SR3Error
from sr3.evaluate import EvalPair, evaluate
from sr3.imaging import to_tensor
from sr3.resize import imresize
from sr3.pipeline import SR3Pipeline
from sr3.predictors import PREDICTORS, Bicubic, build_predictor, named_predictor
from sr3.train.loop import Trainer
from sr3.upscaler import ModelUpscaler

from conftest import photo, tiny_weights

REGRESSION = ["noise.regression=true", "noise.parameterization=x0", "noise.residual=true", "sampler.tile=0"]
FAST = ["train.log_every=2", "train.val_every=1000", "train.checkpoint_every=2", "train.val_images=1"]


@pytest.fixture(scope="module")
def regressor(tmp_path_factory):
    """The weights file of a tiny regression model, seeded and perturbed."""
    return tiny_weights(tmp_path_factory.mktemp("regressor") / "reg.safetensors", REGRESSION, seed=3)


def refiner_config(regressor, *more):
    return load_config("tiny", ["predictor.name=regression", f"predictor.model={regressor}", "noise.residual=true",
                                "noise.parameterization=v", *FAST, *more])


def lr_batch(size=(12, 10)):
    return to_tensor(photo("chelsea").resize(size))[None]


def test_bicubic_is_sr3s_upsample_and_names_are_checked():
    cfg = load_config("tiny")
    lr = lr_batch()
    assert torch.equal(build_predictor(cfg)(lr), upsample(lr, 4)) and isinstance(build_predictor(cfg), Bicubic)
    with pytest.raises(SR3Error, match="unknown predictor 'nope'; choose from: bicubic, regression"):
        build_predictor(load_config("tiny", ["predictor.name=nope"]))
    with pytest.raises(SR3Error, match="needs predictor.model"):
        named_predictor(load_config("tiny", ["predictor.name=regression"]))
    with pytest.raises(SR3Error, match="no predictor network was given"):
        build_predictor(load_config("tiny", ["predictor.name=regression"]))
    assert list(PREDICTORS) == ["bicubic", "regression"]


def test_a_regression_prediction_is_that_models_own_output(regressor):
    """The predictor runs the regression model exactly as `sr3 upscale --model` runs it alone."""
    cfg = refiner_config(regressor)
    predict = build_predictor(cfg, named_predictor(cfg))
    lr = lr_batch()
    alone = SR3Pipeline.load(regressor).super_resolve(lr, [0])
    assert torch.equal(predict(lr), alone)
    assert not torch.allclose(alone, upsample(lr, 4).clamp(-1, 1), atol=1e-2)  # it predicts something of its own


def test_the_residual_is_taken_to_the_prediction_and_the_bicubic_rides_along(regressor):
    cfg = refiner_config(regressor, "predictor.with_bicubic=true", "model.in_channels=9")
    predict = build_predictor(cfg, named_predictor(cfg))
    lr = lr_batch((8, 8))
    cond = sampling_condition(lr, cfg, predict)
    assert cond.image.shape == (1, 6, 32, 32)
    assert torch.equal(cond.image[:, :3], predict(lr)) and torch.equal(cond.image[:, 3:], upsample(lr, 4))
    hr = torch.zeros(1, 3, 32, 32)
    assert torch.equal(diffused_image(hr, cond, residual=True), -predict(lr))


def test_a_refiner_trains_resumes_and_ships_its_predictor_in_one_file(regressor, photo_dir, tmp_path):
    cfg = refiner_config(regressor)
    run = tmp_path / "run"
    trainer = Trainer(cfg, photo_dir, run)
    trainer.fit(2, progress=False)
    stored = read_weights(run)
    assert stored.predictor is not None and stored.predictor.cfg.noise.regression
    assert all(torch.equal(stored.predictor.weights[k], v) for k, v in read_weights(regressor).weights.items())
    exported = export_weights(run, tmp_path / "refiner.safetensors")
    regressor.rename(tmp_path / "moved.safetensors")  # the shipped file needs nothing beside it
    try:
        lr = lr_batch()
        loaded = SR3Pipeline.load(exported)
        in_memory = trainer.ema_pipeline()
        assert torch.allclose(loaded.predict(lr), in_memory.predict(lr), atol=2e-2)  # float16 export
        out = loaded.super_resolve(lr, [1], loaded.sampler_config(steps=2))
        assert out.shape == (1, 3, 40, 48) and torch.equal(out, loaded.super_resolve(lr, [1], loaded.sampler_config(steps=2)))
        resumed = Trainer(cfg, photo_dir, run, resume=True)  # the run's own stored predictor, not the moved file
        resumed.fit(4, progress=False)
        assert read_weights(run).predictor is not None
    finally:
        (tmp_path / "moved.safetensors").rename(regressor)


def test_eval_scores_the_prediction_beside_bicubic(regressor, photo_dir, tmp_path, capsys):
    cfg = refiner_config(regressor, "sampler.steps=1", "sampler.tile=0")
    trainer = Trainer(cfg, photo_dir, tmp_path / "run")
    trainer.fit(2, progress=False)
    hr = to_tensor(photo("coffee").resize((48, 32)))
    result = evaluate(ModelUpscaler(trainer.ema_pipeline(), "refiner"), [EvalPair("coffee", hr, imresize(hr[None], 0.25)[0])])
    alone = evaluate(ModelUpscaler(SR3Pipeline.load(regressor), "regressor"), [EvalPair("coffee", hr, imresize(hr[None], 0.25)[0])])
    assert result["prediction"]["psnr_y"] == pytest.approx(alone["psnr_y"])
    assert "prediction" not in alone
    export_weights(tmp_path / "run", tmp_path / "refiner.safetensors")
    assert main(["eval", "--model", str(tmp_path / "refiner.safetensors"), "--hr", str(photo_dir), "--scale", "4",
                 "--limit", "1", "--quiet"]) == 0
    assert "prediction" in capsys.readouterr().out


def test_the_prediction_alone_is_one_option_away(regressor, photo_dir, tmp_path):
    trainer = Trainer(refiner_config(regressor, "sampler.sigma_max=0.3", "sampler.name=ddpm", "sampler.steps=2"),
                      photo_dir, tmp_path / "run")
    trainer.fit(2, progress=False)
    refiner = export_weights(tmp_path / "run", tmp_path / "refiner.safetensors", half=False)
    src = tmp_path / "in.png"
    photo("rocket").resize((12, 10)).save(src)
    outputs = {}
    for name, flags in (("alone", ["--model", str(regressor)]), ("prediction", ["--model", str(refiner), "--prediction-only"]),
                        ("refined", ["--model", str(refiner)])):
        assert main(["upscale", str(src), "-o", str(tmp_path / f"{name}.png"), *flags, "--quiet"]) == 0
        outputs[name] = Image.open(tmp_path / f"{name}.png")
    assert outputs["prediction"].tobytes() == outputs["alone"].tobytes() != outputs["refined"].tobytes()
    assert outputs["refined"].text["sr3:sigma_max"] == "0.3" and outputs["prediction"].text["sr3:sampler"] == "prediction"
    assert main(["upscale", str(src), "-o", str(tmp_path / "x.png"), "--model", str(regressor), "--prediction-only"]) == 2
