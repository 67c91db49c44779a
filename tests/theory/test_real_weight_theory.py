"""The reference learner with a real weight (icl_stl/theory/real_weight.py, P10): the closed
forms' limits and optima, and each form against an independent Monte Carlo of the weighted
mean estimator (plain numpy, no loop code; tests/loop/test_real_weight_loop.py runs the loop)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from icl_stl.theory.real_weight import (
    GOLDEN_WEIGHT,
    optimal_real_weight,
    weighted_drift,
    weighted_plateau,
)
from icl_stl.theory.reference import mean_drift_fresh, mean_drift_reuse


def he_xu_cheng(v: float) -> float:
    """He, Xu and Cheng's error of a mean from fresh real and synthetic samples (JRSS-B)."""
    return (v * v + (1 - v) ** 2) / (1 - (1 - v) ** 2)


# ---------------------------------------------------------------------------------------------
# Closed forms


@pytest.mark.parametrize("lam", [0.25, 0.5, 0.75])
@pytest.mark.parametrize("source", ["fresh", "reuse"])
def test_weight_equal_to_lambda_is_the_unweighted_loop(lam, source):
    weighted = weighted_drift(9, 3, 40, lam, lam, 1.5, source)
    plain = (mean_drift_fresh if source == "fresh" else mean_drift_reuse)(9, 3, 40, lam, 1.5)
    np.testing.assert_allclose(weighted, plain, rtol=1e-12)


@pytest.mark.parametrize("source", ["fresh", "reuse"])
@pytest.mark.parametrize("v", [0.0, 0.3, 0.618, 1.0])
def test_drift_reaches_its_plateau_and_scales_with_d_w_var_over_n(source, v):
    drift = weighted_drift(600, 2, 50, 0.5, v, 1.0, source)
    assert drift[0] == pytest.approx(2 / 50)  # generation 0: S_0 alone, whatever the weight
    plateau = weighted_plateau(2, 50, 0.5, v, 1.0, source)
    if v == 0:
        assert plateau == math.inf
        assert drift[-1] > 100 * drift[0]  # no real weight: collapse
    else:
        assert drift[-1] == pytest.approx(plateau, rel=1e-9)
    np.testing.assert_allclose(weighted_drift(5, 4, 10, 0.5, v, 2.0, source),
                               weighted_drift(5, 1, 1, 0.5, v, 1.0, source) * 4 * 2.0 / 10)


def test_fresh_plateau_at_half_is_he_xu_cheng_with_optimum_one_over_phi():
    for v in (0.2, 0.5, GOLDEN_WEIGHT, 0.9, 1.0):
        assert weighted_plateau(1, 1, 0.5, v) == pytest.approx(2 * he_xu_cheng(v), rel=1e-12)
    assert GOLDEN_WEIGHT == pytest.approx(0.6180339887, abs=1e-9)
    assert optimal_real_weight(0.5) == pytest.approx(GOLDEN_WEIGHT, abs=1e-6)
    # flat near the minimum: V(0.5) = V(0.75) = 1.079 V*
    best = weighted_plateau(1, 1, 0.5, GOLDEN_WEIGHT)
    assert weighted_plateau(1, 1, 0.5, 0.5) / best == pytest.approx(1.079, abs=5e-4)
    assert weighted_plateau(1, 1, 0.5, 0.75) / best == pytest.approx(1.079, abs=5e-4)


@pytest.mark.parametrize(("lam", "want"), [(0.25, 0.434), (0.75, 0.791)])
def test_fresh_optimum_moves_with_lambda(lam, want):
    assert optimal_real_weight(lam) == pytest.approx(want, abs=5e-4)


def test_fresh_optimum_at_finite_generations_is_interior_near_0_6():
    for g in range(2, 9):
        v = optimal_real_weight(0.5, "fresh", g)
        assert 0.55 < v < 0.70, (g, v)


def test_reused_real_data_has_no_interior_optimum_from_generation_2():
    for g in (2, 3, 5, 8, None):
        assert optimal_real_weight(0.5, "reuse", g) == 1.0
    assert optimal_real_weight(0.75, "reuse", 2) == 1.0
    # at a small lambda S_0's other prompts, carried by a small real weight through mu_0, beat
    # the few reused ones for a few generations (a second local minimum near v = lambda), until
    # a^G has decayed: at lambda = 0.25 the optimum is interior up to generation 4, then 1
    assert optimal_real_weight(0.25, "reuse", 4) == pytest.approx(0.279, abs=2e-3)
    for g in (5, 8, None):
        assert optimal_real_weight(0.25, "reuse", g) == 1.0
    # generation 1 still gains from a small synthetic weight (S_0's other prompts through mu_0)
    assert optimal_real_weight(0.5, "reuse", 1) < 1.0
    # in units of d / n: 2.00 at v = 1 against 2.38 at v = 0.6 (the plateau)
    assert weighted_plateau(1, 1, 0.5, 1.0, 1.0, "reuse") == pytest.approx(2.0)
    assert weighted_plateau(1, 1, 0.5, 0.6, 1.0, "reuse") == pytest.approx(2.381, abs=1e-3)


