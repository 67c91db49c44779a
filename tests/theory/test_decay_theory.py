"""The decay of risk with n (icl_stl/theory/decay.py): the verdict rule on prediction 4 and
the fit y = E_inf + A n^b."""

from __future__ import annotations

import numpy as np
import pytest

from icl_stl.theory.decay import decay_verdict, fit_decay
from icl_stl.theory.fits import LineFit, fit_power_law

# Six sample sizes spanning two decades, log-spaced.
N6 = np.logspace(2, 4, 6)


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
