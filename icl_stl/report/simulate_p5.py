"""Simulated curves of log excess risk against m / n with known truths: the calibration of
P5, version 2.

A seed's log excess risk at r_j = m_j / n is drawn as

    truth(r_j) + u_seed + e_{seed, j},   u ~ N(0, tau^2),  e ~ N(0, sigma^2),

with sigma the noise of one point of a curve (each m is its own retrain from scratch, read on
a shared test set) and u a seed's offset (it moves the whole curve and cancels in every
statistic of the rule). The rule is applied by the very function the report calls
(`p5v2_core`) on arrays of draws.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from icl_stl.report.predictions.p5_augmentation_v2 import p5v2_core
from icl_stl.report.rules import ReportConfig
from icl_stl.report.stats import rates

Truth = Callable[[np.ndarray], np.ndarray]  # m / n -> mean log excess risk


@dataclass(frozen=True)
class Noise:
    """The pilot's noise of one point of a curve (sigma) and of a seed's level (tau)."""

    sigma: float
    tau: float = 0.0


def draw(truth: Truth, r: np.ndarray, seeds: int, noise: Noise, draws: int,
         rng: np.random.Generator) -> np.ndarray:
    """(draws, seeds, len(r)) simulated log excess risks."""
    r = np.asarray(r, dtype=float)
    offsets = rng.normal(0.0, noise.tau, size=(draws, seeds, 1))
    return truth(r) + offsets + rng.normal(0.0, noise.sigma, size=(draws, seeds, r.size))


def p5_rates(truth: Truth, r: np.ndarray, seeds: int, noise: Noise, cfg: ReportConfig,
             draws: int = 20_000, seed: int = 0) -> dict[str, float]:
    """Share of each verdict of the interior-optimum rule over `draws` simulated groups."""
    y = draw(truth, r, seeds, noise, draws, np.random.default_rng(seed))
    return rates(p5v2_core(y, np.asarray(r, dtype=float), cfg)["code"])


def quadratic_truth(a: float, b: float, c: float) -> Truth:
    return lambda r: a + b * r + c * r * r


def dip(depth: float, vertex: float, r: np.ndarray) -> Truth:
    """A quadratic with its vertex at `vertex` whose smaller end contrast (an end of the grid
    `r` minus the mean over its interior points) is `depth`: the stated effect."""
    r = np.asarray(r, dtype=float)
    shape = (r - vertex) ** 2
    inner = shape[1:-1].mean()
    c = depth / min(shape[0] - inner, shape[-1] - inner)
    return lambda x: c * (np.asarray(x, dtype=float) - vertex) ** 2


def flat(level: float = 0.0) -> Truth:
    return lambda r: np.full(np.shape(r), float(level))


def saturating(drop: float, rate: float = 2.0) -> Truth:
    """log(1 - drop + drop / (1 + rate r)): falls and flattens, never rises (no optimum). A
    quadratic fitted to it on [0, 3] has its vertex inside the grid."""
    return lambda r: np.log(1.0 - drop + drop / (1.0 + rate * np.asarray(r, dtype=float)))


def edge(vertex: float, curvature: float) -> Truth:
    """A quadratic whose minimum is at (or beyond) an end of the grid."""
    return lambda r: curvature * (np.asarray(r, dtype=float) - vertex) ** 2
