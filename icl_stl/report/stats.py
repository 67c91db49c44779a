"""The report's statistics: calibrated tests on per-seed summaries, vectorised over draws.

Seeds are the replicates. Every rule first reduces a seed's data to ONE number (a rise over the
loop, a slope over generations, a log-log slope against n), then tests the mean of those numbers
over seeds with a Student-t interval (s - 1 degrees of freedom), or resamples whole seeds
(`seed_bootstrap`) when the statistic is a fit to the mean curve. A regression interval over the
generations of one loop is never used: those points share one model and are autocorrelated.

Two kinds of test, each against a pre-set margin (`ReportConfig`):

- `directional_test`: is the mean above (or below) the margin? One-sided at level alpha:
  confirmed when the one-sided bound clears the margin, refuted when the opposite one-sided
  bound stays on the wrong side of it.
- `equivalence_test`: TOST. Confirmed when the (1 - 2 alpha) interval lies inside
  +-margin (both one-sided tests reject), refuted when the mean is significantly above +margin.

Either returns `inconclusive` or `underpowered` when neither side is significant:
`underpowered` when the minimum detectable effect (MDE, the effect beyond the margin the test
finds with the configured power at this number of seeds) exceeds the margin, and always when
there are fewer seeds than `min_seeds`.

All functions take arrays whose LAST axis is the seed axis and any leading axes (draws of a
calibration study, groups); they return arrays of the leading shape. Verdict codes are ints
(`CODES` maps them to names), so a calibration study of thousands of draws is one call.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import stats

CONFIRMED, REFUTED, INCONCLUSIVE = "confirmed", "refuted", "inconclusive"
UNDERPOWERED, NOT_APPLICABLE, NOT_TESTED = "underpowered", "not applicable", "not tested"
VERDICTS = (CONFIRMED, REFUTED, INCONCLUSIVE, UNDERPOWERED, NOT_APPLICABLE, NOT_TESTED)
C_CONFIRMED, C_REFUTED, C_INCONCLUSIVE, C_UNDERPOWERED = 0, 1, 2, 3
CODES = {C_CONFIRMED: CONFIRMED, C_REFUTED: REFUTED, C_INCONCLUSIVE: INCONCLUSIVE,
         C_UNDERPOWERED: UNDERPOWERED}

Array = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Levels:
    """The error rates every test is built for (from `ReportConfig`)."""

    alpha: float = 0.05  # one-sided level of each test
    power: float = 0.80  # power the minimum detectable effect is computed for
    min_seeds: int = 5  # fewer seeds: underpowered, whatever the data say


def _t_parts(x: npt.ArrayLike) -> tuple[Array, Array, int]:
    """Mean, standard error of the mean and degrees of freedom over the last axis."""
    x = np.asarray(x, dtype=np.float64)
    s = x.shape[-1]
    mean = x.mean(-1)
    if s < 2:
        return mean, np.full(mean.shape, np.nan), 0
    return mean, x.std(-1, ddof=1) / math.sqrt(s), s - 1


def t_quantile(p: float, df: float) -> float:
    """Student-t quantile; nan without degrees of freedom (one seed)."""
    return float(stats.t.ppf(p, df)) if df >= 1 else float("nan")


def _ratio(num: Array, se: Array) -> Array:
    """num / se with se = 0 read as an exact result: +-inf by the sign of num (0 stays 0)."""
    num, se = np.broadcast_arrays(np.asarray(num, float), np.asarray(se, float))
    out = np.full(num.shape, np.nan)
    ok = se > 0
    out[ok] = num[ok] / se[ok]
    exact = (se == 0) & np.isfinite(num)
    out[exact] = np.where(num[exact] > 0, np.inf, np.where(num[exact] < 0, -np.inf, 0.0))
    return out


def _t_sf(z: Array, df: int) -> Array:
    """P(T > z) with T ~ t(df); nan when df < 1 (nothing measured)."""
    return stats.t.sf(z, df) if df >= 1 else np.full(np.shape(z), np.nan)


def _decide(p_confirm: Array, p_refute: Array | None, mde: Array, resolution: float, s: int,
            levels: Levels) -> np.ndarray:
    """Verdict codes: significant tests first, then underpowered / inconclusive; few seeds
    are underpowered whatever the tests say."""
    code = np.full(np.shape(mde), C_INCONCLUSIVE, dtype=np.int8)
    code[~(np.asarray(mde) <= resolution)] = C_UNDERPOWERED  # nan MDE: underpowered
    if p_refute is not None:
        code[np.asarray(p_refute) < levels.alpha] = C_REFUTED
    code[np.asarray(p_confirm) < levels.alpha] = C_CONFIRMED
    if s < levels.min_seeds:
        code[...] = C_UNDERPOWERED
    return code


def directional_test(per_seed: npt.ArrayLike, margin: float, direction: int, levels: Levels,
                     resolution: float | None = None) -> dict[str, Array]:
    """One-sided test of "direction x (mean - margin) > 0" over the last (seed) axis.

    direction = +1: the claim is mean > margin (e.g. a rise above the collapse margin);
    direction = -1: the claim is mean < margin (e.g. a slope below -margin). Returns the
    estimate, the (1 - 2 alpha) interval (its ends are the two one-sided 1 - alpha bounds), the
    p-values of the claim (`p_confirm`, H0: the claim is false) and of its negation
    (`p_refute`, H0: the claim holds), the MDE (t_{1-alpha} + t_{power}) x se, and codes.
    `resolution` (default |margin|) is what the MDE is compared with.
    """
    mean, se, df = _t_parts(per_seed)
    s = np.shape(per_seed)[-1]
    tq = t_quantile(1 - levels.alpha, df)
    z = _ratio(direction * (mean - margin), se)
    p_confirm = _t_sf(z, df)
    p_refute = _t_sf(-z, df)
    mde = (tq + t_quantile(levels.power, df)) * se
    res = abs(margin) if resolution is None else resolution
    return {"estimate": mean, "low": mean - tq * se, "high": mean + tq * se, "se": se,
            "p_confirm": p_confirm, "p_refute": p_refute, "mde": mde,
            "code": _decide(p_confirm, p_refute, mde, res, s, levels), "n_seeds": s}


def equivalence_test(per_seed: npt.ArrayLike, margin: float, levels: Levels) -> dict[str, Array]:
    """TOST: is the mean inside (-margin, +margin)? Refuted when significantly above +margin.

    Confirmed when both one-sided tests reject at alpha, i.e. the (1 - 2 alpha) interval lies
    inside +-margin. The MDE is the smallest margin that gives the configured power when the
    true mean is 0: (t_{1-alpha} + t_{1-(1-power)/2}) x se.
    """
    mean, se, df = _t_parts(per_seed)
    s = np.shape(per_seed)[-1]
    tq = t_quantile(1 - levels.alpha, df)
    p_above_lower = _t_sf(_ratio(mean + margin, se), df)  # H0: mean <= -margin
    p_below_upper = _t_sf(_ratio(margin - mean, se), df)  # H0: mean >= +margin
    p_confirm = np.fmax(p_above_lower, p_below_upper)
    p_refute = _t_sf(_ratio(mean - margin, se), df)  # H0: mean <= +margin
    mde = (tq + t_quantile(1 - (1 - levels.power) / 2, df)) * se
    return {"estimate": mean, "low": mean - tq * se, "high": mean + tq * se, "se": se,
            "p_confirm": p_confirm, "p_refute": p_refute, "mde": mde,
            "code": _decide(p_confirm, p_refute, mde, margin, s, levels), "n_seeds": s}


def band_test(per_seed: npt.ArrayLike, margin: float, levels: Levels) -> dict[str, Array]:
    """"mean > +margin" against "mean < -margin": confirmed when significantly above +margin,
    refuted when significantly below -margin (each one-sided at alpha), so values inside the
    band are neither. The MDE is the directional test's, against +margin."""
    up = directional_test(per_seed, margin, +1, levels)
    down = directional_test(per_seed, -margin, -1, levels)
    s = np.shape(per_seed)[-1]
    return {**up, "p_refute": down["p_confirm"],
            "code": _decide(up["p_confirm"], down["p_confirm"], up["mde"], margin, s, levels)}


