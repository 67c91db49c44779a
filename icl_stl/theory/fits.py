"""Fits of measurements against the theory's shapes, with confidence intervals.

- Straight-line and power-law fits (:func:`fit_linear_slope`, :func:`fit_power_law`), with a
  Student-t interval on the slope over seeds, or from the regression when there is one column.
- A geometric-rate fit (:func:`geometric_rate`), for the reference learner's covariance
  shrinkage.
- A non-negative fit of the bound's shape (:func:`fit_bound`), descriptive only: its three
  columns are nearly collinear over any practical range of n, so its coefficients are not
  identified.

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

from icl_stl.theory.bound import bound_basis, bound_shape

__all__ = ["BoundFit", "LineFit", "PowerLawFit", "fit_bound", "fit_linear_slope", "fit_power_law",
           "geometric_rate"]

FloatArray = npt.NDArray[np.float64]


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
    """Ratio r of a geometric sequence ``values_i ~ a r^i``: r = exp(slope), the slope of the
    least-squares line of log values_i against i = 0, 1, ... (multiplicative noise assumed).

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
