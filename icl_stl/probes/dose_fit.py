"""The dose-response of the replaced fraction q: chaos subtraction and the slope in q.

For one seed, lambda and generation, with d_r(q) the squared distance between the loop with a
fraction q of S_0 replaced and its base (both in batch order r) and c the squared distance
between the base in order 0 and its chaos twin (another batch order):

    excess(q) = mean_r d_r(q) - c

If training is chaotic, any change of the data decorrelates a loop from its base as fully as a
new batch order does, so d_r(q) = ||Delta m(q)||^2 + (the chaos floor, which c estimates): the
excess is the systematic part, which for independent fresh replacements grows linearly in the
number replaced, q n. The per-prompt effect is the slope in q over n.

The slope is fitted WITH an intercept (`dose_slope(..., intercept=True)`, the primary): the
excess is 0 at q = 0 only if a replaced loop decorrelates from its base as fully as the chaos
twin does. Where it decorrelates less (small q, a loop that is not fully chaotic), the excess
at small q is pulled below the line by the shared part of the noise, and a fit through the
origin would fold that into the slope. With an intercept, subtracting c moves only the
intercept, so the slope does not depend on the chaos twin at all, and the intercept (mean d at
q -> 0 minus c) is the check that the floor is the chaos floor (near 0: a replaced loop is as
far from its base as a new batch order). It costs little: at q = 0.3%, 1%, 3% the slope's
variance is 2,550 sigma_d^2 with an intercept and 990 sigma_d^2 + 1,820 sigma_c^2 through the
origin (sigma_d, sigma_c: the noise of one replaced loop's and of the twin's distance). The
fit through the origin is recorded beside it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import numpy as np

STATISTICS = ("sq_dist", "w2_sq", "abs_dist")


def dose_slope(fractions: Sequence[float], values: np.ndarray, intercept: bool = True
               ) -> tuple[np.ndarray, np.ndarray]:
    """(slope, intercept) of values (..., len(fractions)) against q by least squares; through
    the origin the intercept is 0."""
    q = np.asarray(fractions, dtype=float)
    y = np.asarray(values, dtype=float)
    if not intercept:
        slope = (y * q).sum(-1) / (q * q).sum()
        return slope, np.zeros_like(slope)
    qc = q - q.mean()
    slope = (y * qc).sum(-1) / (qc * qc).sum()
    return slope, y.mean(-1) - slope * q.mean()


def _mean(values: list) -> float | None:
    vals = [float(v) for v in values if v is not None]
    return sum(vals) / len(vals) if vals else None


def dose_rows(records: list[dict]) -> list[dict]:
    """One row per (seed, n, lambda, generation) from the members' records (module doc): per q
    the squared distance (mean over batch orders), the chaos twin's, their difference, and the
    slope in q with and without an intercept; the same for W2^2 between the Gaussian heads;
    |delta mu| (abs_dist) beside them. A cell without a chaos twin or a replaced loop is
    skipped."""
    cells: dict[tuple, dict] = defaultdict(lambda: {"dose": defaultdict(list), "chaos": []})
    for r in records:
        role = r.get("dose_role")
        if role not in ("dose", "chaos"):
            continue
        key = (r["seed"], r["n"], float(r["real_fraction"]), r["generation"])
        if role == "chaos":
            cells[key]["chaos"].append(r)
        else:
            cells[key]["dose"][float(r["fraction"])].append(r)
    rows = []
    for (seed, n, lam, generation), cell in sorted(cells.items()):
        if not cell["chaos"] or not cell["dose"]:
            continue
        qs = sorted(cell["dose"])
        row: dict = {"seed": seed, "n": n, "real_fraction": lam, "generation": generation,
                     "fractions": qs, "orders": 1 + len(cell["chaos"]),
                     "replaced": [int(round(q * n)) for q in qs]}
        for stat in STATISTICS:
            chaos = _mean([r.get(stat) for r in cell["chaos"]])
            dose = [_mean([r.get(stat) for r in cell["dose"][q]]) for q in qs]
            row[stat] = dose
            row[f"chaos_{stat}"] = chaos
            row[f"{stat}_by_order"] = [[r.get(stat) for r in sorted(
                cell["dose"][q], key=lambda r: r.get("batch_order", 0))] for q in qs]
            if stat == "abs_dist" or chaos is None or any(v is None for v in dose):
                continue
            excess = np.asarray(dose) - chaos
            slope, icpt = dose_slope(qs, excess, intercept=True)
            origin, _ = dose_slope(qs, excess, intercept=False)
            row.update({f"{stat}_excess": excess.tolist(), f"{stat}_slope": float(slope),
                        f"{stat}_intercept": float(icpt), f"{stat}_slope_origin": float(origin),
                        f"{stat}_per_prompt": float(slope) / n})
        rows.append(row)
    return rows
