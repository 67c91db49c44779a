"""P4 version 2's statistics on arrays (seeds x n, any leading axes): the fits listed in advance,
their agreement, and the negative outcome "no decay on [a, b]".

Every function takes values (..., seeds, len(ns)) of the generalization gap at the final
generation, so the report and the calibration by simulation (`simulate_p4_v2`) run the same code.

The fits, fixed before any confirmatory run (docs/THEORY.md section 8.5):
- ``floor0_weighted``: y = A n^b (the gap tends to 0), weights the seeds' inverse variance
  smoothed as a power law in n (`decay_weights`, which version 1 uses too);
- ``free_floor_weighted``: y = E + A n^b with E >= 0 (the free-floor fit, taken at E = 0 where
  it goes negative), same weights;
- ``floor0_unweighted``: y = A n^b, equal weights.
Each exponent b is bootstrapped over whole seeds (one resample shared by the three fits). A fit
is *consistent* when b is significantly below -1/4 and it is not at the edge of its search
range (`theory.decay.fit_decay`'s `at_edge`, for its point estimate or at least alpha of the
replicates): such a fit is never evidence either way. The gap is *consistent with n^-1/4 or
faster* only where every fit is. The bound's own shape (c1 n^-1 log^2 n + c2 n^-1/2 log n +
c3 n^-1/4, c >= 0) has unidentified coefficients and is drawn beside, never voted.

The negative outcome: per seed, the least-squares slope of the gap against log10 n over the
grand mean gap (the fall per decade as a share of the level). "No decay on [a, b]" when that
slope is significantly above -`NO_DECAY_MARGIN` (one-sided, alpha), i.e. the gap falls by less
than that share of its level per decade. A gap whose grand mean is not positive has nothing to
decay and is never read as either outcome.
"""

from __future__ import annotations

import numpy as np

from icl_stl.report.stats import bootstrap_se, seed_bootstrap, slopes, t_pvalues, t_quantile
from icl_stl.theory import fit_decay

BOUND_EXPONENT = -0.25  # the bound's slowest term, n^-1/4
FITS = ("floor0_weighted", "free_floor_weighted", "floor0_unweighted")
LEARNS_IN_CONTEXT = 0.5  # generation 0 closes at least this share of the zero-to-ridge gap
NO_DECAY_MARGIN = 0.1  # "no decay": falls by less than this share of its level per decade
OUTCOMES = ("consistent", "no_decay", "slower", "not_identified", "underpowered",
            "inconclusive")


def decay_weights(values: np.ndarray, ns: list[int]) -> np.ndarray:
    """Inverse-variance weights per n from the seeds, smoothed as a power law in n.

    values (..., seeds, len(ns)). The per-n variance over few seeds is too noisy to weight
    by; a least-squares line through log variance against log n keeps its trend. Uniform
    weights with one seed or a zero variance.
    """
    values = np.asarray(values, float)
    if values.shape[-2] < 2:
        return np.ones(values.shape[:-2] + values.shape[-1:])
    var = values.var(-2, ddof=1)
    ok = np.all(var > 0, axis=-1, keepdims=True)
    logn = np.log(np.asarray(ns, float))
    logv = np.log(np.where(var > 0, var, 1.0))
    fitted = logv.mean(-1, keepdims=True) + slopes(logn, logv)[..., None] * (logn - logn.mean())
    return np.where(ok, np.exp(-fitted), 1.0)


def _fit(ns: list[int], y: np.ndarray, w: np.ndarray, which: str) -> dict:
    """One of FITS on curves y (..., len(ns)) with weights broadcastable to y."""
    if which == "floor0_unweighted":
        return fit_decay(ns, y, None, 0.0)
    if which == "floor0_weighted":
        return fit_decay(ns, y, w, 0.0)
    free = fit_decay(ns, y, w, None)
    zero = fit_decay(ns, y, w, 0.0)
    negative = free["floor"] < 0  # E >= 0: the floor-0 fit where the free floor is negative
    return {k: np.where(negative, zero[k], free[k]) for k in free}


