"""Simulated filter x labeller interactions with known truths: the calibration of P6, version 2.

`p6_rates` draws the excess-risk interaction alone (the rule's first part); `p6_joint_rates`
draws the three interactions of the rule (excess risk, calibration, spread), independently, each
with its own truth and noise, and applies the joint rule.

A seed's interaction at generation g is the difference of two log contrasts from independent
runs (the filtered pair and the unfiltered pair), each drawn as in `simulate_v2` with the P1/P2
pilot's noise (docs/results/pilot-v2/sizing.json: sigma per generation, tau per seed), so the
interaction has sqrt(2) times each (`interaction_noise`). P6's own pilot (conf/experiment/p6)
replaces these numbers before any confirmatory run. The rule is applied by the very function the
report calls (`p6_matched_core`).
"""

from __future__ import annotations

import math

import numpy as np

from icl_stl.report.predictions.p6_matched_filters import p6_matched_core
from icl_stl.report.rules import ReportConfig
from icl_stl.report.simulate_v2 import Noise, Truth, draw
from icl_stl.report.stats import rates

# The P1/P2 pilot's noise of one log contrast (docs/results/pilot-v2/sizing.json).
PILOT_SIGMA, PILOT_TAU = 0.271, 0.059


def interaction_noise(sigma: float = PILOT_SIGMA, tau: float = PILOT_TAU) -> Noise:
    """The noise of a difference of two independent log contrasts."""
    return Noise(math.sqrt(2.0) * sigma, math.sqrt(2.0) * tau)


def p6_rates(truth: Truth, seeds: int, noise: Noise, cfg: ReportConfig, draws: int = 20_000,
             seed: int = 0) -> dict[str, float]:
    """Share of each P6 verdict over `draws` simulated groups at horizon cfg.v2_horizon."""
    gens = np.arange(1, cfg.v2_horizon + 1)
    interaction = draw(truth, gens, seeds, noise, draws, np.random.default_rng(seed))
    return rates(p6_matched_core(interaction, cfg)["code"])


def removes_collapse(beta: float = 0.259) -> Truth:
    """A filter that removes the pilot's collapse entirely: -log(1 + beta g)."""
    return lambda g: -np.log1p(beta * g)


def p6_joint_rates(truths: tuple[Truth, Truth, Truth], noises: tuple[Noise, Noise, Noise],
                   seeds: int, cfg: ReportConfig, draws: int = 20_000,
                   seed: int = 0) -> dict[str, float]:
    """Share of each joint P6 verdict: (excess, calibration, spread) truths and noises."""
    gens = np.arange(1, cfg.v2_horizon + 1)
    rng = np.random.default_rng(seed)
    excess, calibration, spread = (draw(t, gens, seeds, n, draws, rng)
                                   for t, n in zip(truths, noises))
    return rates(p6_matched_core(excess, cfg, calibration, spread)["code"])
