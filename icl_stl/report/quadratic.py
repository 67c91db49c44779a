"""Per-seed quadratics in m / n and the tests P5 (version 2) reads from them.

Each seed's curve y_j (log excess risk at augmentation r_j = m_j / n, r_0 = 0) is fitted by
least squares with y = a + b r + c r^2. Across seeds:

- the curvature: the mean of the per-seed c, one-sided against 0;
- the vertex -b / (2 c) of the mean coefficients, with its Fieller interval: the r where the
  mean slope b + 2 c r is not significantly different from 0 (two-sided, level 1 - 2 alpha).
  The interval is bounded exactly when the curvature is significant at that level;
- the two ends, model-free: per seed y at the first and at the last grid point minus the mean
  of y over the interior grid points. A quadratic fitted to a curve that falls and flattens
  (a saturating, monotone curve) puts its vertex inside the grid with a positive slope at the
  end, so the quadratic alone would confirm an optimum that is not there; the end contrasts
  are negative for every monotone curve, whatever its shape.

Every function takes arrays whose axis -2 is the seed and -1 the grid (any leading axes: the
draws of a calibration study), so the report and its calibration run the same code.
"""

from __future__ import annotations

import numpy as np

from icl_stl.report.stats import Levels, directional_test, t_quantile

__all__ = ["end_contrasts", "fieller_vertex", "fit_quadratics", "vertex_pseudo_values"]


def fit_quadratics(y: np.ndarray, r: np.ndarray) -> np.ndarray:
    """(..., seeds, 3): per-seed least-squares (a, b, c) of y = a + b r + c r^2."""
    r = np.asarray(r, dtype=float)
    design = np.stack([np.ones_like(r), r, r * r], axis=1)
    return np.asarray(y, dtype=float) @ np.linalg.pinv(design).T


def _moments(coef: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray,
                                        np.ndarray, int]:
    """Means of b and c over seeds, and the variances / covariance of those means."""
    s = coef.shape[-2]
    b, c = coef[..., 1], coef[..., 2]
    mb, mc = b.mean(-1), c.mean(-1)
    db, dc = b - mb[..., None], c - mc[..., None]
    scale = 1.0 / (s * max(s - 1, 1))
    return mb, mc, (db * db).sum(-1) * scale, (dc * dc).sum(-1) * scale, \
        (db * dc).sum(-1) * scale, s


def fieller_vertex(coef: np.ndarray, levels: Levels) -> dict[str, np.ndarray]:
    """The vertex of the mean quadratic and its Fieller interval at level 1 - 2 alpha.

    The interval is {v : (mean b + 2 v mean c)^2 <= t^2 var(mean b + 2 v mean c)}; it is
    bounded when 4 mean_c^2 > 4 t^2 var(mean c), else low / high are -inf / +inf."""
    mb, mc, vb, vc, vbc, s = _moments(coef)
    t = t_quantile(1 - levels.alpha, s - 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        vertex = -mb / (2 * mc)
        qa = 4 * mc * mc - 4 * t * t * vc
        qb = 4 * mb * mc - 4 * t * t * vbc
        qc = mb * mb - t * t * vb
        disc = np.sqrt(np.maximum(qb * qb - 4 * qa * qc, 0.0))
        r1, r2 = (-qb - disc) / (2 * qa), (-qb + disc) / (2 * qa)
    bounded = qa > 0
    low = np.where(bounded, np.minimum(r1, r2), -np.inf)
    high = np.where(bounded, np.maximum(r1, r2), np.inf)
    return {"vertex": vertex, "low": low, "high": high, "bounded": bounded}


def vertex_pseudo_values(coef: np.ndarray) -> np.ndarray:
    """(..., seeds): each seed's linearised vertex v - (b_s + 2 c_s v) / (2 mean c), v the
    vertex of the mean coefficients: their mean is v, and their spread over seeds gives the
    delta-method standard error of v (the trend of the vertex against n reads them)."""
    mb, mc = coef[..., 1].mean(-1), coef[..., 2].mean(-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        v = -mb / (2 * mc)
        slope = coef[..., 1] + 2 * coef[..., 2] * v[..., None]
        return v[..., None] - slope / (2 * mc[..., None])


def end_contrasts(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(..., seeds) each: y at the first grid point, and at the last, minus the mean of y over
    the interior points. Both positive: the curve dips inside the grid."""
    y = np.asarray(y, dtype=float)
    inner = y[..., 1:-1].mean(-1)
    return y[..., 0] - inner, y[..., -1] - inner


def curvature_test(coef: np.ndarray, levels: Levels, resolution: float) -> dict:
    """One-sided test of mean c > 0 (the MDE compared with `resolution`)."""
    return directional_test(coef[..., 2], 0.0, +1, levels, resolution)
