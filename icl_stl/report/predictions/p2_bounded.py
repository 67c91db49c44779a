"""Prediction 2, version 1 (exploratory): at lambda > 0 the test risk stays bounded across
generations; and its heuristic, a larger lambda gives a lower plateau
(`Prediction.sub["ordering"]`). Kept as docs/results/cpu was judged, group-mean gate included;
version 2 is `p2_matched_bounded`.

Judged from the loops' per-generation records without augmentation (m = 0) on the last third
of generations. `p2_core` and `order_core` take arrays with the seed axis and any leading axes
(calibration draws); P3 (b) and P6 reuse them with their own margins.
"""

from __future__ import annotations

import numpy as np

from icl_stl.report.document import Document
from icl_stl.report.evidence import Evidence
from icl_stl.report.groups import (
    describe_group,
    group_by,
    in_theorem_setting,
    last_third,
    seed_matrix,
)
from icl_stl.report.rules import ReportConfig
from icl_stl.report.stats import directional_test, equivalence_test, slopes
from icl_stl.report.verdict import (
    CONFIRMED,
    INCONCLUSIVE,
    NOT_APPLICABLE,
    NOT_TESTED,
    REFUTED,
    UNDERPOWERED,
    GroupResult,
    Prediction,
    apply_gate,
    describe_test,
    finalise,
    fmt,
    gate_of,
    largest,
    result_of,
)


def rule(cfg: ReportConfig) -> str:
    return (
        "Per group (configuration, n, lambda > 0, m = 0), on the last third of generations (at "
        "least 3, generation 0 excluded: the rise to a plateau is expected), one number per "
        "seed: the least-squares slope of test risk against generation divided by the plateau "
        "(mean risk over seeds and window). Equivalence test (TOST, two one-sided t-tests at "
        f"{cfg.alpha:g}): **confirmed** (bounded) if the {1 - 2 * cfg.alpha:.0%} interval of "
        f"the mean lies inside +-{cfg.p2_margin:g} per generation, **refuted** if the mean is "
        f"significantly above +{cfg.p2_margin:g}.")


def rule_order(cfg: ReportConfig) -> str:
    return (
        "Heuristic (an upper bound does not imply it), per group (configuration, n) with two or "
        "more lambda > 0, seeds as blocks: per seed, the least-squares slope of the plateau "
        "against lambda times the lambda range, over the mean plateau (the relative change of "
        "the plateau across the lambda range). One-sided t-test: **confirmed** if significantly "
        f"below -{cfg.order_margin:g}, **refuted** if significantly above it; **not tested** "
        "with fewer than two lambda > 0.")


def p2_core(window_risk: np.ndarray, window: list[int], cfg: ReportConfig,
            margin: float | None = None) -> dict:
    """window_risk (..., seeds, len(window)): per-seed slope / pooled plateau, TOST."""
    window_risk = np.asarray(window_risk, dtype=float)
    plateau = window_risk.mean((-1, -2))[..., None]
    rel = slopes(window, window_risk) / plateau
    return equivalence_test(rel, cfg.p2_margin if margin is None else margin, cfg.levels)


def order_core(plateaus: np.ndarray, lams: list[float], cfg: ReportConfig,
               margin: float | None = None) -> dict:
    """plateaus (..., seeds, len(lams)): per-seed relative change of the plateau across the
    lambda range (seeds as blocks); the claim is a fall beyond the margin (default
    order_margin; P6(b) passes its own, with verifier quality as the abscissa)."""
    plateaus = np.asarray(plateaus, dtype=float)
    lam = np.asarray(lams, dtype=float)
    level = plateaus.mean((-1, -2))[..., None]
    change = slopes(lam, plateaus) * (lam.max() - lam.min()) / level
    return directional_test(change, -(cfg.order_margin if margin is None else margin), -1,
                            cfg.levels)