def tost_both_sides(per_seed: npt.ArrayLike, margin: float, levels: Levels) -> dict[str, Array]:
    """TOST inside +-margin (`equivalence_test`), refuted when the mean is significantly outside
    on EITHER side, each side at alpha / 2 (Bonferroni: p_refute = 2 x the smaller p)."""
    eq = equivalence_test(per_seed, margin, levels)
    below = directional_test(per_seed, -margin, -1, levels)["p_confirm"]
    p_refute = np.minimum(1.0, 2 * np.fmin(eq["p_refute"], below))
    s = np.shape(per_seed)[-1]
    return {**eq, "p_refute": p_refute,
            "code": _decide(eq["p_confirm"], p_refute, eq["mde"], margin, s, levels)}


def outside_test(per_seed: npt.ArrayLike, margin: float, levels: Levels) -> dict[str, Array]:
    """The reverse of `tost_both_sides`: confirmed when the mean is significantly outside
    +-margin on either side (each side at alpha / 2), refuted when TOST puts it inside. The
    MDE is the effect beyond the margin found with the configured power at alpha / 2:
    (t_{1-alpha/2} + t_{power}) x se."""
    mean, se, df = _t_parts(per_seed)
    s = np.shape(per_seed)[-1]
    above = directional_test(per_seed, margin, +1, levels)
    below = directional_test(per_seed, -margin, -1, levels)
    p_confirm = np.minimum(1.0, 2 * np.fmin(above["p_confirm"], below["p_confirm"]))
    p_refute = equivalence_test(per_seed, margin, levels)["p_confirm"]
    mde = (t_quantile(1 - levels.alpha / 2, df) + t_quantile(levels.power, df)) * se
    return {**above, "p_confirm": p_confirm, "p_refute": p_refute, "mde": mde,
            "code": _decide(p_confirm, p_refute, mde, margin, s, levels)}


