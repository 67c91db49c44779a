"""What a filter does to the kept tasks' spread in the covariance-fitting reference learner (P6).

The learner: noiseless prompts with k >= d, so every prompt's task w is read off exactly, and each
generation fits the mean and the covariance of the tasks it trains on (the Gaussian-prior learner
with `loop.prior_covariance`); at lambda = 0, generation i labels a pool with tasks from
N(mu_{i-1}, Sigma_{i-1}) and a filter keeps n of them. Real tasks are N(mu*, w_var I). The kept
spread is s_i = tr Sigma_i / (d w_var), the covariance-trace ratio the loop records
(`filter_w_cov_ratio_after`, `syn_w_cov_ratio`). With Sigma_{i-1} = s w_var I (isotropic, as
the filters below keep it) and z = (w - c) / sqrt(w_var), c = mu* the verifier's centre:

- fixed threshold tau on ||w - c||^2 / w_var (the ridge verifier's score without noise, the
  prior's variance fixed): z / sqrt(s) is N(0, I_d) kept when its squared norm is <= tau / s,
  so (Bock 1975, as `theory.filters`)
      s_i = s_{i-1} F_{d+2}(tau / s_{i-1}) / F_d(tau / s_{i-1}),
  F_p the chi-square CDF: 0.744 after one generation and 0.443 after eight at d = 2 with tau
  keeping 90% of real tasks;
- threshold relative to the generator's variance (tau on ||w - c||^2 / (s_{i-1} w_var)): the
  same factor g = F_{d+2}(tau) / F_d(tau) every generation, s_i = g^i (0.744^i);
- best of K labellings (each x labelled K times, the labelling nearest the centre kept): the
  minimum of K chi-square_d draws, s_i = (E[min_K chi2_d] / d)^i, 0.25^i at d = 2, K = 4
  (chi2_2 / 2 is exponential, its minimum of K has mean 1 / K);
- an admitted filter (one that does not look at the task: the residual filter, a label-blind
  subset): s_i = 1 in expectation, since the unbiased covariance of the kept tasks is unbiased
  for Sigma_{i-1}.

`simulate_spread` runs the learner itself by Monte Carlo (seeded), the check of each form.
Pure numpy/scipy, like `icl_stl.theory`.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
from scipy import integrate, stats

__all__ = ["RULES", "best_of_k_factor", "fixed_threshold_spread", "relative_threshold_spread",
           "simulate_spread", "spread"]

FloatArray = npt.NDArray[np.float64]
RULES = ("fixed_threshold", "relative_threshold", "best_of_k", "admitted")


def _check(d: int, generations: int) -> None:
    if isinstance(d, bool) or not isinstance(d, int) or d < 1:
        raise ValueError(f"d must be an integer >= 1, got {d!r}")
    if isinstance(generations, bool) or not isinstance(generations, int) or generations < 0:
        raise ValueError(f"generations must be an integer >= 0, got {generations!r}")


def _truncated_factor(tau: float, d: int) -> float:
    """E[||z||^2 | ||z||^2 <= tau] / d for z ~ N(0, I_d): F_{d+2}(tau) / F_d(tau)."""
    return float(stats.chi2.cdf(tau, d + 2) / stats.chi2.cdf(tau, d))


def fixed_threshold_spread(tau: float, d: int, generations: int) -> FloatArray:
    """s_0..s_G under a fixed threshold tau on ||w - c||^2 / w_var (module doc)."""
    _check(d, generations)
    out = [1.0]
    for _ in range(generations):
        out.append(out[-1] * _truncated_factor(tau / out[-1], d))
    return np.array(out)


def relative_threshold_spread(tau: float, d: int, generations: int) -> FloatArray:
    """s_i = (F_{d+2}(tau) / F_d(tau))^i under a threshold relative to the generator's
    variance."""
    _check(d, generations)
    return _truncated_factor(tau, d) ** np.arange(generations + 1, dtype=float)


def best_of_k_factor(k: int, d: int) -> float:
    """E[min of k chi2_d draws] / d: the spread kept per generation by best-of-k labellings,
    int_0^inf P(chi2_d > t)^k dt / d."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be an integer >= 1, got {k!r}")
    _check(d, 0)
    value, _ = integrate.quad(lambda t: stats.chi2.sf(t, d) ** k, 0.0, math.inf)
    return value / d