def test_validation_names_the_argument():
    with pytest.raises(ValueError, match="real_weight must be in"):
        weighted_drift(3, 2, 10, 0.5, 1.5)
    with pytest.raises(ValueError, match="needs a real part"):
        weighted_drift(3, 2, 10, 0.0, 0.5)
    with pytest.raises(ValueError, match="needs a synthetic part"):
        weighted_plateau(2, 10, 1.0, 0.5)
    with pytest.raises(ValueError, match="real_source"):
        weighted_drift(3, 2, 10, 0.5, 0.5, real_source="accumulate")
    with pytest.raises(ValueError, match="real_fraction must be in"):
        optimal_real_weight(1.0)


# ---------------------------------------------------------------------------------------------
# Monte Carlo of the weighted mean estimator


def simulate(lam: float, weights: list[float], source: str, reps: int, d: int, n: int,
             generations: int, rng: np.random.Generator) -> np.ndarray:
    """(weights, generations + 1, reps) squared errors ||mu_i - mu*||^2 (mu* = 0, w_var = 1) of
    mu_i = v mean(real w) + (1 - v) mean(synthetic w), synthetic w ~ N(mu_{i-1}, I). Every
    weight sees the same draws (common random numbers: differences between weights are sharp)."""
    n_real = round(lam * n)
    s0 = rng.normal(size=(reps, n, d))
    fresh = [rng.normal(size=(reps, n_real, d)) for _ in range(generations)]
    noise = [rng.normal(size=(reps, n - n_real, d)) for _ in range(generations)]
    out = []
    for v in weights:
        mu = s0.mean(1)
        errors = [(mu ** 2).sum(1)]
        for i in range(generations):
            real = fresh[i] if source == "fresh" else s0[:, :n_real]
            synthetic = mu[:, None, :] + noise[i]
            mu = v * real.mean(1) + (1 - v) * synthetic.mean(1)
            errors.append((mu ** 2).sum(1))
        out.append(errors)
    return np.array(out)


@pytest.mark.parametrize("source", ["fresh", "reuse"])
@pytest.mark.parametrize("lam", [0.25, 0.5])
def test_closed_forms_match_monte_carlo(source, lam):
    rng = np.random.default_rng(30 + int(100 * lam) + (source == "fresh"))
    reps, d, n, gens = 20000, 2, 20, 6
    weights = [0.0, 0.3, 0.618, 0.9, 1.0]
    measured = simulate(lam, weights, source, reps, d, n, gens, rng)
    for v, sims in zip(weights, measured):
        mean, se = sims.mean(1), sims.std(1, ddof=1) / math.sqrt(reps)
        theory = weighted_drift(gens, d, n, lam, v, 1.0, source)
        assert np.all(np.abs(mean - theory) < 4 * se), (v, mean, theory, se)


def test_monte_carlo_optimum_interior_with_fresh_data_and_at_one_with_reused():
    """The argument of P10 read off the simulation itself, at generation 6, lambda = 0.5 (paired
    differences between weights, common random numbers)."""
    rng = np.random.default_rng(2026)
    reps, d, n, gens = 20000, 2, 20, 6
    weights = [0.4, 0.5, 0.6, 0.7, 0.8, 1.0]
    for source, best in (("fresh", 0.6), ("reuse", 1.0)):
        last = simulate(0.5, weights, source, reps, d, n, gens, rng)[:, -1] / (d / n)
        j = weights.index(best)
        for i, v in enumerate(weights):
            if i == j:
                continue
            diff = last[i] - last[j]
            assert diff.mean() > 3 * diff.std(ddof=1) / math.sqrt(reps), (source, v)
    reused = simulate(0.5, [0.6, 1.0], "reuse", reps, d, n, 40, rng)[:, -1].mean(1) / (d / n)
    assert reused[1] == pytest.approx(2.00, abs=0.06)
    assert reused[0] == pytest.approx(2.38, abs=0.07)
