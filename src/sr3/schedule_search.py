"""Inference-schedule search (SR3 Sec. 4; WaveGrad): pick the sigma grid for a fixed step count on held-out images.

A model conditioned on a continuous noise level can be sampled on any grid, so the grid is a
hyper-parameter chosen after training. Candidates are Karras grids (uniform in sigma^(1/rho)) over a range of
rho, top and bottom sigmas; each is scored on a few validation images by an objective (PSNR-Y, ST-LPIPS or
FID, as SR3 chose its schedules by FID) under optional bounds on PSNR-Y and consistency, and the best is
returned as an explicit `sampler.sigmas` list, ready to be written into the model's config.
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
from sr3.metrics.perceptual import SET_METRICS, PerceptualConfig
from sr3.metrics.scores import SR_METRICS, metric_names
from sr3.pipeline import SR3Pipeline
from sr3.samplers import network_evaluations, steps_for_nfe
from sr3.schedules import gamma_to_sigma, karras_sigmas, training_gammas
from sr3.upscaler import ModelUpscaler

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


# objective -> the metric it reads, per image (`SR_METRICS`) or of the set (`SET_METRICS`)
OBJECTIVES: dict[str, str] = {"psnr": "psnr_y", "st_lpips": "st_lpips", "fid": "fid"}


def objective_facts(name: str) -> tuple[str, float, bool]:
    """(the metric an objective reads, +1 when higher is better, whether it needs the perceptual figures)."""
    key = OBJECTIVES[name]
    metric = SR_METRICS.get(key) or SET_METRICS[key]
    return key, 1.0 if metric.higher_is_better else -1.0, key in SET_METRICS or SR_METRICS[key].perceptual


@dataclass(frozen=True)
class Objective:
    """What a grid is chosen by, and the bounds a grid must keep to be chosen at all (None: no bound)."""

    name: str = "psnr"
    min_psnr: float | None = None
    max_consistency: float | None = None

    def __post_init__(self):
        if self.name not in OBJECTIVES:
            raise SR3Error(f"unknown objective '{self.name}'; choose from: {', '.join(OBJECTIVES)}")


def score(c: Candidate, reference: dict | None, objective: Objective = Objective()) -> float:
    """Higher is better: the objective's metric (sign-flipped where lower is better), -inf outside the bounds,
    or, against a reference run, closeness to its PSNR-Y and consistency.

    Against a reference: -(PSNR shortfall in dB + |log10 consistency ratio|), so a grid matching the
    many-step sampler in both scores 0 and excess PSNR (over-smoothing) earns nothing.
    """
    if objective.min_psnr is not None and c.scores["psnr_y"] < objective.min_psnr:
        return -math.inf
    if objective.max_consistency is not None and c.scores["consistency"] > objective.max_consistency:
        return -math.inf
    if reference is None:
        key, sign, _ = objective_facts(objective.name)
        return sign * c.scores[key]
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
    objective: Objective = Objective(),
) -> list[Candidate]:
    """Score every candidate grid for `sampler` at `nfe` evaluations (the model's tile, and its colour fix
    unless `colour_fix` says otherwise); best first."""
    if reference is not None and objective.name != "psnr":
        raise SR3Error("a reference run is matched on PSNR-Y and consistency; it cannot go with another objective")
    perceptual = PerceptualConfig(fool=None) if objective_facts(objective.name)[2] else None
    steps = steps_for_nfe(sampler, nfe)
    if network_evaluations(sampler, steps) != nfe:
        raise SR3Error(f"{sampler} cannot spend exactly {nfe} network evaluations")
    base = pipe.sampler_config(steps, sampler, colour_fix=colour_fix)
    scored = []
    for c in candidates(pipe, steps):
        r = evaluate(ModelUpscaler(pipe, "candidate", sampler=dataclasses.replace(base, sigmas=c.sigmas)), list(pairs), seed,
                     perceptual=perceptual)
        c.scores = {name: r[name] for name in metric_names(perceptual is not None)}
        if perceptual is not None:
            c.scores["fid"] = r["fid"]
        c.score = score(c, reference, objective)
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
    r = evaluate(ModelUpscaler(pipe, "reference", sampler=spec), list(pairs), seed)
    return {**{name: r[name] for name in metric_names()}, "sampler": spec.name, "steps": spec.steps}
