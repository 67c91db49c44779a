"""The theory's formulas and the helpers that fit measurements against them.

Three groups, all pure numpy/scipy so they can be used (and tested) without torch:

1. The shape of the generalization bound for transformers in a self-consuming training loop
   (Fu et al., ICLR 2025): ``c1 n^-1 log^2 n + c2 n^-1/2 log n + c3 n^-1/4``.
2. Closed forms of the exactly solvable reference learner of ``docs/THEORY.md`` (a learner that
   estimates the mean, and optionally the covariance, of the task prior). They give exact
   expectations against which the loop's machinery is checked, independent of any network.
3. Fitting helpers: straight-line and power-law fits with confidence intervals, a
   non-negative fit of the bound's shape (descriptive: its three columns are nearly collinear
   over any practical range of n, so its coefficients are not identified), the decay fit
   ``y = E_inf + A n^b`` that keeps non-positive values, the rule that reads a fitted decay
   exponent against n^-1/4 (prediction 4: consistent with the bound, or slower on the range),
   and a geometric-rate fit.

Every result type has ``to_dict()`` returning plain floats, ints, strings and lists, so reports
can be written with ``json.dumps`` directly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import optimize, stats

__all__ = [
    "BoundFit",
    "LineFit",
    "PowerLawFit",
    "bound_basis",
    "bound_shape",
    "covariance_shrinkage",
    "decay_verdict",
    "fit_bound",
    "fit_decay",
    "fit_linear_slope",
    "fit_power_law",
    "geometric_rate",
    "mean_drift_fresh",
    "mean_drift_plateau",
    "mean_drift_reuse",
]

FloatArray = npt.NDArray[np.float64]

# ---------------------------------------------------------------------------------------------
# 1. The bound's shape


def _as_sample_sizes(n: npt.ArrayLike) -> FloatArray:
    """Validate sample sizes: finite and >= 1.

    n >= 1 rather than n > 0 because for n < 1 the log terms turn negative and the "bound"
    would no longer be a sum of non-negative terms; sample sizes are counts anyway.
    """
    arr = np.asarray(n, dtype=np.float64)
    if not np.all(np.isfinite(arr)) or np.any(arr < 1):
        bad = arr[~np.isfinite(arr) | (arr < 1)]
        raise ValueError(f"sample sizes n must be finite and >= 1, got {bad.tolist()[:10]}")
    return arr


def bound_basis(n: npt.ArrayLike) -> FloatArray:
    """The bound's three terms evaluated at each n, as a ``(len(n), 3)`` matrix.

    Columns: ``n^-1 log^2 n``, ``n^-1/2 log n``, ``n^-1/4`` (natural logarithm). A scalar n
    gives a ``(1, 3)`` matrix.
    """
    arr = np.atleast_1d(_as_sample_sizes(n)).ravel()
    log_n = np.log(arr)
    return np.stack([log_n**2 / arr, log_n / np.sqrt(arr), arr**-0.25], axis=1)


def bound_shape(n: npt.ArrayLike, c1: float, c2: float, c3: float) -> FloatArray | float:
    """``c1 n^-1 log^2 n + c2 n^-1/2 log n + c3 n^-1/4``, vectorised over n.

    Returns an array of n's shape, or a float when n is a scalar. For n >= e^8 (about 3000) the
    n^-1/4 term decays slowest, so it dominates asymptotically whenever c3 > 0: that is why the
    theory's rate is quoted as n^-1/4.
    """
    arr = _as_sample_sizes(n)
    log_n = np.log(arr)
    value = c1 * log_n**2 / arr + c2 * log_n / np.sqrt(arr) + c3 * arr**-0.25
    return float(value) if np.ndim(value) == 0 else value


# ---------------------------------------------------------------------------------------------
# 2. Closed forms of the reference learner


def _check_fraction(real_fraction: float) -> float:
    lam = float(real_fraction)
    if not (0.0 <= lam <= 1.0):
        raise ValueError(f"real_fraction must be in [0, 1], got {real_fraction!r}")
    return lam


def _check_drift_args(d: int, n: int, real_fraction: float, w_var: float
                      ) -> tuple[int, int, float]:
    """(d, n, lambda) of a drift closed form, each checked; w_var must be positive."""
    d = _check_positive_int("d", d, 1)
    n = _check_positive_int("n", n, 1)
    lam = _check_fraction(real_fraction)
    if not (math.isfinite(w_var) and w_var > 0):
        raise ValueError(f"w_var must be a positive finite number, got {w_var!r}")
    return d, n, lam


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

    Returns ``inf`` at lambda = 0, where there is no plateau: the drift grows linearly,
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
    a measured sequence with :func:`geometric_rate`).
    """
    generations = _check_positive_int("generations", generations, 0)
    n = _check_positive_int("n", n, 2)
    idx = np.arange(generations + 1, dtype=np.float64)
    return ((n - 1) / n) ** (idx + 1.0)


