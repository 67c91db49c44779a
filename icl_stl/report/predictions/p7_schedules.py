"""Prediction 7: a decaying lambda with a positive floor behaves like a constant lambda at the
floor; a floor of zero collapses (docs/THEORY.md section 7).

Groups are the unfiltered, pool-free loops with a decaying schedule, by (base configuration,
n, schedule, lambda_1, rate, floor), each paired with the constant-schedule loops at lambda =
floor of the same base configuration, n and seeds (`extension_runs`), usually another run's.
"""

from __future__ import annotations

import math

import numpy as np

from icl_stl.config import ConfigError
from icl_stl.config.schedules import real_fraction
from icl_stl.report import figures
from icl_stl.report.document import Document
from icl_stl.report.evidence import Evidence
from icl_stl.report.extension_runs import (
    comparison,
    comparison_records,
    mean_ridge,
    per_seed,
)
from icl_stl.report.gating import apply_loop_gate, split_by_gate
from icl_stl.report.groups import (
    describe_group,
    group_by,
    last_third,
    seed_matrix,
    shared_generations,
)
from icl_stl.report.rules import ReportConfig
from icl_stl.report.stats import CODES, directional_test, slopes, tost_both_sides
from icl_stl.report.verdict import (
    CONFIRMED,
    INCONCLUSIVE,
    NOT_APPLICABLE,
    NOT_TESTED,
    REFUTED,
    UNDERPOWERED,
    GroupResult,
    Prediction,
    describe_test,
    fields_of,
    finalise,
    fmt,
)

FIVE = (CONFIRMED, REFUTED, INCONCLUSIVE, UNDERPOWERED, NOT_APPLICABLE)
MAX_GENERATIONS = 10_000  # how far ahead the report looks for the generation a floor is reached


def rule(cfg: ReportConfig) -> str:
    return (
        "Per group (base configuration, n, schedule, lambda_1, rate, floor > 0) of unfiltered "
        "loops without a task pool, paired with the constant-schedule loops at lambda = floor "
        "of the same base configuration, n and seeds. Window: the last third of generations "
        "(at least 3, generation 0 excluded), all of which must have lambda_i = floor (else "
        "**not applicable**, with the generation the schedule reaches its floor). Per seed: "
        "log(mean window risk of the decaying loop / that of the constant loop). Equivalence "
        f"inside +-log(1 + {cfg.p7_margin:g}): **confirmed** if the {1 - 2 * cfg.alpha:.0%} "
        "interval lies inside, **refuted** if the mean is significantly outside on either side "
        f"(each side at {cfg.alpha / 2:g}).")


def rule_collapse(cfg: ReportConfig) -> str:
    return (
        "Heuristic (the bound says errors can compound, not that they must), per group of a "
        "decaying schedule with floor 0: on the last third of generations, per seed the "
        "least-squares slope of test risk against generation over the plateau (mean risk over "
        "seeds and window). One-sided t-test: **confirmed** if significantly above "
        f"+{cfg.p7_collapse_margin:g} per generation, **refuted** if significantly below it. "
        "The paired constant lambda = 0 loop's statistic is shown beside it.")


def p7a_core(decay_window: np.ndarray, const_window: np.ndarray, cfg: ReportConfig) -> dict:
    """(..., seeds, window) risks of the decaying and the paired constant loop: per seed the
    log ratio of their mean window risks, equivalence inside +-log(1 + p7_margin), refuted
    outside on either side (`stats.tost_both_sides`)."""
    ratio = np.log(np.asarray(decay_window, float).mean(-1)
                   / np.asarray(const_window, float).mean(-1))
    return tost_both_sides(ratio, math.log1p(cfg.p7_margin), cfg.levels)


def p7b_core(window_risk: np.ndarray, window: list[int], cfg: ReportConfig) -> dict:
    """(..., seeds, window) risks: per-seed slope over the pooled plateau, above the margin?"""
    window_risk = np.asarray(window_risk, dtype=float)
    plateau = window_risk.mean((-1, -2))[..., None]
    rel = slopes(window, window_risk) / plateau
    return directional_test(rel, cfg.p7_collapse_margin, +1, cfg.levels)


def lambda_of(r: dict) -> float | None:
    """lambda_i of a record: recorded (`real_fraction_i`), else its schedule's."""
    if r.get("real_fraction_i") is not None:
        return float(r["real_fraction_i"])
    try:
        return real_fraction(int(r["generation"]), r["schedule"], float(r["real_fraction"]),
                             float(r["rate"]), float(r["floor"]))
    except (ConfigError, ValueError):
        return None


def floor_reached(r: dict) -> int | None:
    """The first generation whose lambda_i is the floor (None: not within MAX_GENERATIONS)."""
    for i in range(1, MAX_GENERATIONS):
        try:
            lam = real_fraction(i, r["schedule"], float(r["real_fraction"]), float(r["rate"]),
                                float(r["floor"]))
        except (ConfigError, ValueError):
            return None
        if lam == float(r["floor"]):  # max(floor, .) returns the floor itself
            return i
    return None


