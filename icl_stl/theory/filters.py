"""The reference learner with a filter on its synthetic data: closed forms and a simulation.

Setting (docs/THEORY.md section 7.2, P6): the Gaussian-prior learner of docs/THEORY.md section 6 with
known covariance Sigma* = w_var I and noiseless prompts (k >= d), so every prompt's w is read
off exactly. Generation i >= 1 labels a pool of prompts with w ~ N(mu_{i-1}, w_var I) and a
verifier with knowledge centre c keeps those whose task lies near c: in the noiseless limit the
ridge verifier's score (`icl_stl.loop.verifier`) is k * score = ||w - c||^2 / w_var, so a
threshold filter keeps w with ||w - c||^2 <= tau w_var. Write z = (w - c) / sqrt(w_var) ~
N(delta, I_d), delta = (mu_{i-1} - c) / sqrt(w_var), shift2 = ||delta||^2, and F_p(tau; shift2)
for the noncentral chi-square CDF with p degrees of freedom. Then (Bock, 1975):

    P(kept)                  = F_d(tau; shift2)
    E[z | kept]              = g delta,    g = F_{d+2}(tau; shift2) / F_d(tau; shift2) < 1
    E[||z||^2 | kept]        = (d F_{d+2} + shift2 F_{d+4}) / F_d

so one generation (n kept prompts, rejection sampling: i.i.d. from the truncated law) maps

    E[mu_i - c | mu_{i-1}]       = g (mu_{i-1} - c)
    E[||mu_i - c||^2 | mu_{i-1}] = g^2 ||mu_{i-1} - c||^2 + w_var (E||z||^2|kept - g^2 shift2) / n.

The filter is a contraction towards c: at lambda = 0 the drift no longer grows linearly
((i + 1) d w_var / n, THEORY.md) but settles around the verifier's centre (Yi et al.,
arXiv 2510.16657). Near the fixed point shift2 = O(d / n), so g ~ g0 = F_{d+2}(tau) / F_d(tau)
(central) and the plateau is, to first order in d / n,

    E||mu_inf - mu*||^2 ~ ||c - mu*||^2 + g0 d w_var / (n (1 - g0^2)):

it falls with the verifier's error ||c - mu*||^2 (E = d w_var / n_real for a centre fitted on
n_real real prompts). Keeping the best fraction q of a large pool is, at zero shift, the
threshold tau = chi2_d^-1(q). `simulate_drift` runs the same recursion by Monte Carlo, with
the loop's own selection rules, for the cases the first-order form does not cover.

Pure numpy/scipy, like `icl_stl.theory`.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
from scipy import stats

__all__ = ["best_fraction_threshold", "contraction", "keep_fraction", "kept_second_moment",
           "linear_plateau", "residual_keep_fraction", "simulate_drift", "step_drift"]

FloatArray = npt.NDArray[np.float64]


def _cdf(tau: float, dof: int, shift2: float) -> float:
    """F_dof(tau; shift2): the (noncentral, when shift2 > 0) chi-square CDF."""
    if shift2 < 0 or dof < 1:
        raise ValueError(f"need dof >= 1 and shift2 >= 0, got {dof!r}, {shift2!r}")
    if shift2 == 0:
        return float(stats.chi2.cdf(tau, dof))
    return float(stats.ncx2.cdf(tau, dof, shift2))


def residual_keep_fraction(threshold: float, positions: int) -> float:
    """Kept fraction of the verifier's threshold filter on prompts drawn from its own model:
    F_p(threshold p; 0) with p = `positions`.

    The filter keeps a prompt when its mean standardised squared residual over p positions is
    <= threshold; on prompts from the verifier's own model the residuals are i.i.d. N(0, 1), so
    their sum of squares is chi-square with p degrees of freedom."""
    return _cdf(threshold * positions, positions, 0.0)


def keep_fraction(tau: float, d: int, shift2: float = 0.0) -> float:
    """P(kept) = P(||z||^2 <= tau) = F_d(tau; shift2) for z ~ N(delta, I_d), ||delta||^2 =
    shift2: the threshold filter's pass rate on synthetic tasks (module doc)."""
    return _cdf(tau, d, shift2)


def contraction(tau: float, d: int, shift2: float = 0.0) -> float:
    """g = E[z | kept] / delta = F_{d+2}(tau; shift2) / F_d(tau; shift2) < 1 (Bock, 1975).

    z ~ N(delta, I_d), ||delta||^2 = shift2, kept when ||z||^2 <= tau: the factor the filter
    multiplies the drift from the verifier's centre c by, in one generation."""
    return _cdf(tau, d + 2, shift2) / _cdf(tau, d, shift2)


def kept_second_moment(tau: float, d: int, shift2: float = 0.0) -> float:
    """E[||z||^2 | ||z||^2 <= tau] = (d F_{d+2} + shift2 F_{d+4}) / F_d (Bock, 1975), each F
    at (tau; shift2), for z ~ N(delta, I_d), ||delta||^2 = shift2."""
    return (d * _cdf(tau, d + 2, shift2) + shift2 * _cdf(tau, d + 4, shift2)) / _cdf(tau, d, shift2)


