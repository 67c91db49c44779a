"""Tests of icl_stl.theory: the bound's shape, the reference learner's closed forms, the fits."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import stats

from icl_stl.theory import (
    BoundFit,
    LineFit,
    PowerLawFit,
    bound_basis,
    bound_shape,
    covariance_shrinkage,
    decay_verdict,
    fit_bound,
    fit_decay,
    fit_linear_slope,
    fit_power_law,
    geometric_rate,
    mean_drift_fresh,
    mean_drift_plateau,
    mean_drift_reuse,
)

# Six sample sizes spanning two decades, log-spaced.
N6 = np.logspace(2, 4, 6)


def _planted(rng: np.random.Generator, exponent: float, seeds: int, sigma: float = 0.2):
    """y = 3 n^exponent exp(noise): noise iid N(0, sigma^2) per point and seed, shape (6, seeds)."""
    noise = rng.normal(0.0, sigma, size=(N6.size, seeds))
    return 3.0 * N6[:, None] ** exponent * np.exp(noise)


def _sxx(x: np.ndarray) -> float:
    xc = x - x.mean()
    return float(xc @ xc)


# ---------------------------------------------------------------------------------------------
# Bound shape


def test_bound_basis_and_shape_match_hand_values():
    n = np.array([1.0, math.e**4, 10_000.0])
    basis = bound_basis(n)
    assert basis.shape == (3, 3)
    # n = 1: both log terms vanish, n^-1/4 = 1.
    np.testing.assert_allclose(basis[0], [0.0, 0.0, 1.0])
    # n = e^4: log n = 4.
    e4 = math.e**4
    np.testing.assert_allclose(basis[1], [16.0 / e4, 4.0 / math.e**2, 1.0 / math.e], rtol=1e-12)
    c = np.array([0.3, 1.7, 2.5])
    np.testing.assert_allclose(bound_shape(n, *c), basis @ c, rtol=1e-12)
    # Scalar in, float out.
    assert isinstance(bound_shape(100.0, 1.0, 1.0, 1.0), float)
    assert bound_basis(100.0).shape == (1, 3)
    with pytest.raises(ValueError, match="n must be finite and >= 1"):
        bound_basis([0.5, 10.0])


# ---------------------------------------------------------------------------------------------
# Power-law fits: planted exponents


@pytest.mark.parametrize("exponent", [-0.5, -0.25, -1.0])
def test_fit_power_law_recovers_planted_exponent_over_seeds(exponent):
    rng = np.random.default_rng(11)
    sigma, seeds = 0.2, 8
    y = _planted(rng, exponent, seeds, sigma)
    fit = fit_power_law(N6, y)
    assert isinstance(fit, PowerLawFit)
    assert fit.method == "seeds" and fit.n_seeds == seeds and fit.dof == seeds - 1
    assert fit.n_points == 6
    assert fit.ci_low < fit.slope < fit.ci_high
    assert fit.contains(exponent)
    # Width: the true half-width is t_{s-1} sigma / sqrt(Sxx s); the estimate must be within a
    # factor 3 of it (a wrong standard error, e.g. sd instead of sd/sqrt(s), is off by sqrt(8)
    # or more and would usually fail; a CI of zero or infinite width always fails).
    expected_half = stats.t.ppf(0.975, seeds - 1) * sigma / math.sqrt(_sxx(np.log(N6)) * seeds)
    half = (fit.ci_high - fit.ci_low) / 2
    assert expected_half / 3 < half < expected_half * 3
    # Per-seed slopes are the column-wise OLS slopes (independent check with scipy).
    ref = [stats.linregress(np.log(N6), np.log(y[:, j])).slope for j in range(seeds)]
    np.testing.assert_allclose(fit.per_seed_slopes, ref, rtol=1e-10)
    assert fit.slope == pytest.approx(np.mean(ref), rel=1e-12)
    assert fit.prefactor == pytest.approx(3.0, rel=0.3)


@pytest.mark.parametrize("exponent", [-0.5, -0.25, -1.0])
def test_fit_power_law_single_column_uses_regression_interval(exponent):
    rng = np.random.default_rng(5)
    y = _planted(rng, exponent, 1, 0.1)[:, 0]
    fit = fit_power_law(N6, y)
    assert fit.method == "regression" and fit.dof == 4 and fit.per_seed_slopes is None
    ref = stats.linregress(np.log(N6), np.log(y))
    assert fit.slope == pytest.approx(ref.slope, rel=1e-10)
    assert fit.intercept == pytest.approx(ref.intercept, rel=1e-10)
    assert fit.stderr == pytest.approx(ref.stderr, rel=1e-10)
    half = stats.t.ppf(0.975, 4) * ref.stderr
    assert fit.ci_low == pytest.approx(ref.slope - half, rel=1e-10)
    assert fit.ci_high == pytest.approx(ref.slope + half, rel=1e-10)
    assert fit.contains(exponent)
    # A (m, 1) column is the same single-column case.
    assert fit_power_law(N6, y[:, None]).to_dict() == fit.to_dict()


def test_fit_power_law_noiseless_is_exact_and_predicts():
    y = 3.0 * N6**-0.37
    fit = fit_power_law(N6, y)
    assert fit.slope == pytest.approx(-0.37, abs=1e-12)
    assert fit.prefactor == pytest.approx(3.0, rel=1e-12)
    assert fit.ci_high - fit.ci_low == pytest.approx(0.0, abs=1e-10)
    np.testing.assert_allclose(fit.predict([50.0, 5e5]), 3.0 * np.array([50.0, 5e5]) ** -0.37)


def test_fit_level_changes_width():
    rng = np.random.default_rng(3)
    y = _planted(rng, -0.5, 5)
    w95 = fit_power_law(N6, y).ci_high - fit_power_law(N6, y).ci_low
    f99 = fit_power_law(N6, y, level=0.99)
    w99 = f99.ci_high - f99.ci_low
    ratio = stats.t.ppf(0.995, 4) / stats.t.ppf(0.975, 4)
    assert w99 / w95 == pytest.approx(ratio, rel=1e-10)
    assert f99.level == 0.99


@pytest.mark.parametrize("seeds", [4, 1])
def test_interval_has_nominal_coverage(seeds):
    # 300 planted datasets; the 95% interval must contain the true exponent 88-99% of the time.
    # With 4 seeds a normal (z) interval instead of Student-t covers about 85% and fails here; a
    # standard error off by a factor sqrt(seeds) fails in either direction. (The single-column
    # t quantile is also checked exactly against scipy in the single-column test above.)
    rng = np.random.default_rng(2024)
    trials, hits = 300, 0
    for _ in range(trials):
        y = _planted(rng, -0.5, seeds, sigma=0.3)
        hits += fit_power_law(N6, y if seeds > 1 else y[:, 0]).contains(-0.5)
    assert 0.88 <= hits / trials <= 0.99


def test_fit_power_law_rejects_non_positive_values_and_names_them():
    y = 3.0 * N6**-0.5
    y[2] = 0.0
    y[4] = -0.25
    with pytest.raises(ValueError, match=r"non-positive values \[0\.0, -0\.25\]"):
        fit_power_law(N6, y)
    with pytest.raises(ValueError, match="n must be positive"):
        fit_power_law(np.array([0.0, 1, 2, 3, 4, 5]), 3.0 * N6**-0.5)
    ys = np.ones((6, 3))
    ys[1, 2] = -1.0
    with pytest.raises(ValueError, match=r"\[\[1, 2\]\]"):
        fit_power_law(N6, ys)


def test_fit_input_validation():
    with pytest.raises(ValueError, match="shape"):
        fit_power_law(N6, np.ones(5))
    with pytest.raises(ValueError, match="finite"):
        fit_power_law(N6, np.array([1, 2, np.nan, 1, 1, 1.0]))
    with pytest.raises(ValueError, match="at least 3 points"):
        fit_power_law([10.0, 100.0], [1.0, 0.5])
    # Two points are enough with seeds.
    fit = fit_power_law([10.0, 100.0], [[1.0, 1.1], [0.1, 0.12]])
    assert fit.method == "seeds"
    with pytest.raises(ValueError, match="distinct"):
        fit_linear_slope([1.0, 1.0, 1.0], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="level"):
        fit_linear_slope([1.0, 2.0, 3.0], [1.0, 2.0, 3.5], level=1.0)


def test_fit_linear_slope_no_logs():
    rng = np.random.default_rng(9)
    x = np.arange(1.0, 41.0)
    # Negative values are fine here: no logarithm is taken.
    y = -2.0 + 0.03 * x[:, None] + rng.normal(0.0, 0.1, size=(40, 6))
    fit = fit_linear_slope(x, y)
    assert type(fit) is LineFit
    assert fit.contains(0.03)
    assert fit.ci_high - fit.ci_low < 0.02
    assert fit.intercept == pytest.approx(-2.0, abs=0.1)
    exact = fit_linear_slope(x, 1.0 - 0.5 * x)
    assert exact.slope == pytest.approx(-0.5, abs=1e-12)
    np.testing.assert_allclose(exact.predict([0.0, 2.0]), [1.0, 0.0], atol=1e-12)


def test_results_are_json_friendly():
    rng = np.random.default_rng(1)
    fit = fit_power_law(N6, _planted(rng, -0.5, 3))
    bfit = fit_bound(N6, bound_shape(N6, 1.0, 1.0, 1.0))
    for d in (fit.to_dict(), bfit.to_dict(), decay_verdict(fit)):
        text = json.dumps(d)
        assert json.loads(text) == d
    d = fit.to_dict()
    assert isinstance(d["per_seed_slopes"], list) and all(
        type(v) is float for v in d["per_seed_slopes"]
    )
    assert d["prefactor"] == pytest.approx(math.exp(d["intercept"]))
    assert type(bfit.to_dict()["c3"]) is float


# ---------------------------------------------------------------------------------------------
# Bound fits


@pytest.mark.parametrize("coef", [(0.5, 2.0, 1.5), (0.0, 1.0, 2.0), (3.0, 0.0, 0.2)])
@pytest.mark.parametrize("relative", [True, False])
def test_fit_bound_recovers_planted_coefficients(coef, relative):
    n = np.logspace(1, 5, 12)
    y = bound_shape(n, *coef)
    fit = fit_bound(n, y, relative=relative)
    assert isinstance(fit, BoundFit)
    np.testing.assert_allclose(fit.coefficients, coef, rtol=1e-6, atol=1e-9)
    assert fit.residual < 1e-9
    np.testing.assert_allclose(fit.predict(n), y, rtol=1e-6)
    # Seeds as columns: the fit is to the mean over seeds.
    y2 = np.stack([0.9 * y, 1.1 * y], axis=1)
    np.testing.assert_allclose(fit_bound(n, y2, relative=relative).coefficients, coef, rtol=1e-6)


def test_fit_bound_stays_non_negative_when_truth_needs_a_negative_coefficient():
    n = np.logspace(1, 5, 12)
    y = n**-0.25 - 0.5 * np.log(n) / np.sqrt(n)  # positive throughout, but c2 = -0.5
    assert np.all(y > 0)
    for relative in (True, False):
        fit = fit_bound(n, y, relative=relative)
        assert min(fit.coefficients) >= 0.0
        assert min(fit.coefficients) == 0.0  # the constraint is active
        assert fit.residual > 1e-3  # and the shape cannot be matched exactly
    with pytest.raises(ValueError, match="relative weighting"):
        fit_bound(n, -y)
    # Without weighting a negative y is allowed (the fit is simply all zeros or poor).
    assert min(fit_bound(n, -y, relative=False).coefficients) >= 0.0


def test_relative_weighting_favours_large_n():
    # A planted shape plus a constant offset: the unweighted fit is decided by the large values
    # at small n, the relative fit matches the large-n end better in relative terms.
    n = np.logspace(1, 5, 12)
    y = bound_shape(n, 2.0, 0.0, 0.05) + 0.02 * np.exp(-n / 100.0)
    rel = fit_bound(n, y, relative=True)
    abs_ = fit_bound(n, y, relative=False)
    big = n > 1e3
    err_rel = np.abs(rel.predict(n[big]) / y[big] - 1).max()
    err_abs = np.abs(abs_.predict(n[big]) / y[big] - 1).max()
    assert err_rel < err_abs


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


def test_geometric_rate():
    assert geometric_rate(5.0 * 0.9 ** np.arange(10)) == pytest.approx(0.9, rel=1e-12)
    assert geometric_rate([1.0, 2.0, 4.0]) == pytest.approx(2.0, rel=1e-12)
    with pytest.raises(ValueError, match="non-positive"):
        geometric_rate([1.0, 0.0, 0.5])
    with pytest.raises(ValueError, match="at least 2"):
        geometric_rate([1.0])


# ---------------------------------------------------------------------------------------------
# Verdict rule


def _seed_data(slope_offsets: list[float], mean_slope: float) -> np.ndarray:
    """Noiseless per-seed power laws whose exponents are mean_slope + offsets (mean offset 0)."""
    slopes = mean_slope + np.asarray(slope_offsets)
    return 2.0 * N6[:, None] ** slopes[None, :]


def test_decay_verdict_confirmed():
    fit = fit_power_law(N6, _seed_data([-0.05, 0.0, 0.05], -0.5))
    v = decay_verdict(fit, ns=N6)
    assert v["verdict"] == "confirmed" and v["reading"].startswith("consistent with the bound")
    assert v["at_least_as_fast"] and v["consistent"] and not v["significantly_slower"]
    assert v["significantly_faster"]
    assert v["threshold"] == -0.25
    assert v["slope"] == pytest.approx(-0.5)
    assert v["ci"] == [fit.ci_low, fit.ci_high]


def test_decay_verdict_inconclusive():
    # Mean exponent -0.2 (slower than -1/4), but seeds disagree widely: ci_low < -1/4.
    fit = fit_power_law(N6, _seed_data([-0.1, 0.0, 0.1], -0.2))
    assert fit.slope > -0.25 and fit.ci_low < -0.25
    v = decay_verdict(fit)
    assert v["verdict"] == "inconclusive" and v["reading"].startswith("cannot tell")
    assert not v["at_least_as_fast"] and not v["consistent"] and not v["significantly_slower"]


def test_decay_slower_than_the_bound_is_never_refuted():
    """An upper bound with unknown constants cannot be refuted by a slope on a finite range."""
    fit = fit_power_law(N6, _seed_data([-0.01, 0.0, 0.01], -0.1))
    assert fit.ci_low > -0.25
    v = decay_verdict(fit, ns=N6)
    assert v["verdict"] == "inconclusive"
    assert v["reading"] == "decays slower than n^-0.25 on [100, 10000]"
    assert not v["at_least_as_fast"] and not v["consistent"] and v["significantly_slower"]
    # The same data against a slower threshold is consistent with it.
    assert decay_verdict(fit, exponent=-0.05)["verdict"] == "confirmed"


def test_decay_verdict_boundaries():
    def fake(slope, lo, hi):
        return LineFit(slope, 0.0, lo, hi, 0.1, 6, 3, 2, 0.95, "seeds", None)

    # the point estimate no longer decides: a slope of exactly -1/4 is not confirmed
    assert decay_verdict(fake(-0.25, -0.3, -0.2))["verdict"] == "inconclusive"
    assert decay_verdict(fake(-0.4, -0.5, -0.25))["verdict"] == "inconclusive"  # hi == thr
    assert decay_verdict(fake(-0.4, -0.5, -0.2501))["verdict"] == "confirmed"
    assert not decay_verdict(fake(-0.2, -0.25, -0.15))["significantly_slower"]  # lo == thr
    assert decay_verdict(fake(-0.2, -0.2499, -0.15))["significantly_slower"]
    assert {decay_verdict(fake(x, x - 0.1, x + 0.1))["verdict"]
            for x in np.linspace(-1, 1, 41)} == {"confirmed", "inconclusive"}


# ---------------------------------------------------------------------------------------------
# The decay fit y = E_inf + A n^b


@pytest.mark.parametrize("b", [-1.0, -0.5, -0.25, -0.08])
def test_fit_decay_recovers_a_planted_curve_and_keeps_non_positive_values(b):
    n = np.logspace(1, 3, 6)
    for floor in (0.1, 0.0, -3.0 * n[-1] ** b):  # the last: y < 0 at the largest n
        y = floor + 2.0 * n**b
        fit = fit_decay(n, y)
        assert fit["slope"] == pytest.approx(b, abs=1e-9)
        assert fit["floor"] == pytest.approx(floor, abs=1e-9)
        assert fit["amplitude"] == pytest.approx(2.0, rel=1e-8)
        known = fit_decay(n, y, floor=floor)  # E_inf given (an infinite-data run)
        assert known["slope"] == pytest.approx(b, abs=1e-9)
    assert y[-1] < 0  # kept, not dropped


def test_fit_decay_is_vectorised_weighted_and_reads_no_decay_as_zero():
    n = np.logspace(1, 3, 6)
    rng = np.random.default_rng(0)
    curves = 0.05 + n ** np.array([-0.3, -0.6, -0.9])[:, None, None] * \
        (1 + 0.01 * rng.normal(size=(3, 4, 6)))  # (3, 4, 6): leading axes kept
    fit = fit_decay(n, curves, weights=np.ones(6))
    assert fit["slope"].shape == (3, 4)
    np.testing.assert_allclose(fit["slope"].mean(1), [-0.3, -0.6, -0.9], atol=0.05)
    flat = fit_decay(n, np.stack([np.full(6, 0.3), 0.3 + 0.01 * np.log(n)]))  # rising: A < 0
    np.testing.assert_array_equal(flat["slope"], [0.0, 0.0])
    np.testing.assert_allclose(flat["amplitude"], [0.0, 0.0])
    # a weight of zero removes a point
    y = 0.1 + n**-0.5
    y_bad = y.copy()
    y_bad[0] = 50.0
    w = np.array([0.0, 1, 1, 1, 1, 1])
    assert fit_decay(n, y_bad, weights=w)["slope"] == pytest.approx(-0.5, abs=1e-9)
    with pytest.raises(ValueError, match="one value per n"):
        fit_decay(n, y[:5])
    with pytest.raises(ValueError, match="finite"):
        fit_decay(n, np.full(6, np.nan))


def test_fit_bound_with_weights_keeps_non_positive_values():
    n = np.logspace(1, 4, 8)
    y = bound_shape(n, 0.5, 1.0, 0.2)
    fit = fit_bound(n, y, weights=np.ones(8))
    np.testing.assert_allclose(fit.coefficients, (0.5, 1.0, 0.2), rtol=1e-6, atol=1e-9)
    shifted = fit_bound(n, y - y.min() * 1.5, weights=1 / y**2)  # some values negative
    assert min(shifted.coefficients) >= 0
    with pytest.raises(ValueError, match="weights"):
        fit_bound(n, y, weights=np.ones(3))


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
