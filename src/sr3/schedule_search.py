"""Inference-schedule search (SR3 Sec. 4; WaveGrad): pick the sigma grid for a fixed step count on held-out images.

A model conditioned on a continuous noise level can be sampled on any grid, so the grid is a
hyper-parameter chosen after training. Candidates are Karras grids (uniform in sigma^(1/rho)) over a range of
rho, top and bottom sigmas; each is scored on a few validation images and the best is returned as an
explicit `sampler.sigmas` list, ready to be written into the model's config (`sr3 export --set`).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from sr3.config import SamplerConfig
from sr3.errors import SR3Error
from sr3.evaluate import EvalPair, evaluate
from sr3.metrics.scores import metric_names
from sr3.pipeline import SR3Pipeline
from sr3.samplers import network_evaluations, steps_for_nfe
from sr3.schedules import gamma_to_sigma, karras_sigmas, training_gammas

RHOS = (1.0, 2.0, 3.0, 5.0, 7.0, 10.0)
TOPS = (None, 20.0, 5.0, 2.0)  # None: the training schedule's largest sigma
BOTTOMS = (None, 0.005, 0.02)  # None: the training schedule's smallest sigma


@dataclass
class Candidate:
    """One grid and its scores on the search images."""

    rho: float
    sigma_max: float
    sigma_min: float
    sigmas: list[float]
    scores: dict[str, float] = field(default_factory=dict)  # the mean of every `SR_METRICS` entry
    score: float = math.nan


def candidates(pipe: SR3Pipeline, steps: int, rhos=RHOS, tops=TOPS, bottoms=BOTTOMS) -> list[Candidate]:
    """Karras grids of `steps` points within the training schedule's sigma range (duplicates dropped)."""
    sig = gamma_to_sigma(training_gammas(pipe.cfg.noise))
    lo, hi = float(sig[0]), float(sig[-1])
    found, seen = [], set()
    for rho, top, bottom in itertools.product(rhos, tops, bottoms):
        s_max, s_min = min(hi, top or hi), max(lo, bottom or lo)
        if s_min >= s_max:
            continue
        grid = [float(s) for s in karras_sigmas(steps, sigma_min=s_min, sigma_max=s_max, rho=rho)]
        key = tuple(f"{s:.6g}" for s in grid)
        if key not in seen:  # one step, for one, is the same grid for every rho and bottom
            seen.add(key)
            found.append(Candidate(rho, s_max, s_min, grid))
    return found


def score(c: Candidate, reference: dict | None) -> float:
    """Higher is better: PSNR-Y alone, or, against a reference run, closeness to its PSNR-Y and consistency.

    Against a reference: -(PSNR shortfall in dB + |log10 consistency ratio|), so a grid matching the
    many-step sampler in both scores 0 and excess PSNR (over-smoothing) earns nothing.
    """
    if reference is None:
        return c.scores["psnr_y"]
    shortfall = max(0.0, reference["psnr_y"] - c.scores["psnr_y"])
    return -(shortfall + abs(math.log10(c.scores["consistency"] / reference["consistency"])))


def search(
    pipe: SR3Pipeline,
    pairs: Sequence[EvalPair],
    sampler: str,
    nfe: int,
    reference: dict | None = None,
    seed: int = 0,
    on_candidate: Callable[[Candidate], None] | None = None,
    colour_fix: bool | None = None,
) -> list[Candidate]:
    """Score every candidate grid for `sampler` at `nfe` evaluations (the model's tile, and its colour fix
    unless `colour_fix` says otherwise); best first."""
    steps = steps_for_nfe(sampler, nfe)
    if network_evaluations(sampler, steps) != nfe:
        raise SR3Error(f"{sampler} cannot spend exactly {nfe} network evaluations")
    base = pipe.sampler_config(steps, sampler, colour_fix=colour_fix)
    scored = []
    for c in candidates(pipe, steps):
        r = evaluate(pipe, list(pairs), dataclasses.replace(base, sigmas=c.sigmas), seed)
        c.scores = {name: r[name] for name in metric_names()}
        c.score = score(c, reference)
        scored.append(c)
        if on_candidate:
            on_candidate(c)
    return sorted(scored, key=lambda c: -c.score)


def sampler_overrides(sampler: str, best: Candidate) -> list[str]:
    """`sampler.*` settings that make the found grid a model's default (for `export_weights`)."""
    sigmas = "[" + ", ".join(f"{s:.6g}" for s in best.sigmas) + "]"
    return [f"sampler.name={sampler}", f"sampler.steps={len(best.sigmas)}", f"sampler.sigmas={sigmas}"]


def reference_run(pipe: SR3Pipeline, pairs: Sequence[EvalPair], spec: SamplerConfig, seed: int = 0) -> dict:
    """The mean metrics of a reference sampler run (e.g. 1000-step ancestral) on the search images."""
    r = evaluate(pipe, list(pairs), spec, seed)
    return {**{name: r[name] for name in metric_names()}, "sampler": spec.name, "steps": spec.steps}