def _group(name: str, records: list[dict], cfg: ReportConfig) -> tuple[GroupResult, dict]:
    gens = sorted({r["generation"] for r in records})
    window = last_third(gens)
    mat, seeds = seed_matrix(records, window) if window else (np.zeros((0, 0)), [])
    if not window or not seeds:
        return GroupResult(name, NOT_TESTED, numbers=f"generations {gens}: needs at least 3 "
                           "after generation 0 and a seed with all of them"), {}
    res = result_of(name, p2_core(mat, window, cfg), cfg.p2_margin, "slope / plateau")
    plateau = float(mat.mean())
    res.numbers = (f"plateau {fmt(plateau)} (generations {window[0]}-{window[-1]}); "
                   + describe_test(res, "/gen"))
    return res, dict(zip(seeds, mat.mean(1)))


def _order_group(name: str, plateaus: dict[float, dict], cfg: ReportConfig) -> GroupResult:
    lams = sorted(plateaus)
    seeds = sorted(set.intersection(*(set(p) for p in plateaus.values())))
    if not seeds:
        return GroupResult(name, NOT_TESTED, numbers="no seed has every lambda")
    mat = np.array([[plateaus[lam][s] for lam in lams] for s in seeds])
    res = result_of(name, order_core(mat, lams, cfg), cfg.order_margin,
                    "relative plateau change across lambda")
    shown = ", ".join(f"λ={lam:g}: {fmt(mat[:, i].mean())}" for i, lam in enumerate(lams))
    res.numbers = f"plateaus {shown}; " + describe_test(res)
    return res


def verdict(evidence: Evidence, cfg: ReportConfig) -> Prediction:
    pred = Prediction(2, "lambda > 0: test risk stays bounded across generations.",
                      rule(cfg), (CONFIRMED, REFUTED, INCONCLUSIVE, UNDERPOWERED,
                                  NOT_APPLICABLE),
                      primary_rule="the counted group with the largest n, then the smallest "
                                   "lambda > 0")
    order = Prediction(2, "Larger lambda, lower plateau (heuristic).", rule_order(cfg),
                       (CONFIRMED, REFUTED, INCONCLUSIVE, UNDERPOWERED, NOT_APPLICABLE,
                        NOT_TESTED), heuristic=True, primary_key="2.ordering",
                       primary_rule="the counted group with the largest n")
    plain = [r for r in evidence.records if r.get("augment", 0) == 0]
    for (config, n), recs in group_by(plain, lambda r: (r["config"], r["n"])).items():
        gate = gate_of(recs, cfg.gate_tolerance)
        plateaus: dict[float, dict] = {}
        for (lam,), lam_recs in group_by(recs, lambda r: (r["real_fraction"],)).items():
            if lam <= 0 or len({r["generation"] for r in lam_recs}) < 2:
                continue
            res, per_seed = _group(describe_group(config, n=n, λ=float(lam)), lam_recs, cfg)
            res.counted, res.key = in_theorem_setting(lam_recs), {"n": n, "lambda": lam}
            pred.groups.append(apply_gate(res, gate))
            if per_seed:
                plateaus[float(lam)] = per_seed
        if len(plateaus) >= 2:
            res = _order_group(describe_group(config, n=n), plateaus, cfg)
            res.counted, res.key = in_theorem_setting(recs), {"n": n}
            order.groups.append(apply_gate(res, gate))
    finalise(pred, cfg, lambda gs: largest(gs, "n", then="lambda"))
    finalise(order, cfg, lambda gs: largest(gs, "n"))
    if not order.groups:
        order.reading = "not tested: no group has two or more lambda > 0"
    pred.sub["ordering"] = order
    return pred


def section(doc: Document, evidence: Evidence, pred: Prediction) -> None:
    """P2's groups and its ordering heuristic (the figures are Prediction 1's)."""
    doc.add("### Prediction 2 by group", "")
    doc.verdict_table(pred)
    doc.add("### Prediction 2, heuristic: larger lambda, lower plateau", "")
    order = pred.sub["ordering"]
    if order.groups:
        doc.verdict_table(order)
    else:
        doc.add("Not tested: no group has two or more lambda > 0.", "")