def conjunction(a: dict, b: dict, levels: Levels) -> tuple[np.ndarray, Array]:
    """Two parts of one claim: `conjunction_of([a, b], levels)`."""
    return conjunction_of([a, b], levels)


def conjunction_of(parts: list[dict], levels: Levels) -> tuple[np.ndarray, Array]:
    """Parts of one claim: (codes, p_refute). Confirmed when every part confirms (each at
    alpha: an intersection-union test keeps alpha); refuted when any refutes, Bonferroni over
    the k parts (p_refute = k x the smallest p); underpowered when any part is. A part on
    fewer than min_seeds seeds cannot refute (its p-value is left out)."""
    def p_of(part):
        p = np.asarray(part["p_refute"], dtype=float)
        return p if part["n_seeds"] >= levels.min_seeds else np.full(p.shape, np.nan)

    codes = np.broadcast_arrays(*(np.asarray(part["code"]) for part in parts))
    smallest = p_of(parts[0])
    for part in parts[1:]:
        smallest = np.fmin(smallest, p_of(part))
    p_refute = np.minimum(1.0, len(parts) * smallest)
    code = np.full(codes[0].shape, C_INCONCLUSIVE, dtype=np.int8)
    code[np.logical_or.reduce([c == C_UNDERPOWERED for c in codes])] = C_UNDERPOWERED
    code[np.logical_and.reduce([c == C_CONFIRMED for c in codes])] = C_CONFIRMED
    code[np.asarray(p_refute) < levels.alpha] = C_REFUTED
    return code, p_refute


def holm(pvalues: npt.ArrayLike) -> Array:
    """Holm-adjusted p-values (step-down, family-wise error at the nominal level); nan stays."""
    p = np.asarray(pvalues, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    finite = np.flatnonzero(np.isfinite(p))
    if finite.size == 0:
        return out
    order = finite[np.argsort(p[finite])]
    m = order.size
    adjusted = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    out[order] = adjusted
    return out


def slopes(x: npt.ArrayLike, y: npt.ArrayLike) -> Array:
    """Least-squares slope of y against x along y's last axis (x: that axis' coordinates)."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    xc = x - x.mean()
    return (y - y.mean(-1, keepdims=True)) @ xc / float(xc @ xc)


def seed_bootstrap(n_seeds: int, draws: int, rng: np.random.Generator) -> np.ndarray:
    """(draws, n_seeds) indices: each row resamples whole seeds with replacement."""
    return rng.integers(0, n_seeds, size=(draws, n_seeds))


def bootstrap_se(replicates: npt.ArrayLike, n_seeds: int) -> Array:
    """Standard error from seed-bootstrap replicates (last axis), inflated by sqrt(s / (s - 1)).

    The plain bootstrap variance of a mean over s seeds is (s - 1)/s of the unbiased one; with
    5 seeds the plain percentile interval covers far less than its level. The inflated SE with
    a t_{s-1} quantile restores the Student-t interval for a mean and is what every bootstrap
    interval of the report uses.
    """
    rep = np.asarray(replicates, dtype=np.float64)
    if n_seeds < 2:
        return np.full(rep.shape[:-1], np.nan)
    return rep.std(-1, ddof=1) * math.sqrt(n_seeds / (n_seeds - 1))


def t_pvalues(estimate: npt.ArrayLike, se: npt.ArrayLike, df: int) -> tuple[Array, Array]:
    """One-sided p-values of "estimate > 0" and of "estimate < 0" (Student-t, df)."""
    z = _ratio(np.asarray(estimate, float), np.asarray(se, float))
    return _t_sf(z, df), _t_sf(-z, df)


def rates(codes: npt.ArrayLike) -> dict[str, float]:
    """Share of each verdict among calibration draws."""
    c = np.ravel(codes)
    return {name: float(np.mean(c == code)) for code, name in CODES.items()}
