"""Closed forms of the reference learner (icl_stl/theory/reference.py): their limits, and each
against an independent Monte-Carlo simulation of the learner's recursion (plain numpy, no loop
code; tests/loop/test_reference_learner.py runs the loop itself)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from icl_stl.config.schedules import RealSchedule
from icl_stl.theory.fits import geometric_rate
from icl_stl.theory.reference import (
    covariance_shrinkage,
    mean_drift,
    mean_drift_fresh,
    mean_drift_plateau,
    mean_drift_reuse,
    mean_drift_scheduled,
)

# ---------------------------------------------------------------------------------------------
# Closed forms


def test_mean_drift_without_real_data_grows_linearly():
    d, n = 20, 64
    drift = mean_drift_fresh(12, d, n, 0.0)
    assert drift.shape == (13,)
    np.testing.assert_array_equal(drift, (np.arange(13) + 1) * d / n)
    assert mean_drift_plateau(d, n, 0.0) == math.inf
    np.testing.assert_allclose(mean_drift_fresh(3, d, n, 0.0, w_var=2.5), 2.5 * drift[:4])


@pytest.mark.parametrize("lam", [0.1, 0.25, 0.5, 1.0])
def test_mean_drift_with_real_data_converges_to_plateau(lam):
    d, n = 20, 64
    drift = mean_drift_fresh(400, d, n, lam)
    plateau = mean_drift_plateau(d, n, lam)
    assert drift[0] == pytest.approx(d / n)
    assert np.all(np.diff(drift) >= -1e-15)  # rises monotonically from d/n
    assert np.all(drift <= plateau * (1 + 1e-12))
    assert drift[-1] == pytest.approx(plateau, rel=1e-10)
    assert plateau == pytest.approx((d / n) / (1 - (1 - lam) ** 2))
    # Recursion holds step by step.
    np.testing.assert_allclose(drift[1:], (1 - lam) ** 2 * drift[:-1] + d / n, rtol=1e-12)


def test_larger_real_fraction_gives_lower_plateau():
    plateaus = [mean_drift_plateau(10, 100, lam) for lam in (0.05, 0.1, 0.3, 0.9)]
    assert all(a > b for a, b in zip(plateaus, plateaus[1:]))


def test_closed_form_validation():
    with pytest.raises(ValueError, match="real_fraction"):
        mean_drift_fresh(3, 2, 10, 1.5)
    with pytest.raises(ValueError, match="generations"):
        mean_drift_fresh(-1, 2, 10, 0.5)
    with pytest.raises(ValueError, match="n must be an integer >= 2"):
        covariance_shrinkage(3, 1)


def test_covariance_shrinkage_formula():
    n = 7
    shrink = covariance_shrinkage(5, n)
    np.testing.assert_allclose(shrink, [((n - 1) / n) ** (i + 1) for i in range(6)], rtol=1e-14)
    assert geometric_rate(shrink) == pytest.approx((n - 1) / n, rel=1e-12)


def test_mean_drift_matches_monte_carlo_of_reference_learner():
    """Simulate the Gaussian-prior loop directly and compare with the closed form.

    Each prompt has k = d noiseless pairs, so its task vector is recovered exactly by solving
    X w = y; the learner's mean is the average of the n recovered w's. Generation i uses
    lambda n fresh real prompts (w ~ N(mu*, I)) and (1 - lambda) n synthetic prompts whose w is
    drawn from N(mu_{i-1}, I).
    """
    rng = np.random.default_rng(123)
    reps, d, n, gens = 3000, 4, 20, 8
    mu_star = rng.normal(size=d)

    def recovered_mean(w):  # w: (reps, count, d) -> mean of the w's recovered from prompts
        x = rng.normal(size=(*w.shape[:2], d, d))
        y = np.einsum("rckd,rcd->rck", x, w)
        return np.linalg.solve(x, y[..., None])[..., 0].mean(axis=1)

    for lam in (0.0, 0.25):
        n_real = round(lam * n)
        assert n_real == lam * n
        mu = recovered_mean(mu_star + rng.normal(size=(reps, n, d)))
        measured = [((mu - mu_star) ** 2).sum(axis=1)]
        for _ in range(gens):
            real = mu_star + rng.normal(size=(reps, n_real, d))
            synth = mu[:, None, :] + rng.normal(size=(reps, n - n_real, d))
            mu = recovered_mean(np.concatenate([real, synth], axis=1))
            measured.append(((mu - mu_star) ** 2).sum(axis=1))
        measured = np.array(measured)  # (gens + 1, reps)
        mean = measured.mean(axis=1)
        se = measured.std(axis=1, ddof=1) / math.sqrt(reps)
        theory = mean_drift_fresh(gens, d, n, lam)
        assert np.all(np.abs(mean - theory) < 4 * se), (lam, mean, theory, se)


def test_covariance_shrinkage_matches_monte_carlo():
    """lambda = 0, mean and covariance re-estimated by maximum likelihood each generation."""
    rng = np.random.default_rng(7)
    reps, d, n, gens = 20000, 2, 6, 6
    sigma_star = np.array([[2.0, 0.6], [0.6, 1.0]])
    chol_star = np.linalg.cholesky(sigma_star)

    def mle(w):
        mu = w.mean(axis=1)
        c = w - mu[:, None, :]
        return mu, np.einsum("rni,rnj->rij", c, c) / w.shape[1]

    mu, sigma = mle(rng.normal(size=(reps, n, d)) @ chol_star.T)
    ratios = [np.trace(sigma, axis1=1, axis2=2) / np.trace(sigma_star)]
    for _ in range(gens):
        chol = np.linalg.cholesky(sigma)
        z = rng.normal(size=(reps, n, d))
        mu, sigma = mle(mu[:, None, :] + np.einsum("rij,rnj->rni", chol, z))
        ratios.append(np.trace(sigma, axis1=1, axis2=2) / np.trace(sigma_star))
    ratios = np.array(ratios)
    mean = ratios.mean(axis=1)
    se = ratios.std(axis=1, ddof=1) / math.sqrt(reps)
    theory = covariance_shrinkage(gens, n)
    assert np.all(np.abs(mean - theory) < 4 * se), (mean, theory, se)
    assert geometric_rate(mean) == pytest.approx((n - 1) / n, abs=0.01)


# ---------------------------------------------------------------------------------------------
# The reused-real-data closed form


def test_mean_drift_reuse_formula_limits_and_validation():
    d, n = 4, 40
    for lam in (0.25, 0.5, 0.75):
        drift = mean_drift_reuse(400, d, n, lam)
        assert drift[0] == pytest.approx(d / n)  # generation 0: the mean of S_0
        plateau = d / (lam * n) + (1 - lam) * d / (n * lam * (2 - lam))
        assert drift[-1] == pytest.approx(plateau, rel=1e-12)
        assert drift[-1] > mean_drift_plateau(d, n, lam)  # reuse never averages out
    # about twice the fresh-data plateau at lambda = 0.5
    ratio = mean_drift_reuse(400, d, n, 0.5)[-1] / mean_drift_plateau(d, n, 0.5)
    assert ratio == pytest.approx(2.0, abs=0.1)
    np.testing.assert_allclose(mean_drift_reuse(3, d, n, 1.0), d / n)
    np.testing.assert_allclose(mean_drift_reuse(3, d, n, 0.5, w_var=2.0),
                               2.0 * mean_drift_reuse(3, d, n, 0.5))
    with pytest.raises(ValueError, match="mean_drift_fresh"):
        mean_drift_reuse(3, d, n, 0.0)


def test_mean_drift_reuse_matches_monte_carlo():
    """An independent simulation: the same lambda n prompts of S_0 every generation, the rest
    drawn from N(mu_{i-1}, I); task vectors recovered exactly from k = d noiseless pairs."""
    rng = np.random.default_rng(11)
    reps, d, n, gens = 20000, 3, 20, 6
    for lam in (0.25, 0.5):
        n_real = round(lam * n)
        w0 = rng.normal(size=(reps, n, d))  # mu* = 0
        mu = w0.mean(1)
        measured = [(mu**2).sum(1)]
        for _ in range(gens):
            synth = mu[:, None, :] + rng.normal(size=(reps, n - n_real, d))
            mu = np.concatenate([w0[:, :n_real], synth], axis=1).mean(1)
            measured.append((mu**2).sum(1))
        measured = np.array(measured)
        se = measured.std(1, ddof=1) / math.sqrt(reps)
        theory = mean_drift_reuse(gens, d, n, lam)
        assert np.all(np.abs(measured.mean(1) - theory) < 4 * se), (lam, measured.mean(1), theory)
        fresh = mean_drift_fresh(gens, d, n, lam)
        assert np.abs(measured.mean(1)[-1] - fresh[-1]) > 20 * se[-1]  # the forms differ


# ---------------------------------------------------------------------------------------------
# The form for a real source, and under a real-data schedule


@pytest.mark.parametrize("lam", [0.0, 0.1, 0.5, 1.0])
def test_mean_drift_is_the_form_of_the_real_source(lam):
    """Reused real data at lambda = 0 reuses nothing: the fresh-data form's linear growth."""
    reused = mean_drift(6, 2, 100, lam, 1.0)
    want = mean_drift_fresh(6, 2, 100, 0.0) if lam == 0 else mean_drift_reuse(6, 2, 100, lam)
    np.testing.assert_array_equal(reused, want)
    assert reused.shape == (7,)
    np.testing.assert_array_equal(mean_drift(6, 2, 100, lam, 1.0, real_source="fresh"),
                                  mean_drift_fresh(6, 2, 100, lam))
    with pytest.raises(ValueError, match="real_source"):
        mean_drift(6, 2, 100, lam, real_source="accumulate")


