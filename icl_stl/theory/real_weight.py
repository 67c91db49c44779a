"""The reference learner with a real weight (`loop.real_weight`, prediction P10): closed forms
of its error against the weight v of the real part, for fresh and for reused real data.

How the weight enters. Generation i >= 1 trains on S_i = R_i (lambda n real prompts) plus
(1 - lambda) n synthetic prompts from N(mu_{i-1}, w_var I). With `loop.real_weight` = v every
training batch draws a share v of its prompts from R_i in expectation (stratified sampling,
unweighted loss), so the objective is v x (mean loss over R_i) + (1 - v) x (mean loss over the
synthetic part). The reference learner (`icl_stl.loop.learners.reference`) fits a Gaussian to
the w's it reads off the prompts by maximising that weighted likelihood: the weighted mean

    mu_i = v rbar_i + (1 - v) sbar_i,

rbar_i, sbar_i the mean w of the real and of the synthetic part (and, with the covariance
re-estimated, the weighted covariance v cov_real + (1 - v) cov_synthetic about mu_i). v =
lambda is the unweighted loop (every prompt weighs 1 / n). Write D = d w_var, a = 1 - v and
delta_i = mu_i - mu*. A synthetic part's mean is sbar_i = mu_{i-1} + e_i with
E||e_i||^2 = D / ((1 - lambda) n), independent of the past; so

    delta_i = v r_i + a (delta_{i-1} + e_i),      delta_0 = the mean of S_0, E = D / n,

with r_i = rbar_i - mu*. The two real sources differ only in r_i:

- fresh (`loop.real_source=fresh`): r_i new each generation, E||r_i||^2 = D / (lambda n), so
      e_i = a^2 e_{i-1} + (v^2 / lambda + a^2 / (1 - lambda)) D / n,
  with the plateau (v^2 / lambda + a^2 / (1 - lambda)) / (1 - a^2) x D / n. At lambda = 1/2 it
  is 2 (v^2 + a^2) / (1 - a^2) x D / n: He, Xu and Cheng's mean estimator from fresh real and
  synthetic samples, smallest at v* = 1 / phi = 0.618. An interior optimum for every
  0 < lambda < 1 (`optimal_real_weight`: 0.434 at lambda = 1/4, 0.791 at 3/4): at v = 0 the
  drift grows without bound (collapse), and at v = 1 each generation sees only its own lambda n
  real prompts, while a synthetic weight a carries the earlier generations' real prompts
  forward through mu_{i-1} (an average over generations) at the price of the e_i.
- reused (`loop.real_source=reuse`, the default): r_i = r, the same lambda n prompts of S_0, and
  delta_0 = lambda r + (1 - lambda) u (u: the rest of S_0). Unrolled,
      delta_i = (1 - a^i (1 - lambda)) r + a^i (1 - lambda) u + sum_{j <= i} a^(i-j+1) e_j,
      E||delta_i||^2 = (1 - a^i (1 - lambda))^2 D / (lambda n) + a^(2i) (1 - lambda) D / n
                       + a^2 (1 - a^(2i)) / (1 - a^2) x D / ((1 - lambda) n).
  The real part's own error r never averages out, and weight on the synthetic part only adds
  the e_j: at the plateau, and at lambda >= 1/2 from generation 2 on, the error is smallest
  at v = 1 (D / (lambda n)): no interior optimum. Before that the synthetic part still carries
  S_0's other prompts through mu_0 (the a^i (1 - lambda) u term), and a synthetic weight helps
  for a while: at generation 1 (v* = 2/3 at lambda = 1/2), and at a small lambda for several
  generations (lambda = 1/4: v* about 0.27 up to generation 4, then 1; lambda = 0.1: up to
  generation 7), a second local minimum that fades as a^i decays.

At v = lambda both forms are `icl_stl.theory.reference.mean_drift_fresh` / `mean_drift_reuse`
(tested). Assumptions as there: k >= d, noiseless labels (w read off exactly), known covariance,
lambda n whole, no augmentation.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.optimize import minimize_scalar

from icl_stl.theory.reference import (
    REAL_SOURCES,
    FloatArray,
    _check_drift_args,
    _check_fraction,
    _check_positive_int,
)

__all__ = ["GOLDEN_WEIGHT", "optimal_real_weight", "weighted_drift", "weighted_plateau"]

GOLDEN_WEIGHT = 2.0 / (1.0 + math.sqrt(5.0))  # 1 / phi: He, Xu and Cheng's optimum at lambda 1/2


def _check_weight(real_weight: float, lam: float) -> float:
    v = float(real_weight)
    if not (0.0 <= v <= 1.0):
        raise ValueError(f"real_weight must be in [0, 1], got {real_weight!r}")
    if v > 0 and lam == 0:
        raise ValueError(f"real_weight={v} needs a real part (real_fraction > 0)")
    if v < 1 and lam == 1:
        raise ValueError(f"real_weight={v} needs a synthetic part (real_fraction < 1)")
    return v


def _check_source(real_source: str) -> str:
    if real_source not in REAL_SOURCES:
        raise ValueError(f"real_source must be one of {list(REAL_SOURCES)}, got {real_source!r}")
    return real_source


def _parts(lam: float, v: float) -> tuple[float, float]:
    """v^2 / lambda and a^2 / (1 - lambda), each 0 where its weight is (no such part)."""
    a = 1.0 - v
    return (v * v / lam if v > 0 else 0.0), (a * a / (1.0 - lam) if a > 0 else 0.0)


def weighted_drift(generations: int, d: int, n: int, real_fraction: float, real_weight: float,
                   w_var: float = 1.0, real_source: str = "fresh") -> FloatArray:
    """E||mu_i - mu*||^2, i = 0..generations, of the reference learner whose real part has
    weight `real_weight` (module doc: the recursion for fresh, the unrolled sum for reused).
    Generation 0 trains on S_0 alone: d w_var / n whatever the weight."""
    generations = _check_positive_int("generations", generations, 0)
    d, n, lam = _check_drift_args(d, n, real_fraction, w_var)
    v = _check_weight(real_weight, lam)
    unit = d * w_var / n
    a = 1.0 - v
    real, synthetic = _parts(lam, v)
    if _check_source(real_source) == "fresh" or lam == 0:
        out = np.empty(generations + 1, dtype=np.float64)
        out[0] = unit
        for i in range(1, generations + 1):
            out[i] = a * a * out[i - 1] + (real + synthetic) * unit
        return out
    i = np.arange(generations + 1, dtype=np.float64)
    carried = a ** i  # a^0 = 1 at generation 0, also when a = 0
    noise = i if a == 1.0 else (1.0 - a ** (2 * i)) / (1.0 - a * a)
    return ((1.0 - carried * (1.0 - lam)) ** 2 * unit / lam + carried ** 2 * (1.0 - lam) * unit
            + synthetic * noise * unit)


def weighted_plateau(d: int, n: int, real_fraction: float, real_weight: float,
                     w_var: float = 1.0, real_source: str = "fresh") -> float:
    """The limit of `weighted_drift` as the generation grows (inf at v = 0, no real weight:
    the drift grows without bound). fresh: (v^2/lambda + a^2/(1-lambda)) / (1 - a^2) D/n;
    reused: D/(lambda n) + a^2/(1 - a^2) D/((1 - lambda) n)."""
    d, n, lam = _check_drift_args(d, n, real_fraction, w_var)
    v = _check_weight(real_weight, lam)
    if v == 0:
        return math.inf
    unit, a = d * w_var / n, 1.0 - v
    real, synthetic = _parts(lam, v)
    if _check_source(real_source) == "fresh":
        return (real + synthetic) / (1.0 - a * a) * unit
    return unit / lam + (a * a / (1.0 - a * a) * unit / (1.0 - lam) if a > 0 else 0.0)


def optimal_real_weight(real_fraction: float, real_source: str = "fresh",
                        generation: int | None = None) -> float:
    """The weight v in [0, 1] that minimises the error at `generation` (None: the plateau),
    by a bounded scalar search with both ends compared (the reused form's minimum is at 1).
    The optimum does not depend on d, n or w_var (they scale the error)."""
    lam = _check_fraction(real_fraction)
    if not 0.0 < lam < 1.0:
        raise ValueError(f"real_fraction must be in (0, 1) for an optimum, got {real_fraction!r}")
    _check_source(real_source)

    def error(v: float) -> float:
        if generation is None:
            return weighted_plateau(1, 1, lam, v, 1.0, real_source)
        return float(weighted_drift(generation, 1, 1, lam, v, 1.0, real_source)[-1])

    found = minimize_scalar(error, bounds=(1e-9, 1.0), method="bounded",
                            options={"xatol": 1e-10})
    candidates = [float(found.x), 1.0]
    return min(candidates, key=error)