def _not_at_floor(name: str, r0: dict, window: list[int], lams: list) -> GroupResult:
    reach = floor_reached(r0)
    if reach is None:
        where = f"never reaches its floor {r0['floor']:g} within {MAX_GENERATIONS} generations"
    else:
        needed = next(t for t in range(reach, MAX_GENERATIONS + reach)
                      if last_third(list(range(t + 1)))[:1] >= [reach])
        where = (f"reaches its floor {r0['floor']:g} at generation {reach} (a window all at the "
                 f"floor needs {needed} generations)")
    shown = ", ".join(f"{g}: {fmt(v)}" for g, v in zip(window, lams))
    return GroupResult(name, NOT_APPLICABLE, numbers=f"λ_i in the window {shown}: the schedule "
                       + where)


def _name(r0: dict) -> str:
    return describe_group(r0["base_label"], n=r0["n"], schedule=r0["schedule"],
                          λ1=float(r0["real_fraction"]), rate=float(r0["rate"]),
                          floor=float(r0["floor"]))


def _a_group(recs: list[dict], index, cfg: ReportConfig) -> GroupResult:
    r0 = recs[0]
    name = _name(r0)
    gens = shared_generations(recs)  # what every seed reached: uneven loops drop no seed
    window = last_third(gens)
    if not window:
        return GroupResult(name, NOT_TESTED, numbers=f"generations {gens}: needs at least 3 "
                           "after generation 0")
    lams = [lambda_of(next(r for r in recs if r["generation"] == g)) for g in window]
    if any(lam is None or abs(lam - float(r0["floor"])) > 1e-9 for lam in lams):
        return _not_at_floor(name, r0, window, lams)
    mine = per_seed(recs)
    pair = comparison(index, r0["base"], r0["n"], float(r0["floor"]), sorted(mine))
    seeds = [s for s in sorted(pair) if all(g in mine[s] and g in pair[s] for g in window)]
    if not seeds:
        return GroupResult(name, NOT_TESTED, numbers=f"no constant-schedule loop at λ = "
                           f"{r0['floor']:g} with the same base configuration, n and seeds "
                           f"over generations {window[0]}-{window[-1]}")
    dec = np.array([[mine[s][g]["test_risk"] for g in window] for s in seeds])
    const = np.array([[pair[s][g]["test_risk"] for g in window] for s in seeds])
    if not (np.all(dec > 0) and np.all(const > 0)):
        return GroupResult(name, NOT_TESTED, numbers="non-positive test risk: no log ratio")
    a = p7a_core(dec, const, cfg)
    fields = fields_of(a)
    res = GroupResult(name, CODES[int(a["code"])], fields["estimate"], fields["interval"],
                      math.log1p(cfg.p7_margin), len(seeds), fields["min_detectable_effect"],
                      fields["p_refute"], statistic="log(decaying / constant window risk)")
    res.parts = {"window": window, "decaying_plateau": float(dec.mean()),
                 "constant_plateau": float(const.mean())}
    res.numbers = (f"window {window[0]}-{window[-1]} at λ = {r0['floor']:g}: decaying "
                   f"{fmt(float(dec.mean()))}, constant {fmt(float(const.mean()))}; "
                   + describe_test(res))
    return res


def _b_group(recs: list[dict], index, cfg: ReportConfig) -> GroupResult:
    r0 = recs[0]
    name = _name(r0)
    gens = shared_generations(recs)
    window = last_third(gens)
    mat, seeds = seed_matrix(recs, window) if window else (np.zeros((0, 0)), [])
    if not window or not seeds:
        return GroupResult(name, NOT_TESTED, numbers=f"generations {gens}: needs at least 3 "
                           "after generation 0 and a seed with all of them")
    b = p7b_core(mat, window, cfg)
    fields = fields_of(b)
    res = GroupResult(name, CODES[int(b["code"])], fields["estimate"], fields["interval"],
                      cfg.p7_collapse_margin, len(seeds), fields["min_detectable_effect"],
                      fields["p_refute"], statistic="slope / plateau")
    lams = [lambda_of(next(r for r in recs if r["generation"] == g)) for g in window]
    res.numbers = (f"plateau {fmt(float(mat.mean()))}, λ_i {', '.join(map(fmt, lams))} "
                   f"(generations {window[0]}-{window[-1]}); " + describe_test(res, "/gen"))
    pair = comparison(index, r0["base"], r0["n"], 0.0, seeds)
    both = [s for s in seeds if all(g in pair.get(s, {}) for g in window)]
    if both:
        const = np.array([[pair[s][g]["test_risk"] for g in window] for s in both])
        c = p7b_core(const, window, cfg)
        res.parts["constant_zero"] = {**fields_of(c), "verdict": CODES[int(c["code"])]}
        res.numbers += (f"; constant λ=0 loop: slope / plateau {fmt(float(c['estimate']))}/gen "
                        f"({CODES[int(c['code'])]})")
    else:
        res.numbers += "; no paired constant λ=0 loop"
    return res


