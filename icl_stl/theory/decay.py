"""How test risk decays with n: the fit ``y = E_inf + A n^b`` and the verdict on prediction 4.

:func:`fit_decay` fits the decay while keeping non-positive values (risks minus a floor can be
negative), vectorised over many curves (bootstrap replicates, calibration draws).
:func:`decay_verdict` reads a fitted decay exponent against the bound's n^-1/4: consistent with
the bound, or slower on the fitted range; never a refutation of an upper bound.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from icl_stl.theory.bound import as_sample_sizes
from icl_stl.theory.fits import LineFit

__all__ = ["DECAY_EXPONENT_RANGE", "EDGE_TOLERANCE", "decay_verdict", "fit_decay"]

FloatArray = npt.NDArray[np.float64]

DECAY_EXPONENT_RANGE = (-3.0, 0.0)  # exponents b the decay fit searches (b = 0: no decay)
# A fitted b this close to an end of the range is "at the edge": the fit wanted a b outside it
# (the data do not identify the exponent), so it is never read as evidence.
EDGE_TOLERANCE = 0.01
_TOP = -0.002  # the largest b the grid tries (b = 0 is reserved for "no decay", A = 0)


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
    ``sse`` and ``at_edge``: True where the best b lies within ``EDGE_TOLERANCE`` of an end of
    the search range with A > 0 (at -3: a steeper curve would fit better, e.g. one high value at
    the smallest n; at the top: a curve flatter than any power, a log). Such an exponent is a
    bound of the search, not an estimate. "No decay" (A = 0, b = 0) is not at the edge.
    """
    na = as_sample_sizes(n).ravel()
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
    out["at_edge"] = np.zeros(flat_y.shape[0], dtype=bool)
    for start in range(0, flat_y.shape[0], chunk):
        yc, wc = flat_y[start:start + chunk], flat_w[start:start + chunk]
        best = coarse[_decay_sse_grid(na, yc, wc, coarse, floor).argmin(1)]
        rows = np.arange(yc.shape[0])
        for steps in stages:
            grid = np.clip(best[:, None] + steps[None, :], lo, _TOP)
            sse, level, amp = _decay_profile(na, yc, wc, grid, floor)
            j = sse.argmin(1)
            best = grid[rows, j]
        a = amp[rows, j]
        stop = start + yc.shape[0]
        out["slope"][start:stop] = np.where(a > 0, best, 0.0)
        out["floor"][start:stop] = level[rows, j]
        out["amplitude"][start:stop] = a
        out["sse"][start:stop] = sse[rows, j]
        out["at_edge"][start:stop] = (a > 0) & ((best <= lo + EDGE_TOLERANCE)
                                                | (best >= _TOP - EDGE_TOLERANCE))
    return {k: v.reshape(lead) for k, v in out.items()}


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