def test_mean_drift_scheduled_matches_monte_carlo_and_limits():
    """The closed form against a Monte Carlo of the reference learner's mean recursion, and its
    limits: constant lambda is THEORY.md's form, a floor > 0 reaches that floor's plateau, a
    floor of 0 grows by d w_var / n per generation."""
    d, n, generations = 3, 10, 8
    decaying = RealSchedule("exponential", 0.8, 0.7, 0.0).fractions(generations)
    rng = np.random.default_rng(0)
    seeds = 40000
    mu = rng.standard_normal((seeds, n, d)).mean(1)
    sims = [np.sum(mu ** 2, -1)]
    for lam in decaying[1:]:
        n_real = round(lam * n)  # the Monte Carlo needs whole counts: compare those
        real = rng.standard_normal((seeds, n_real, d)).sum(1)
        syn = (mu[:, None, :] + rng.standard_normal((seeds, n - n_real, d))).sum(1)
        mu = (real + syn) / n
        sims.append(np.sum(mu ** 2, -1))
    sims = np.stack(sims)
    rounded = [1.0] + [round(f * n) / n for f in decaying[1:]]
    exact = np.array(mean_drift_scheduled(rounded, d, n))
    se = sims.std(1, ddof=1) / math.sqrt(seeds)
    assert np.all(np.abs(sims.mean(1) - exact) < 4 * se)
    unrounded = np.array(mean_drift_scheduled(decaying, d, n))
    assert np.any(np.abs(sims.mean(1) - unrounded) > 4 * se)  # the check is sharp

    constant = RealSchedule("constant", 0.5).fractions(generations)
    want = mean_drift_fresh(generations, d, n, 0.5)
    assert mean_drift_scheduled(constant, d, n) == pytest.approx(list(want))
    floored = mean_drift_scheduled(RealSchedule("linear", 0.9, 0.2, 0.25).fractions(60), d, n)
    assert floored[-1] == pytest.approx(mean_drift_plateau(d, n, 0.25), rel=1e-9)
    collapsing = mean_drift_scheduled(RealSchedule("linear", 0.9, 0.2, 0.0).fractions(60), d, n)
    assert collapsing[-1] - collapsing[-2] == pytest.approx(d / n)
    with pytest.raises(ValueError, match="fractions"):
        mean_drift_scheduled([], d, n)