def verdict(evidence: Evidence, cfg: ReportConfig) -> Prediction:
    pred = Prediction(7, "A decaying lambda with a positive floor behaves like a constant "
                         "lambda at the floor.", rule(cfg), FIVE,
                      primary_rule="the counted group with the largest n, then the smallest "
                                   "floor > 0, then exponential decay")
    collapse = Prediction(7, "A decaying lambda with floor 0 collapses (heuristic).",
                          rule_collapse(cfg), FIVE + (NOT_TESTED,), heuristic=True,
                          primary_key="7.collapse",
                          primary_rule="the counted group with the largest n, then "
                                       "exponential decay")
    tagged, index = evidence.tagged, evidence.passing_index(cfg.gate_tolerance)
    decaying = [r for r in tagged if r["schedule"] != "constant" and r["filter"] == "none"
                and r["n_tasks"] is None and r.get("augment", 0) == 0]
    key = lambda r: (r["base"], r["n"], r["schedule"], float(r["real_fraction"]),  # noqa: E731
                     float(r["rate"]), float(r["floor"]))
    for (_, n, schedule, _, _, floor), recs in group_by(decaying, key).items():
        target = pred if floor > 0 else collapse
        kept, gate = split_by_gate(recs, cfg.gate_tolerance)  # each loop on its own gen 0
        res = ((_a_group if floor > 0 else _b_group)(kept, index, cfg) if kept
               else GroupResult(_name(recs[0]), NOT_APPLICABLE))
        res.counted = all(r["counted"] for r in recs)
        res.key = {"n": n, "floor": floor, "exponential": schedule == "exponential"}
        target.groups.append(apply_loop_gate(res, gate, bool(kept)))

    def rank(g: GroupResult) -> tuple:
        return (-g.key["n"], g.key["floor"], not g.key["exponential"])

    finalise(pred, cfg, lambda gs: min(gs, key=rank, default=None))
    finalise(collapse, cfg, lambda gs: min(gs, key=rank, default=None))
    if not collapse.groups:
        collapse.reading = "not tested: no decaying schedule with floor 0"
    pred.sub["collapse"] = collapse
    return pred


def section(doc: Document, evidence: Evidence, pred: Prediction) -> None:
    """Risk against generation per schedule beside the constant loop at its floor, lambda_i by
    generation, then P7's groups and (b)."""
    doc.add("## Prediction 7: decaying real-data schedules", "",
            "Mean test risk over seeds (band: min..max) of every schedule beside the "
            "constant-λ loop at its floor (dashed), same base configuration, n and seeds; the "
            "table gives λ_i by generation.", "")
    decaying = [r for r in evidence.tagged if r["schedule"] != "constant"
                and r["filter"] == "none" and r["n_tasks"] is None]
    rows = []
    key = lambda r: (r["schedule"], float(r["real_fraction"]), float(r["rate"]),  # noqa: E731
                     float(r["floor"]))
    for (base, n), recs in group_by(decaying, lambda r: (r["base"], r["n"])).items():
        curves: dict[str, list[dict]] = {}
        for (schedule, lam0, rate, floor), group in group_by(recs, key).items():
            label = f"{schedule} λ1={lam0:g} rate={rate:g} floor={floor:g}"
            curves[label] = group
            const = comparison_records(evidence.index, base, n, floor,
                                       {r["seed"] for r in group})
            if const:
                curves[f"comparison: constant λ = {floor:g}"] = const
            by_gen = {r["generation"]: lambda_of(r) for r in group}
            rows.append([describe_group(recs[0]["base_label"], n=n), label,
                         ", ".join(f"{g}: {fmt(by_gen[g])}" for g in sorted(by_gen))])
        name = describe_group(recs[0]["base_label"], n=n)
        title = figures.group_title(figures.short_name(
            recs[0]["base_label"], (r["config"] for r in evidence.records)), n=n)
        doc.figure("schedules", f"risk against generation per schedule, {name}",
                   lambda path, curves=curves, title=title, recs=recs: figures.curves_figure(
                       curves, path, title, mean_ridge(recs)))
    if rows:
        doc.table(["group", "schedule", "λ_i by generation"], rows)
    doc.verdict_table(pred)
    doc.add("### Prediction 7 (b), heuristic: a floor of zero collapses", "")
    if pred.sub["collapse"].groups:
        doc.verdict_table(pred.sub["collapse"])
    else:
        doc.add("Not tested: no decaying schedule with floor 0.", "")
