"""Simulated dose slopes with known truths: the calibration of P3, version 2.

A seed's chaos-subtracted dose slope (n gamma^2) at generation i and lambda is drawn as

    beta_0 R_lambda(i) + u_seed + e_{seed, lambda, i},   u ~ N(0, tau^2),  e ~ N(0, sigma^2),

with R_lambda(0) = 1 (generation 0 is shared by both lambdas, one draw per seed), sigma the
retrain-to-retrain noise of one slope (from-scratch generations are independent retrains, and
the chaos subtraction leaves the noise of three squared distances) and tau a seed's persistent
part (its S_0 and replaced prompts), both from the pilot. The rule is applied by the very
function the report calls (`p3_dose_response.p3v2_codes`) on arrays of draws.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from icl_stl.report.predictions.p3_dose_response import p3v2_codes
from icl_stl.report.rules import ReportConfig
from icl_stl.report.stats import CODES

Ratio = Callable[[np.ndarray], np.ndarray]  # generations 1..G -> gamma_i^2 / gamma_0^2


@dataclass(frozen=True)
class SlopeNoise:
    """The pilot's noise of one dose slope, in units of the mean generation-0 slope."""

    sigma: float
    tau: float = 0.0


def draw_slopes(beta0: float, ratio_zero: Ratio, ratio_half: Ratio, generations: int,
                seeds: int, noise: SlopeNoise, draws: int, rng: np.random.Generator
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(b0 (draws, seeds), b at lambda 0 and at 0.5 (draws, seeds, generations))."""
    g = np.arange(1, generations + 1, dtype=float)
    u = rng.normal(0.0, noise.tau, size=(draws, seeds, 1))
    b0 = beta0 + u[..., 0] + rng.normal(0.0, noise.sigma, size=(draws, seeds))

    def arm(ratio: Ratio) -> np.ndarray:
        return beta0 * ratio(g) + u + rng.normal(0.0, noise.sigma, size=(draws, seeds, g.size))

    return b0, arm(ratio_zero), arm(ratio_half)


def p3_rates(beta0: float, ratio_zero: Ratio, ratio_half: Ratio, seeds: int, noise: SlopeNoise,
             cfg: ReportConfig, draws: int = 20_000, seed: int = 0) -> dict[str, float]:
    """Share of each verdict (and "not applicable": no signal) over simulated groups."""
    b0, bz, bh = draw_slopes(beta0, ratio_zero, ratio_half, cfg.v2_p3_horizon, seeds, noise,
                             draws, np.random.default_rng(seed))
    codes = p3v2_codes(b0, bz, bh, cfg)
    out = {name: float(np.mean(codes == code)) for code, name in CODES.items()}
    out["not applicable"] = float(np.mean(codes == -1))
    return out


def flat(level: float = 1.0) -> Ratio:
    """gamma_i^2 / gamma_0^2 = level at every generation."""
    return lambda g: np.full(g.shape, float(level))


def linear(per_generation: float) -> Ratio:
    """1 + per_generation x i: an effect that compounds (the bound's shape at lambda = 0)."""
    return lambda g: 1.0 + per_generation * g


def reused_reference(lam: float) -> Ratio:
    """The reference learner with its real part reused from S_0: a replaced prompt that is
    reused weighs (1 - a^(i+1)) / lambda, one that is not a^(i+1) / (1 - lambda), a = 1 - lambda,
    so E gamma_i^2 / gamma_0^2 = (1 - a^(i+1))^2 / lambda + a^(2(i+1)) / (1 - lambda); 1 at
    lambda = 0 (no real data, the loop keeps S_0's mean)."""
    if lam <= 0.0:
        return flat(1.0)
    a = 1.0 - lam
    return lambda g: (1.0 - a ** (g + 1.0)) ** 2 / lam + a ** (2.0 * (g + 1.0)) / (1.0 - lam)
