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
from dataclasses import dataclass, replace

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


def _smallest(rate_at, power: float, high: float, steps: int = 40) -> float:
    """The smallest x in [0, high] with rate_at(x) >= power, by bisection (rate_at must rise
    with x: with the same draws at every x it does)."""
    low = 0.0
    if rate_at(high) < power:
        return float("inf")
    for _ in range(steps):
        mid = 0.5 * (low + high)
        low, high = (low, mid) if rate_at(mid) >= power else (mid, high)
    return high


def planned_mde(noise: Noise, cfg: ReportConfig, p1_seeds: int, p2_seeds: int,
                lam: float = 0.5, draws: int = 4000, seed: int = 0) -> dict:
    """The minimum detectable effect of each version-2 rule at its seed count, before any data:
    the smallest effect its test finds with probability `cfg.power`, by simulation with the
    given noise through the report's own functions (the same draws at every effect size).

    - P1: how far the mean log contrast must lie above delta_1 (flat over generations 1..G)
      to be confirmed; by symmetry, how far below to be refuted.
    - P2, slope: the smallest margin the slope's TOST certifies at a flat truth (the rule's
      margin is delta_2); P2, level: how far below delta_1 the loop's own P1 statistic must lie
      for that part of the joint test.
    """
    gens = np.arange(1, cfg.v2_horizon + 1)
    rng = np.random.default_rng(seed)
    base1 = draw(constant(0.0), gens, p1_seeds, noise, draws, rng)
    base2 = draw(constant(0.0), gens, p2_seeds, noise, draws, rng)
    i0 = transient_end(lam, cfg.v2_transient)
    window = [int(g) for g in gens if g >= i0]

    def p1_confirmed(effect: float) -> float:
        return rates(p1_matched_core(base1 + cfg.v2_delta1 + effect, cfg)["code"])["confirmed"]

    def below(effect: float) -> float:
        level = base2 + cfg.v2_delta1 - effect
        code = p2_matched_core(level[..., gens >= i0], window, level, cfg)["below"]["code"]
        return rates(code)["confirmed"]

    def slope_certified(margin: float) -> float:
        wide = replace(cfg, v2_delta2=max(margin, 1e-12))
        code = p2_matched_core(base2[..., gens >= i0], window, base2, wide)["slope"]["code"]
        return rates(code)["confirmed"]

    return {
        "how": f"simulated: {draws} draws of per-seed, per-generation log contrasts with "
               f"sigma = {noise.sigma:.4g} (a generation, retrain to retrain) and tau = "
               f"{noise.tau:.4g} (a seed), through the report's functions; the smallest "
               f"effect found with power {cfg.power:g} at one-sided level {cfg.alpha:g}",
        "noise": {"sigma": noise.sigma, "tau": noise.tau},
        "power": cfg.power, "horizon": cfg.v2_horizon,
        "P1": {"seeds": p1_seeds, "margin": cfg.v2_delta1,
               "min_detectable_effect": _smallest(p1_confirmed, cfg.power, 5.0),
               "meaning": "distance of the mean log contrast from delta_1 that the test "
                          "resolves"},
        "P2": {"seeds": p2_seeds, "lambda": lam, "window": window, "margin": cfg.v2_delta2,
               "min_detectable_effect": _smallest(slope_certified, cfg.power, 5.0),
               "meaning": "the smallest slope margin (per generation) that the slope's TOST "
                          "certifies at a flat truth; the rule's margin is delta_2",
               "below_delta_1": {"margin": cfg.v2_delta1,
                                 "min_detectable_effect": _smallest(below, cfg.power, 5.0)}},
    }