def spread(rule: str, d: int, generations: int, *, keep: float = 0.9, k: int = 4
           ) -> FloatArray:
    """The closed form s_0..s_G of `rule` (module doc); a threshold keeps `keep` of real tasks
    (tau = chi2_d^-1(keep)), best-of-k labels each x `k` times."""
    _check(d, generations)
    tau = float(stats.chi2.ppf(keep, d)) if 0 < keep < 1 else math.inf
    if rule == "fixed_threshold":
        return fixed_threshold_spread(tau, d, generations)
    if rule == "relative_threshold":
        return relative_threshold_spread(tau, d, generations)
    if rule == "best_of_k":
        return best_of_k_factor(k, d) ** np.arange(generations + 1, dtype=float)
    if rule == "admitted":
        return np.ones(generations + 1)
    raise ValueError(f"rule must be one of {RULES}, got {rule!r}")


def simulate_spread(rule: str, d: int, n: int, generations: int, *, keep: float = 0.9,
                    k: int = 4, w_var: float = 1.0, seeds: int = 100, seed: int = 0
                    ) -> FloatArray:
    """tr Sigma_i / (d w_var) for i = 0..G over `seeds` Monte-Carlo loops: (G + 1, seeds).

    Generation 0 fits the mean and the unbiased covariance of n real tasks N(0, w_var I); the
    verifier's centre c is that mean. Generation i draws tasks from N(mu_{i-1}, Sigma_{i-1}),
    keeps n of them by `rule` and fits mu_i, Sigma_i on them. Thresholds are rejection sampling
    (the first n passing); the admitted filter keeps the first n (label-blind)."""
    if rule not in RULES:
        raise ValueError(f"rule must be one of {RULES}, got {rule!r}")
    _check(d, generations)
    rng = np.random.default_rng(seed)
    tau = float(stats.chi2.ppf(keep, d))
    w = math.sqrt(w_var) * rng.standard_normal((seeds, n, d))
    centre = w.mean(1, keepdims=True)  # (seeds, 1, d)
    mu, cov = centre, _cov(w)
    out = [np.trace(cov, axis1=1, axis2=2) / (d * w_var)]
    for _ in range(generations):
        chol = np.linalg.cholesky(cov)  # (seeds, d, d)
        scale = np.trace(cov, axis1=1, axis2=2)[:, None] / d  # (seeds, 1)
        if rule == "best_of_k":
            draws = mu[:, None] + rng.standard_normal((seeds, k, n, d)) @ chol.transpose(0, 2, 1)[:, None]
            dist = np.sum((draws - centre[:, None]) ** 2, -1)  # (seeds, k, n)
            best = np.argmin(dist, 1)  # (seeds, n)
            kept = np.take_along_axis(draws, best[:, None, :, None], 1)[:, 0]
        else:
            pool = math.ceil(n / (0.8 * keep)) if rule != "admitted" else n
            draws = mu + rng.standard_normal((seeds, pool, d)) @ chol.transpose(0, 2, 1)
            dist = np.sum((draws - centre) ** 2, -1) / w_var  # (seeds, pool)
            if rule == "relative_threshold":
                dist = dist * w_var / scale
            passing = dist <= tau if rule != "admitted" else np.ones_like(dist, dtype=bool)
            # the first n passing in pool order: sort passers first, stably
            order = np.argsort(~passing, axis=1, kind="stable")[:, :n]
            if not np.take_along_axis(passing, order, 1).all():
                raise RuntimeError("pool too small for the threshold: raise it")
            kept = np.take_along_axis(draws, order[..., None], 1)
        mu, cov = kept.mean(1, keepdims=True), _cov(kept)
        out.append(np.trace(cov, axis1=1, axis2=2) / (d * w_var))
    return np.stack(out)


def _cov(w: FloatArray) -> FloatArray:
    """(seeds, n, d) -> (seeds, d, d) unbiased covariance."""
    centred = w - w.mean(1, keepdims=True)
    return centred.transpose(0, 2, 1) @ centred / (w.shape[1] - 1)
