"""Golden values: a tiny seeded network sampled by every sampler gives these exact numbers.

A changed constant anywhere on the path (noise embedding, schedule, sigma grid, parameterisation, sampler
step, residual, initial noise, conditioning upsample) changes them. Recorded on an x86-64 CPU in float32;
the tolerance covers other BLAS kernels, not other maths.
"""

import dataclasses

import pytest
import torch

from sr3.config import load_config
from sr3.imaging import to_tensor
from sr3.resize import imresize

from conftest import photo, untrained_pipeline

# sampler: (output[0, :, 5, 3:7] flattened, mean of the whole output), LR 16x16 of the astronaut, seed 7
GOLDEN = {
    "ddpm": ([-0.285893, -0.790397, -0.097294, -0.091798, -0.751811, -0.489729, -0.770519, 0.161878, -0.352497, -0.208104, -0.820910, -0.215330], -0.111378),
    "ddim": ([-0.639561, -0.036140, -0.189541, -0.315912, -0.263371, -0.032627, -0.549307, -0.371754, -0.246447, -0.210986, -0.146375, -0.009118], -0.102285),
    "euler": ([-0.649290, -0.193799, -0.337936, -0.105455, -0.684569, -0.203148, -0.518149, -0.140169, -0.212149, -0.434385, -0.238585, -0.099531], -0.106831),
    "heun": ([0.449789, 0.549263, 0.670443, -1.000000, 0.376370, 0.471620, 0.589757, -1.000000, -1.000000, 0.647715, 0.716749, 0.819106], -0.041493),
    "dpmpp_2m": ([-0.628585, 0.140255, -0.023387, -0.551625, 0.208315, 0.158336, -0.584132, -0.631015, -0.284813, 0.039179, -0.043160, 0.092074], -0.091161),
}
STEPS = {"ddpm": 3, "ddim": 3, "euler": 2, "heun": 2, "dpmpp_2m": 3}


@pytest.fixture(scope="module")
def golden_setup():
    cfg = load_config("tiny", ["noise.residual=true", "noise.parameterization=v"])
    torch.manual_seed(0)
    pipe = untrained_pipeline(cfg)
    lr = imresize(to_tensor(photo("astronaut").resize((64, 64))), scale=1 / 4).clamp(-1, 1)[None]
    return pipe, lr


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_every_sampler_reproduces_its_golden_values(name, golden_setup):
    pipe, lr = golden_setup
    sampler = dataclasses.replace(pipe.cfg.sampler, name=name, steps=STEPS[name], tile=0, colour_fix=False)
    sr = pipe.super_resolve(lr, [7], sampler)
    values, mean = GOLDEN[name]
    assert torch.allclose(sr[0, :, 5, 3:7].flatten(), torch.tensor(values), atol=2e-5)
    assert sr.mean().item() == pytest.approx(mean, abs=2e-5)