def fit_agreement(values: np.ndarray, ns: list[int], rng: np.random.Generator, *,
                  alpha: float = 0.05, power: float = 0.80, margin: float = 0.10,
                  bootstrap: int = 2000, tolerance: float = 0.0) -> dict:
    """Per fit: exponent, bootstrap SE, one-sided p-values against -1/4 + `tolerance`, MDE and
    edge flags; `consistent` where every fit is significantly faster and none at the edge."""
    values = np.asarray(values, float)
    s = values.shape[-2]
    w = decay_weights(values, ns)
    idx = seed_bootstrap(s, bootstrap, rng)
    resampled = values[..., idx, :].mean(-2)
    threshold = BOUND_EXPONENT + tolerance
    tq, tp = t_quantile(1 - alpha, s - 1), t_quantile(power, s - 1)
    fits: dict[str, dict] = {}
    for which in FITS:
        full = _fit(ns, values.mean(-2), w, which)
        boot = _fit(ns, resampled, w[..., None, :], which)
        se = bootstrap_se(boot["slope"], s)
        est = full["slope"]
        p_slower, p_faster = t_pvalues(est - threshold, se, s - 1)
        edge_share = np.asarray(boot["at_edge"]).mean(-1)
        at_edge = np.asarray(full["at_edge"]) | (edge_share >= alpha)
        fits[which] = {"estimate": est, "low": est - tq * se, "high": est + tq * se, "se": se,
                       "p_faster": p_faster, "p_slower": p_slower, "mde": (tq + tp) * se,
                       "floor": full["floor"], "amplitude": full["amplitude"],
                       "at_edge": at_edge, "edge_share": edge_share,
                       "consistent": (np.asarray(p_faster) < alpha) & ~at_edge}
    consistent = np.logical_and.reduce([fits[f]["consistent"] for f in FITS])
    return {"fits": fits, "consistent": consistent, "weights": w}


def no_decay_test(values: np.ndarray, ns: list[int], alpha: float = 0.05,
                  margin: float = NO_DECAY_MARGIN) -> dict:
    """Per seed the slope of the gap against log10 n over the grand mean; "no decay" when it is
    significantly above -margin. Not defined (False) where the grand mean is not positive."""
    values = np.asarray(values, float)
    s = values.shape[-2]
    level = values.mean((-2, -1))
    per_seed = slopes(np.log10(np.asarray(ns, float)), values)  # (..., seeds)
    relative = per_seed / np.where(level > 0, level, np.nan)[..., None]
    mean = np.nanmean(relative, -1) if s else np.nan
    se = np.nanstd(relative, -1, ddof=1) / np.sqrt(s)
    _, p_above = t_pvalues(-(mean + margin), se, s - 1)  # small when mean > -margin
    tq = t_quantile(1 - alpha, s - 1)
    holds = (level > 0) & (np.asarray(p_above) < alpha)
    return {"relative_slope": mean, "low": mean - tq * se, "high": mean + tq * se,
            "p_no_decay": p_above, "level": level, "no_decay": holds}


def p4v2_core(values: np.ndarray, ns: list[int], rng: np.random.Generator, *,
              alpha: float = 0.05, power: float = 0.80, margin: float = 0.10,
              bootstrap: int = 2000, min_seeds: int = 5, tolerance: float = 0.0) -> dict:
    """The outcome per curve: "consistent" (every fit), else "no_decay", else
    "not_identified" (a fit at the edge), else "slower" (the primary fit significantly slower
    than n^-1/4: read "decays slower than n^-1/4 on [a, b]"), else "underpowered" (an
    exponent's MDE above `margin`), else "inconclusive"; always "underpowered" with fewer than
    `min_seeds` seeds. `outcome` holds indices into
    OUTCOMES, shaped like the leading axes."""
    values = np.asarray(values, float)
    s = values.shape[-2]
    agree = fit_agreement(values, ns, rng, alpha=alpha, power=power, margin=margin,
                          bootstrap=bootstrap, tolerance=tolerance)
    flat = no_decay_test(values, ns, alpha)
    fits = agree["fits"]
    primary = fits[FITS[0]]
    wide = np.logical_or.reduce([np.asarray(fits[f]["mde"]) > margin for f in FITS])
    edge = np.logical_or.reduce([np.asarray(fits[f]["at_edge"]) for f in FITS])
    outcome = np.full(np.shape(agree["consistent"]), OUTCOMES.index("inconclusive"), np.int8)
    outcome[wide] = OUTCOMES.index("underpowered")
    outcome[(np.asarray(primary["p_slower"]) < alpha) & ~np.asarray(primary["at_edge"])] = \
        OUTCOMES.index("slower")
    outcome[edge] = OUTCOMES.index("not_identified")  # never evidence, whatever else holds
    outcome[np.asarray(flat["no_decay"])] = OUTCOMES.index("no_decay")
    outcome[np.asarray(agree["consistent"])] = OUTCOMES.index("consistent")
    if s < min_seeds:
        outcome[...] = OUTCOMES.index("underpowered")
    return {**agree, **flat, "outcome": outcome, "n_seeds": s}
