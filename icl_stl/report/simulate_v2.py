"""Simulated log contrasts with known truths: the calibration of the version-2 rules.

A seed's log contrast log(E / E_oracle) at generation g is drawn as

    truth(g) + u_seed + e_{seed, g},   u ~ N(0, tau^2),  e ~ N(0, sigma^2),

with sigma the retrain-to-retrain noise of one generation's contrast (from-scratch generations
are independent retrains) and tau a seed's persistent offset, both measured by the pilot. The
rules are applied by the very functions the report calls (`p1_matched_core`, `p2_matched_core`)
on arrays of draws, so a calibration of 20,000 draws is one call.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from icl_stl.report.predictions.p1_matched_collapse import p1_matched_core
from icl_stl.report.predictions.p2_matched_bounded import p2_matched_core, transient_end
from icl_stl.report.rules import ReportConfig
from icl_stl.report.stats import rates

Truth = Callable[[np.ndarray], np.ndarray]  # generations -> mean log contrast


@dataclass(frozen=True)
class Noise:
    """The pilot's noise of a log contrast: per generation (sigma) and per seed (tau)."""

    sigma: float
    tau: float = 0.0


def draw(truth: Truth, generations: np.ndarray, seeds: int, noise: Noise, draws: int,
         rng: np.random.Generator) -> np.ndarray:
    """(draws, seeds, len(generations)) simulated log contrasts."""
    g = np.asarray(generations, dtype=float)
    offsets = rng.normal(0.0, noise.tau, size=(draws, seeds, 1))
    return truth(g) + offsets + rng.normal(0.0, noise.sigma, size=(draws, seeds, g.size))


def p1_rates(truth: Truth, seeds: int, noise: Noise, cfg: ReportConfig, draws: int = 20_000,
             seed: int = 0) -> dict[str, float]:
    """Share of each P1 verdict over `draws` simulated groups at horizon cfg.v2_horizon."""
    gens = np.arange(1, cfg.v2_horizon + 1)
    contrast = draw(truth, gens, seeds, noise, draws, np.random.default_rng(seed))
    return rates(p1_matched_core(contrast, cfg)["code"])


def p2_rates(truth: Truth, lam: float, seeds: int, noise: Noise, cfg: ReportConfig,
             draws: int = 20_000, seed: int = 0) -> dict[str, float]:
    """Share of each P2 verdict (the joint test) over simulated groups at lambda."""
    gens = np.arange(1, cfg.v2_horizon + 1)
    contrast = draw(truth, gens, seeds, noise, draws, np.random.default_rng(seed))
    i0 = transient_end(lam, cfg.v2_transient)
    window = [int(g) for g in gens if g >= i0]
    test = p2_matched_core(contrast[..., gens >= i0], window, contrast, cfg)
    return rates(test["code"])


def constant(level: float) -> Truth:
    return lambda g: np.full(g.shape, float(level))


def linear(slope: float, start: float = 0.0) -> Truth:
    """start + slope x (g - 1): growth from generation 1."""
    return lambda g: start + slope * (g - 1.0)


def settling(level: float, lam: float) -> Truth:
    """A bounded loop: level x (1 - (1 - lambda)^(g + 1))^2, the reference learner's drift
    shape with real data reused, still rising early in the window at small lambda."""
    return lambda g: level * (1.0 - (1.0 - lam) ** (g + 1.0)) ** 2


def sloped_after(start: float, slope: float, i0: int) -> Truth:
    """Flat at `start` up to i0, then a trend of `slope` per generation (P2 at its margin)."""
    return lambda g: start + slope * np.maximum(g - i0, 0.0)


def interval(rate: float, draws: int) -> tuple[float, float]:
    """Wilson 95% interval of a Monte Carlo rate."""
    z = 1.959963984540054
    centre = (rate + z * z / (2 * draws)) / (1 + z * z / draws)
    half = z * np.sqrt(rate * (1 - rate) / draws + z * z / (4 * draws * draws)) / (
        1 + z * z / draws)
    return float(max(0.0, centre - half)), float(min(1.0, centre + half))