def step_drift(delta2: float, tau: float, d: int, n: int, w_var: float = 1.0) -> float:
    """E[||mu_i - c||^2 | ||mu_{i-1} - c||^2 = delta2] = g^2 delta2 + w_var (m2 - g^2 shift2) / n.

    g = :func:`contraction`, m2 = :func:`kept_second_moment`, both at shift2 = delta2 / w_var:
    the filtered mean of n kept prompts, i.i.d. from the truncated law. Exact at lambda = 0 for
    a threshold filter tau on ||w - c||^2 / w_var, with known covariance w_var I and w read off
    exactly (noiseless prompts, k >= d)."""
    shift2 = delta2 / w_var
    g = contraction(tau, d, shift2)
    spread = kept_second_moment(tau, d, shift2) - g * g * shift2  # tr Cov(z | kept)
    return g * g * delta2 + w_var * spread / n


def best_fraction_threshold(keep: float, d: int) -> float:
    """tau = chi2_d^-1(keep): the threshold on ||z||^2 that keeping the best fraction `keep` of
    a large pool amounts to, at zero shift (z ~ N(0, I_d)); inf when everything is kept."""
    if not 0 < keep <= 1:
        raise ValueError(f"keep must be in (0, 1], got {keep!r}")
    return math.inf if keep == 1 else float(stats.chi2.ppf(keep, d))


def linear_plateau(tau: float, d: int, n: int, w_var: float = 1.0,
                   centre_err2: float = 0.0) -> float:
    """First-order plateau of E||mu_i - mu*||^2 at lambda = 0 (module doc):
    centre_err2 + g0 d w_var / (n (1 - g0^2)), g0 = F_{d+2}(tau) / F_d(tau) (central).

    centre_err2 = ||c - mu*||^2. Near the fixed point shift2 = O(d / n), so g is taken at zero
    shift: first order in d / n, for a threshold filter with known covariance w_var I and w read
    off exactly. inf without a filter (tau = inf: the drift grows linearly)."""
    g0 = 1.0 if math.isinf(tau) else contraction(tau, d)
    if g0 >= 1.0:
        return math.inf
    return centre_err2 + g0 * d * w_var / (n * (1.0 - g0 * g0))


def _select_keys(score: FloatArray, threshold: float | None) -> FloatArray:
    """Keys whose n smallest are what `icl_stl.loop.filters.select` keeps (scores are >= 0):
    passers by pool position (negative keys), then failures by score (the shortfall fill)."""
    if threshold is None:
        return score
    position = np.arange(score.shape[-1], dtype=np.float64) - score.shape[-1]  # (pool,) < 0
    return np.where(score <= threshold, position, score)


def simulate_drift(generations: int, d: int, n: int, *, keep: float = 1.0,
                   threshold: float | None = None, centre: npt.ArrayLike | None = None,
                   real_fraction: float = 0.0, w_var: float = 1.0, seeds: int = 1000,
                   seed: int = 0) -> FloatArray:
    """||mu_i - mu*||^2 (mu* = 0) for i = 0..generations over `seeds` Monte-Carlo loops:
    (generations + 1, seeds).

    No closed form: the recursion of the module doc run directly, for the cases the
    first-order plateau does not cover (lambda > 0, large shifts, best-fraction selection).
    Generation 0 fits n real prompts. Generation i >= 1 takes lambda n fresh real w's and labels
    a pool of ceil(n_syn / keep) synthetic w's ~ N(mu_{i-1}, w_var I), scored ||w - c||^2 / w_var
    and selected as `filters.select` does (threshold: tau on that score; None: best fraction).
    Assumes known covariance w_var I, w read off exactly, and lambda n whole.
    """
    lam_n = real_fraction * n
    if abs(lam_n - round(lam_n)) > 1e-9:
        raise ValueError(f"real_fraction * n must be whole, got {lam_n}")
    n_real = int(round(lam_n))
    n_syn = n - n_real
    pool = max(n_syn, math.ceil(n_syn / keep - 1e-9))
    c = np.zeros(d) if centre is None else np.asarray(centre, dtype=np.float64)
    rng = np.random.default_rng(seed)
    sd = math.sqrt(w_var)
    mu = sd * rng.standard_normal((seeds, n, d)).mean(1)  # (seeds, d)
    out = [np.sum(mu ** 2, -1)]
    for _ in range(generations):
        real_sum = sd * rng.standard_normal((seeds, n_real, d)).sum(1)  # (seeds, d)
        w = mu[:, None, :] + sd * rng.standard_normal((seeds, pool, d))  # (seeds, pool, d)
        score = np.sum((w - c) ** 2, -1) / w_var  # (seeds, pool)
        # the n_syn smallest keys as a set (their order does not change the mean; ties have
        # probability 0 for continuous scores)
        keys = _select_keys(score, threshold)
        order = (np.argpartition(keys, n_syn - 1, axis=-1)[:, :n_syn] if 0 < n_syn < pool
                 else np.broadcast_to(np.arange(n_syn), (seeds, n_syn)))
        kept = np.take_along_axis(w, order[..., None], axis=1)  # (seeds, n_syn, d)
        mu = (real_sum + kept.sum(1)) / n
        out.append(np.sum(mu ** 2, -1))
    return np.stack(out)