# ---------------------------------------------------------------------------------------------
# 3. Fits


def _jsonable(value: Any) -> Any:
    if isinstance(value, (np.floating, float)):
        return float(value)
    if isinstance(value, (np.integer, int)) and not isinstance(value, bool):
        return int(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


@dataclass(frozen=True)
class LineFit:
    """A straight-line fit ``y = intercept + slope x`` with a confidence interval on the slope.

    ``method`` says how the interval was made:

    - ``"seeds"``: y had s >= 2 columns (seeds). One line is fitted per seed; ``slope`` and
      ``intercept`` are the means over seeds, ``stderr`` is the standard deviation of the
      per-seed slopes over sqrt(s), and the interval is Student-t with s - 1 degrees of freedom.
      Seeds are the independent replicates, so this interval needs no assumption about how the
      noise depends on x, and it is exact when per-seed slopes are normally distributed.
    - ``"regression"``: a single column. Ordinary least squares; ``stderr`` is the usual
      regression standard error of the slope and the interval is Student-t with m - 2 degrees of
      freedom (m = number of points), exact for independent homoscedastic Gaussian residuals.
    """

    slope: float
    intercept: float
    ci_low: float
    ci_high: float
    stderr: float
    n_points: int
    n_seeds: int
    dof: int
    level: float
    method: str
    per_seed_slopes: list[float] | None = None

    def predict(self, x: npt.ArrayLike) -> FloatArray:
        """The fitted line at x."""
        return self.intercept + self.slope * np.asarray(x, dtype=np.float64)

    def contains(self, value: float) -> bool:
        """Whether ``value`` lies in the slope's confidence interval."""
        return bool(self.ci_low <= value <= self.ci_high)

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python copy of every field (JSON-ready)."""
        return {f.name: _jsonable(getattr(self, f.name)) for f in fields(self)}


@dataclass(frozen=True)
class PowerLawFit(LineFit):
    """A line fit in log-log coordinates: ``y = exp(intercept) x^slope``.

    ``slope`` is the decay exponent and ``intercept`` is log of the prefactor (natural log).
    """

    def predict(self, x: npt.ArrayLike) -> FloatArray:
        """The fitted power law ``prefactor * x^slope`` at x (x > 0)."""
        return self.prefactor * np.asarray(x, dtype=np.float64) ** self.slope

    @property
    def prefactor(self) -> float:
        return float(math.exp(self.intercept))

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        out["prefactor"] = self.prefactor
        return out


def _prepare_xy(x: npt.ArrayLike, y: npt.ArrayLike, x_name: str) -> tuple[FloatArray, FloatArray]:
    """Coerce x to (m,) and y to (m, s); check shapes and finiteness."""
    xa = np.asarray(x, dtype=np.float64)
    ya = np.asarray(y, dtype=np.float64)
    if xa.ndim != 1:
        raise ValueError(f"{x_name} must be 1-D, got shape {xa.shape}")
    if ya.ndim == 1:
        ya = ya[:, None]
    if ya.ndim != 2 or ya.shape[0] != xa.shape[0]:
        raise ValueError(
            f"y must have shape ({xa.shape[0]},) or ({xa.shape[0]}, seeds), got {np.shape(y)}"
        )
    if not np.all(np.isfinite(xa)):
        raise ValueError(f"{x_name} must be finite, got {xa.tolist()}")
    if not np.all(np.isfinite(ya)):
        bad = np.argwhere(~np.isfinite(ya))
        raise ValueError(f"y must be finite; non-finite entries at (row, seed) {bad.tolist()[:10]}")
    if np.unique(xa).size < 2:
        raise ValueError(f"{x_name} needs at least 2 distinct values, got {xa.tolist()}")
    return xa, ya


def _require_positive(name: str, arr: FloatArray) -> None:
    """Raise ValueError naming the non-positive entries: their log is undefined."""
    bad = arr <= 0
    if np.any(bad):
        where = np.argwhere(bad)
        vals = arr[bad]
        raise ValueError(
            f"{name} must be positive for a log fit (log undefined); non-positive values "
            f"{vals.tolist()[:10]} at indices {where.tolist()[:10]}"
        )


def _line_fit(x: FloatArray, y: FloatArray, level: float, cls: type[LineFit]) -> LineFit:
    if not (0.0 < level < 1.0):
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    m, s = y.shape
    xc = x - x.mean()
    sxx = float(xc @ xc)
    # Column-wise ordinary least squares.
    slopes = (xc @ (y - y.mean(axis=0))) / sxx
    intercepts = y.mean(axis=0) - slopes * x.mean()
    q = 0.5 + level / 2.0
    if s >= 2:
        slope = float(slopes.mean())
        stderr = float(slopes.std(ddof=1) / math.sqrt(s))
        dof = s - 1
        method = "seeds"
        per_seed: list[float] | None = [float(v) for v in slopes]
    else:
        if m < 3:
            raise ValueError(
                f"a single-column fit needs at least 3 points for a regression interval, got {m}; "
                "give several seeds as columns instead"
            )
        slope = float(slopes[0])
        resid = y[:, 0] - intercepts[0] - slope * x
        dof = m - 2
        stderr = float(math.sqrt(float(resid @ resid) / dof / sxx))
        method = "regression"
        per_seed = None
    half = float(stats.t.ppf(q, dof)) * stderr
    return cls(
        slope=slope,
        intercept=float(intercepts.mean()),
        ci_low=slope - half,
        ci_high=slope + half,
        stderr=stderr,
        n_points=int(m),
        n_seeds=int(s),
        dof=int(dof),
        level=float(level),
        method=method,
        per_seed_slopes=per_seed,
    )


def fit_linear_slope(x: npt.ArrayLike, y: npt.ArrayLike, level: float = 0.95) -> LineFit:
    """Least-squares line ``y = intercept + slope x`` with a ``level`` interval on the slope.

    x has shape (m,); y has shape (m,) or (m, s) with one column per seed. With s >= 2 the
    interval is over seeds (Student-t, s - 1 dof); with one column it is the regression
    interval (Student-t, m - 2 dof, so m >= 3). See :class:`LineFit`. Used e.g. for in-context
    stability: loss change against position.
    """
    xa, ya = _prepare_xy(x, y, "x")
    return _line_fit(xa, ya, level, LineFit)


def fit_power_law(n: npt.ArrayLike, y: npt.ArrayLike, level: float = 0.95) -> PowerLawFit:
    """Fit ``log y = intercept + slope log n`` by least squares; ``slope`` is the exponent.

    n has shape (m,) and must be positive; y has shape (m,) or (m, s) with one column per seed
    and must be positive (ValueError naming the offending values otherwise). The interval is
    over seeds (Student-t, s - 1 dof) when s >= 2, else the regression interval (Student-t,
    m - 2 dof); see :class:`LineFit`. Per-seed fits are done in log space, so the reported
    slope is the mean of per-seed exponents (a geometric-mean fit, robust to the multiplicative
    noise typical of risks).
    """
    na, ya = _prepare_xy(n, y, "n")
    _require_positive("n", na)
    _require_positive("y", ya)
    fit = _line_fit(np.log(na), np.log(ya), level, PowerLawFit)
    assert isinstance(fit, PowerLawFit)
    return fit


def geometric_rate(values: npt.ArrayLike) -> float:
    """Ratio r of a geometric sequence ``values_i ~ a r^i``, fitted by least squares on log values.

    Used to compare a measured covariance shrinkage (e.g. trace Sigma_i / trace Sigma* against
    generation i) with the theory's (n - 1)/n. Values must be positive (ValueError otherwise)
    and there must be at least 2 of them.
    """
    va = np.asarray(values, dtype=np.float64)
    if va.ndim != 1 or va.size < 2:
        raise ValueError(f"values must be 1-D with at least 2 entries, got shape {va.shape}")
    if not np.all(np.isfinite(va)):
        raise ValueError(f"values must be finite, got {va.tolist()}")
    _require_positive("values", va)
    idx = np.arange(va.size, dtype=np.float64)
    slope = np.polyfit(idx, np.log(va), 1)[0]
    return float(math.exp(slope))


@dataclass(frozen=True)
class BoundFit:
    """Non-negative least-squares fit of the bound's shape.

    ``residual`` is the Euclidean norm of the residual vector of the problem actually solved:
    relative residuals ``(fit - y)/y`` when ``relative`` is true, absolute ones otherwise.
    """

    c1: float
    c2: float
    c3: float
    residual: float
    relative: bool
    n_points: int

    @property
    def coefficients(self) -> tuple[float, float, float]:
        return (self.c1, self.c2, self.c3)

    def predict(self, n: npt.ArrayLike) -> FloatArray | float:
        """The fitted bound at n (array of n's shape, or a float for scalar n)."""
        return bound_shape(n, self.c1, self.c2, self.c3)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: _jsonable(getattr(self, f.name)) for f in fields(self)}


def fit_bound(n: npt.ArrayLike, y: npt.ArrayLike, relative: bool = True,
              weights: npt.ArrayLike | None = None) -> BoundFit:
    """Fit ``y ~ c1 n^-1 log^2 n + c2 n^-1/2 log n + c3 n^-1/4`` with c1, c2, c3 >= 0.

    y has shape (m,) or (m, s); with seeds the fit is to the mean over seeds. The constraint
    c >= 0 is the theory's: the bound is a sum of non-negative terms, so a fit needing a
    negative coefficient is reported at the boundary (a zero coefficient) rather than with a
    term the theory does not have.

    With ``relative=True`` (default) each row is weighted by 1/y, i.e. the fit minimises the
    relative residuals ``sum ((fit - y)/y)^2``. Risks shrink by orders of magnitude across n, and
    an unweighted fit would be decided by the small-n points alone, while the large-n points are
    where the n^-1/4 term must show. Relative weighting needs y > 0 (ValueError otherwise).
    ``weights`` (one per n, e.g. inverse variances over seeds) replaces the relative weighting
    and keeps non-positive values: the fit minimises ``sum weights (fit - y)^2``.

    The three columns are nearly collinear over any practical range of n (correlation
    0.995-0.999 in log space), so the coefficients are not identified: a planted (0, 1, 0) can
    come back as (0.33, 0, 1.18). Use the fit as a descriptive envelope (e.g. its range over a
    seed bootstrap), never read its coefficients.
    """
    na, ya = _prepare_xy(n, y, "n")
    basis = bound_basis(na)
    target = ya.mean(axis=1)
    if weights is not None:
        w = np.sqrt(np.asarray(weights, dtype=np.float64))
        if w.shape != target.shape or not np.all(np.isfinite(w)):
            raise ValueError(f"weights must be finite with shape {target.shape}")
        a = basis * w[:, None]
        b = target * w
    elif relative:
        _require_positive("y (mean over seeds, relative weighting)", target)
        a = basis / target[:, None]
        b = np.ones_like(target)
    else:
        a = basis
        b = target
    # Scale columns to unit norm before NNLS: positive rescaling keeps the constraint c >= 0
    # and the solution, but improves conditioning (the columns differ by orders of magnitude).
    # Columns are zero only if every n is 1; keep those columns' scale at 1 to avoid 0/0.
    norms = np.linalg.norm(a, axis=0)
    norms[norms == 0] = 1.0
    coef_scaled, resid = optimize.nnls(a / norms, b)
    coef = coef_scaled / norms
    return BoundFit(
        c1=float(coef[0]),
        c2=float(coef[1]),
        c3=float(coef[2]),
        residual=float(resid),
        relative=bool(relative),
        n_points=int(na.size),
    )


DECAY_EXPONENT_RANGE = (-3.0, 0.0)  # exponents b the decay fit searches (b = 0: no decay)


def _decay_sse_grid(n: FloatArray, y: FloatArray, w: FloatArray, b: FloatArray,
                    floor: float | None) -> FloatArray:
    """SSE of the best (E, A >= 0) for each exponent of a shared grid b (G,): (c, G).

    From weighted sums (matrix products), so a large batch of curves is cheap; the closed form
    loses precision only for near-exact fits, where `_decay_profile` refines the answer."""
    x = n[None, :] ** b[:, None]  # (G, m)
    if floor is not None:
        y = y - floor
    wy = w * y
    syy = (wy * y).sum(1)[:, None]
    sxx = w @ (x * x).T
    sxy = wy @ x.T
    if floor is not None:
        amp = np.maximum(sxy / sxx, 0.0)
        return syy - amp * sxy
    sw = w.sum(1)[:, None]
    sx = w @ x.T
    sy = wy.sum(1)[:, None]
    det = sw * sxx - sx**2
    with np.errstate(divide="ignore", invalid="ignore"):
        amp = (sw * sxy - sx * sy) / det
    flat = ~(amp > 0) | ~(det > 1e-300)
    amp = np.where(flat, 0.0, amp)
    level = (sy - amp * sx) / sw
    return syy - level * sy - amp * sxy


def _decay_profile(n: FloatArray, y: FloatArray, w: FloatArray, b: FloatArray,
                   floor: float | None) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Best (E, A >= 0) for each exponent b: y (c, m), w (c, m), b (G,) or (c, G)."""
    if b.ndim == 1:
        x = (n ** b[:, None])[None]  # (1, G, m)
    else:  # per-curve grids around a centre: n^(c + d) = n^c n^d, cheaper than c x G powers
        x = (n ** b[:, :1])[:, None, :] * n ** (b - b[:, :1])[..., None]
    wy = (w * y)[:, None, :]
    ww = w[:, None, :]
    if floor is None:
        sw = ww.sum(-1)
        sx = (ww * x).sum(-1)
        sxx = (ww * x * x).sum(-1)
        sy = wy.sum(-1)
        sxy = (wy * x).sum(-1)
        det = sw * sxx - sx**2
        with np.errstate(divide="ignore", invalid="ignore"):
            amp = (sw * sxy - sx * sy) / det
        flat = ~(amp > 0) | ~(det > 1e-300)
        amp = np.where(flat, 0.0, amp)
        level = (sy - amp * sx) / sw
    else:
        yf = (w * (y - floor))[:, None, :]
        sxx = (ww * x * x).sum(-1)
        amp = np.maximum((yf * x).sum(-1) / sxx, 0.0)
        level = np.full(amp.shape, float(floor))
    resid = y[:, None, :] - level[..., None] - amp[..., None] * x
    sse = (ww * resid**2).sum(-1)
    return sse, level, amp


def fit_decay(n: npt.ArrayLike, y: npt.ArrayLike, weights: npt.ArrayLike | None = None,
              floor: float | None = None, chunk: int = 4096) -> dict[str, FloatArray]:
    """Weighted least-squares fit of ``y = E_inf + A n^b`` (A >= 0), vectorised over curves.

    n has shape (m,); y has shape (..., m) (any leading axes: seeds' bootstrap replicates,
    calibration draws); weights broadcast to y (default 1). E_inf is fitted unless ``floor``
    gives it (e.g. from an infinite-data run). Non-positive y are kept: the fit is in linear
    space, never on log y. For each b the best (E_inf, A) is a closed-form weighted linear
    fit; b is found on a grid over ``DECAY_EXPONENT_RANGE`` (step 0.05, refined to 0.01 and
    then 0.002).
    When no decaying curve beats a constant (A = 0), b is reported as 0 (no decay).

    Returns arrays of the leading shape: ``slope`` (b), ``floor`` (E_inf), ``amplitude`` (A),
    ``sse``.
    """
    na = _as_sample_sizes(n).ravel()
    ya = np.asarray(y, dtype=np.float64)
    if ya.shape[-1] != na.size:
        raise ValueError(f"y's last axis must have one value per n ({na.size}), got {ya.shape}")
    if not np.all(np.isfinite(ya)):
        raise ValueError("y must be finite")
    wa = np.ones_like(ya) if weights is None else np.broadcast_to(
        np.asarray(weights, dtype=np.float64), ya.shape)
    if not np.all(np.isfinite(wa)) or np.any(wa < 0):
        raise ValueError("weights must be finite and >= 0")
    lead = ya.shape[:-1]
    flat_y = ya.reshape(-1, na.size)
    flat_w = wa.reshape(-1, na.size)
    lo, hi = DECAY_EXPONENT_RANGE
    coarse = np.round(np.arange(lo, hi, 0.05), 10)
    coarse = coarse[coarse < -1e-9]
    stages = (np.round(np.arange(-0.05, 0.05 + 1e-12, 0.01), 10),
              np.round(np.arange(-0.01, 0.01 + 1e-12, 0.002), 10))
    out = {k: np.empty(flat_y.shape[0]) for k in ("slope", "floor", "amplitude", "sse")}
    for start in range(0, flat_y.shape[0], chunk):
        yc, wc = flat_y[start:start + chunk], flat_w[start:start + chunk]
        best = coarse[_decay_sse_grid(na, yc, wc, coarse, floor).argmin(1)]
        rows = np.arange(yc.shape[0])
        for steps in stages:
            grid = np.clip(best[:, None] + steps[None, :], lo, -0.002)
            sse, level, amp = _decay_profile(na, yc, wc, grid, floor)
            j = sse.argmin(1)
            best = grid[rows, j]
        a = amp[rows, j]
        stop = start + yc.shape[0]
        out["slope"][start:stop] = np.where(a > 0, best, 0.0)
        out["floor"][start:stop] = level[rows, j]
        out["amplitude"][start:stop] = a
        out["sse"][start:stop] = sse[rows, j]
    return {k: v.reshape(lead) for k, v in out.items()}


# ---------------------------------------------------------------------------------------------
# 4. The verdict on prediction 4


def decay_verdict(fit: LineFit, exponent: float = -0.25,
                  ns: npt.ArrayLike | None = None) -> dict[str, Any]:
    """Read a fitted decay exponent against n^exponent (prediction 4), never as a refutation.

    The theory gives an upper bound with unknown constants, c1 n^-1 log^2 n + c2 n^-1/2 log n +
    c3 n^-1/4, and an upper bound cannot be refuted by a slope over a finite range of n (data
    far below the bound may decay slowly, and below n ~ 55 the bound's own shape decays more
    slowly than n^-1/4). With [ci_low, ci_high] the fit's interval at its ``level``:

    - ``"confirmed"``, reading "consistent with the bound": ci_high < exponent, the whole
      interval decays at least as fast as n^exponent (a one-sided test at (1 - level)/2);
    - ``"inconclusive"`` otherwise; its reading is "decays slower than n^exponent on [a, b]"
      when ci_low > exponent (significantly slower on the fitted range), else "cannot tell".

    Also reported: ``at_least_as_fast`` (the point estimate: slope <= exponent),
    ``significantly_faster`` (= confirmed) and ``significantly_slower``. Fit on the large-n
    range: the bound is asymptotic.
    """
    threshold = float(exponent)
    slope = float(fit.slope)
    lo, hi = float(fit.ci_low), float(fit.ci_high)
    faster, slower = hi < threshold, lo > threshold
    span = ""
    if ns is not None and np.size(ns):
        span = f" on [{int(np.min(ns))}, {int(np.max(ns))}]"
    if faster:
        reading = f"consistent with the bound (decays at least as fast as n^{threshold:g})"
    elif slower:
        reading = f"decays slower than n^{threshold:g}{span}"
    else:
        reading = f"cannot tell whether it decays as fast as n^{threshold:g}{span}"
    return {
        "slope": slope,
        "ci": [lo, hi],
        "level": float(fit.level),
        "threshold": threshold,
        "at_least_as_fast": bool(slope <= threshold),
        "consistent": bool(faster),
        "significantly_slower": bool(slower),
        "significantly_faster": bool(faster),
        "verdict": "confirmed" if faster else "inconclusive",
        "reading": reading,
    }
