"""Simulated curves of log excess risk against the real weight v with known truths: the
calibration of P10 (version 2, provisional).

A seed's log excess risk at weight v_j is drawn as truth(v_j) + u_seed + e_{seed, j}
(`simulate_p5.draw`: u ~ N(0, tau^2) a seed's level, e ~ N(0, sigma^2) one retrain's noise).
For the direction test a seed's fresh and reused curves are drawn with the same u (the seeds are
paired: one S_0, one initialisation stream) and their own e. The rules are applied by the very
functions the report calls (`p10_core`, `p10_direction`) on arrays of draws.

The truths the reference learner gives (`reference_truth`): kappa x log(E(v) / min E) with E the
closed form of icl_stl/theory/real_weight.py at a generation; kappa < 1 says how much of the
reference learner's curve the transformer's excess risk shows (its generalisation error
dilutes the prior's drift), and the stated effect is a dip whose smaller end contrast is the
depth margin (`simulate_p5.dip` on the weight grid).
"""

from __future__ import annotations

import numpy as np

from icl_stl.report.predictions.p10_real_weight import p10_core, p10_direction
from icl_stl.report.rules import ReportConfig
from icl_stl.report.simulate_p5 import Noise, Truth, draw
from icl_stl.report.stats import rates
from icl_stl.theory.real_weight import weighted_drift, weighted_plateau

__all__ = ["Noise", "direction_rates", "p10_rates", "reference_truth"]


def reference_truth(real_fraction: float, real_source: str, kappa: float = 1.0,
                    generation: int | None = None) -> Truth:
    """kappa x log of the reference learner's error against v, relative to its minimum over
    [0.05, 1] (generation None: the plateau). Weights below 0.05 are not on any grid."""
    def error(v: float) -> float:
        if generation is None:
            return weighted_plateau(1, 1, real_fraction, v, 1.0, real_source)
        return float(weighted_drift(generation, 1, 1, real_fraction, v, 1.0, real_source)[-1])

    floor = min(error(v) for v in np.linspace(0.05, 1.0, 951))
    return lambda v: kappa * np.log(np.array([error(float(x)) for x in np.ravel(v)])
                                    .reshape(np.shape(v)) / floor)


def p10_rates(truth: Truth, v: np.ndarray, seeds: int, noise: Noise, cfg: ReportConfig,
              draws: int = 20_000, seed: int = 0) -> dict[str, float]:
    """Share of each verdict of the interior-optimum rule (fresh data) over `draws` groups."""
    y = draw(truth, v, seeds, noise, draws, np.random.default_rng(seed))
    return rates(p10_core(y, np.asarray(v, dtype=float), cfg)["code"])


def direction_rates(fresh: Truth, reused: Truth, v: np.ndarray, seeds: int, noise: Noise,
                    cfg: ReportConfig, draws: int = 20_000, seed: int = 0) -> dict[str, float]:
    """Share of each verdict of the direction test over `draws` paired groups."""
    rng = np.random.default_rng(seed)
    v = np.asarray(v, dtype=float)
    level = rng.normal(0.0, noise.tau, size=(draws, seeds, 1))
    retrain = Noise(noise.sigma, 0.0)
    y_fresh = level + draw(fresh, v, seeds, retrain, draws, rng)
    y_reused = level + draw(reused, v, seeds, retrain, draws, rng)
    return rates(p10_direction(y_fresh, y_reused, cfg)["code"])
