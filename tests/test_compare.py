"""Tests for sr3.compare's method specs: MODEL, MODEL:SAMPLER:STEPS, @SEED for another draw, ,denoise=S|auto."""

import pytest
from PIL import Image

from sr3.compare import Method, parse_method, run_methods
from sr3.errors import SR3Error


@pytest.mark.parametrize(
    "spec, method",
    [
        ("faces-8x", Method("faces-8x")),
        ("faces-8x@3", Method("faces-8x", seed=3)),
        ("natural-4x:ddpm:25", Method("natural-4x", "ddpm", 25)),
        ("natural-4x:ddpm:25@0", Method("natural-4x", "ddpm", 25, 0)),
        ("runs/a@b/model@2", Method("runs/a@b/model", seed=2)),
        ("photo-4x,denoise=auto", Method("photo-4x", denoise="auto")),
        ("photo-4x:ddpm:25@1,denoise=0.5", Method("photo-4x", "ddpm", 25, 1, 0.5)),
    ],
)
def test_parse_method(spec, method):
    assert parse_method(spec) == method


@pytest.mark.parametrize("spec", ["", "m:ddpm", "m:nope:3", "m:ddpm:0", "m@", "m@x", "m:ddpm:2@-1", ",denoise=0.5", "m@x,denoise=1"])
def test_bad_methods_are_refused(spec):
    with pytest.raises(SR3Error, match="MODEL"):
        parse_method(spec)


def test_a_method_seed_replaces_the_sheet_seed():
    class Recorder:
        def __init__(self):
            self.seeds = []

        def upscale(self, images, seeds):
            self.seeds += seeds
            return [(image, {}) for image in images]

    pipe = Recorder()
    lrs = [Image.new("RGB", (4, 4))] * 2
    run_methods([Method("m"), Method("m", seed=7)], lrs, 10, [pipe, pipe])
    assert pipe.seeds == [10, 11, 7, 8]
    assert Method("m", "ddpm", 25, 7).label == "m ddpm 25 seed 7"


def test_a_bad_denoise_strength_is_refused():
    with pytest.raises(SR3Error, match="denoise must be a number"):
        parse_method("photo-4x,denoise=strong")
