"""Closed forms of the exactly solvable reference learner (docs/THEORY.md, section 6).

The learner (`icl_stl.loop.learners.reference.GaussianPriorLearner`) fits the task prior: from
every training prompt it reads off the task vector w (exactly, when k >= d and the labels are
noiseless), estimates the prior's mean mu_i as the average of the n w's (and, optionally, its
covariance Sigma_i by maximum likelihood), and draws the next generation's synthetic tasks from
N(mu_i, Sigma_i). The true prior is N(mu*, Sigma*) with Sigma* = w_var I. The forms below give
exact expectations against which the loop's machinery is checked, independent of any network:

- :func:`mean_drift_fresh`, :func:`mean_drift_plateau`: E||mu_i - mu*||^2 with fresh real data
  each generation at a constant lambda, and its fixed point;
- :func:`mean_drift_reuse`: the same with the real part reused from S_0 (the loop's default);
- :func:`mean_drift`: the form that applies to a real source (`loop.real_source`);
- :func:`mean_drift_scheduled`: fresh real data under a real-data schedule lambda_1..lambda_G;
- :func:`covariance_shrinkage`: E[Sigma_i] / Sigma* at lambda = 0, covariance re-estimated.

The same learner with a filter on its synthetic data is in `icl_stl.theory.filters`.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

__all__ = ["covariance_shrinkage", "mean_drift", "mean_drift_fresh", "mean_drift_plateau",
           "mean_drift_reuse", "mean_drift_scheduled"]

FloatArray = npt.NDArray[np.float64]

REAL_SOURCES = ("reuse", "fresh")  # the values of `loop.real_source`


def _check_fraction(real_fraction: float) -> float:
    lam = float(real_fraction)
    if not (0.0 <= lam <= 1.0):
        raise ValueError(f"real_fraction must be in [0, 1], got {real_fraction!r}")
    return lam


def _check_sizes(d: int, n: int, w_var: float) -> tuple[int, int]:
    """(d, n) of a drift closed form, each an integer >= 1; w_var must be positive."""
    d = _check_positive_int("d", d, 1)
    n = _check_positive_int("n", n, 1)
    if not (math.isfinite(w_var) and w_var > 0):
        raise ValueError(f"w_var must be a positive finite number, got {w_var!r}")
    return d, n


def _check_drift_args(d: int, n: int, real_fraction: float, w_var: float
                      ) -> tuple[int, int, float]:
    """(d, n, lambda) of a drift closed form, each checked; w_var must be positive."""
    d, n = _check_sizes(d, n, w_var)
    return d, n, _check_fraction(real_fraction)


def _check_positive_int(name: str, value: int, lo: int) -> int:
    if isinstance(value, bool) or int(value) != value or value < lo:
        raise ValueError(f"{name} must be an integer >= {lo}, got {value!r}")
    return int(value)


def mean_drift_fresh(
    generations: int, d: int, n: int, real_fraction: float, w_var: float = 1.0
) -> FloatArray:
    """E||mu_i - mu*||^2 for i = 0..generations, fresh real data and known covariance.

    Setting (docs/THEORY.md, section 6): each generation estimates the task mean mu_i as the
    average of the n prompts' task vectors w (recoverable exactly: k >= d, no label noise).
    Of those n prompts, lambda n are fresh real ones, w ~ N(mu*, Sigma*), and (1 - lambda) n are
    synthetic, w ~ N(mu_{i-1}, Sigma*), with Sigma* = w_var I. Hence

        mu_i - mu* = (1 - lambda)(mu_{i-1} - mu*) + eps_i,

    where eps_i is the average of n independent N(0, w_var I) deviations, so E||eps_i||^2 =
    d w_var / n, and eps_i is independent of mu_{i-1} (all draws of generation i are new). The
    cross term vanishes in expectation and

        e_0 = d w_var / n,    e_i = (1 - lambda)^2 e_{i-1} + d w_var / n.

    At lambda = 0 this is the linear growth e_i = (i + 1) d w_var / n (collapse, prediction 1);
    for lambda > 0 it rises to the plateau :func:`mean_drift_plateau` (prediction 2).

    The recursion assumes lambda n is an integer (exactly lambda n real prompts each generation);
    pass the realised fraction ``n_real / n`` when the loop rounds the count.

    Returns a float array of length ``generations + 1``.
    """
    generations = _check_positive_int("generations", generations, 0)
    d, n, lam = _check_drift_args(d, n, real_fraction, w_var)
    fresh = d * w_var / n
    idx = np.arange(generations + 1, dtype=np.float64)
    keep = (1.0 - lam) ** 2
    if keep == 1.0:
        # Exact linear growth, not an accumulated float sum.
        return (idx + 1.0) * fresh
    out = np.empty(generations + 1, dtype=np.float64)
    out[0] = fresh
    for i in range(1, generations + 1):
        out[i] = keep * out[i - 1] + fresh
    return out


def mean_drift_plateau(d: int, n: int, real_fraction: float, w_var: float = 1.0) -> float:
    """Fixed point of :func:`mean_drift_fresh`: ``(d w_var / n) / (1 - (1 - lambda)^2)``.

    Same setting: fresh real data each generation, known covariance w_var I, w read off
    exactly. It solves e = (1 - lambda)^2 e + d w_var / n, the limit of the recursion as
    i -> inf (reached geometrically, at rate (1 - lambda)^2 per generation). Returns ``inf`` at lambda = 0, where there is no plateau: the drift grows linearly,
    ``(i + 1) d w_var / n``. At lambda = 1 it is d w_var / n (every generation sees only real
    data).
    """
    d, n, lam = _check_drift_args(d, n, real_fraction, w_var)
    if lam == 0.0:
        return math.inf
    return (d * w_var / n) / (1.0 - (1.0 - lam) ** 2)


def mean_drift_reuse(
    generations: int, d: int, n: int, real_fraction: float, w_var: float = 1.0
) -> FloatArray:
    """E||mu_i - mu*||^2 for i = 0..generations when the real part is REUSED from S_0.

    The loop's default (``loop.real_source=reuse``, no redraw): every generation i >= 1 trains
    on the same lambda n prompts R of S_0 plus (1 - lambda) n synthetic prompts whose w is drawn
    from N(mu_{i-1}, w_var I); w is recovered exactly from each prompt (k >= d, no noise).
    Write r and u for the mean deviation from mu* of the w's of R and of the rest of S_0 and
    e_i for that of generation i's synthetic w's around mu_{i-1}: E||r||^2 = d w_var/(lambda n),
    E||u||^2 = d w_var/((1 - lambda) n), E||e_i||^2 = d w_var/((1 - lambda) n), all
    independent. With a = 1 - lambda,

        delta_0 = lambda r + a u,   delta_i = lambda r + a (delta_{i-1} + e_i),

    so delta_i = (1 - a^(i+1)) r + a^(i+1) u + sum_{j=1..i} a^(i-j+1) e_j and

        E||delta_i||^2 = (1 - a^(i+1))^2 d w_var/(lambda n) + a^(2(i+1)) d w_var/((1-lambda) n)
                         + (a d w_var / n) (1 - a^(2i)) / (1 - a^2).

    Its plateau d w_var/(lambda n) + (1 - lambda) d w_var/(n lambda (2 - lambda)) is about
    twice the fresh-data plateau at lambda = 0.5: the reused prompts' own error never averages
    out. Needs 0 < lambda < 1 (at lambda = 1 it is d w_var / n for every i; at lambda = 0 there
    is no real part, use :func:`mean_drift_fresh`), lambda n an integer.
    """
    generations = _check_positive_int("generations", generations, 0)
    d, n, lam = _check_drift_args(d, n, real_fraction, w_var)
    if lam == 1.0:
        return np.full(generations + 1, d * w_var / n)
    if lam == 0.0:
        raise ValueError("real_fraction = 0 reuses no real data: use mean_drift_fresh")
    a = 1.0 - lam
    i = np.arange(generations + 1, dtype=np.float64)
    real = (1.0 - a ** (i + 1)) ** 2 * d * w_var / (lam * n)
    rest = a ** (2 * (i + 1)) * d * w_var / ((1.0 - lam) * n)
    synthetic = (a * d * w_var / n) * (1.0 - a ** (2 * i)) / (1.0 - a**2)
    return real + rest + synthetic


def covariance_shrinkage(generations: int, n: int) -> FloatArray:
    """E[Sigma_i] / Sigma* = ((n - 1)/n)^(i + 1), i = 0..generations, at lambda = 0.

    Each generation re-estimates mean and covariance of w by maximum likelihood (divisor n) from
    n prompts drawn from the previous generation's N(mu_{i-1}, Sigma_{i-1}); the MLE is biased,
    E[Sigma_i | Sigma_{i-1}] = (n - 1)/n Sigma_{i-1}, and generation 0 already pays one factor on
    the real data. The spread of tasks thus collapses geometrically with ratio (n - 1)/n (compare
    a measured sequence with `icl_stl.theory.fits.geometric_rate`).
    """
    generations = _check_positive_int("generations", generations, 0)
    n = _check_positive_int("n", n, 2)
    idx = np.arange(generations + 1, dtype=np.float64)
    return ((n - 1) / n) ** (idx + 1.0)


def mean_drift(generations: int, d: int, n: int, real_fraction: float, w_var: float = 1.0,
               real_source: str = "reuse") -> FloatArray:
    """E||mu_i - mu*||^2 for i = 0..generations under the loop's `real_source`.

    ``"fresh"``: :func:`mean_drift_fresh`. ``"reuse"`` (the loop's default):
    :func:`mean_drift_reuse` for lambda > 0; at lambda = 0 nothing is reused, every generation after S_0 is synthetic, and
    the reused and fresh loops are the same loop, so the form is :func:`mean_drift_fresh` at
    lambda = 0, the linear growth (i + 1) d w_var / n. Same assumptions as those forms (known
    covariance w_var I, w read off exactly, lambda n an integer).
    """
    if real_source not in REAL_SOURCES:
        raise ValueError(f"real_source must be one of {list(REAL_SOURCES)}, got {real_source!r}")
    if real_source == "fresh" or real_fraction == 0.0:
        return mean_drift_fresh(generations, d, n, real_fraction, w_var)
    return mean_drift_reuse(generations, d, n, real_fraction, w_var)


def mean_drift_scheduled(fractions: list[float], d: int, n: int, w_var: float = 1.0
                         ) -> list[float]:
    """E||mu_i - mu*||^2 with fresh real data under a real-data schedule (docs/THEORY.md,
    section 7.2): fractions = lambda_0..lambda_G (lambda_0 unused: S_0 is all real).

    The recursion of :func:`mean_drift_fresh` with lambda_i in place of a constant lambda:
    delta_i = (1 - lambda_i) delta_{i-1} + eps_i with E||eps_i||^2 = d w_var / n, so

        e_0 = d w_var / n,    e_i = (1 - lambda_i)^2 e_{i-1} + d w_var / n.

    Once a schedule sits at its floor f > 0, e_i approaches the constant-lambda plateau
    (d w_var / n) / (1 - (1 - f)^2) geometrically, at rate (1 - f)^2 per generation: P7's
    "behaves like constant lambda at the floor". With floor 0 it grows by d w_var / n per
    generation once lambda_i ~ 0: collapse. Assumes known covariance w_var I, w read off
    exactly, and lambda_i n whole (pass the realised fractions n_real_i / n when the loop
    rounds the counts).
    """
    if not fractions or not all(0.0 <= f <= 1.0 for f in fractions):
        raise ValueError(f"fractions must be a non-empty list in [0, 1], got {fractions!r}")
    d, n = _check_sizes(d, n, w_var)
    fresh = d * w_var / n
    out = [fresh]
    for lam in fractions[1:]:
        out.append((1.0 - lam) ** 2 * out[-1] + fresh)
    return out
