"""Predictions 6-8, on the loop's extensions (docs/THEORY.md section 7), and their sections of
REPORT.md.

- P6 (`filter_verdicts`): filters on synthetic data at lambda = 0;
- P7 (`schedule_verdicts`): decaying real-data schedules;
- P8 (`pool_verdicts`): finite task pools.

As for P1-P5, each rule's text is printed verbatim and its statistics are `*_core` functions on
arrays with a seed axis (calibrated in tests/report/test_calibration.py). The loops these predictions
judge are outside the theorem's setting for P1-P5 (shown, not counted there); here the
comparison loops come from other runs, paired by base configuration, n and seed
(`extension_runs`).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from icl_stl.report import figures
from icl_stl.report.extension_runs import comparison, plain_index, tag
from icl_stl.report.filter_verdicts import (
    filter_of,
    p6_combine,
    p6a_core,
    p6b_core,
    rule_p6,
    rule_p6b,
    verdict_p6,
)
from icl_stl.report.pool_verdicts import (
    p8_combine,
    p8a_core,
    p8b_core,
    rule_p8,
    tracking_table,
    verdict_p8,
)
from icl_stl.report.rules import Prediction, describe_group, fmt, group_by
from icl_stl.report.schedule_verdicts import (
    lambda_of,
    p7a_core,
    p7b_core,
    rule_p7,
    rule_p7b,
    verdict_p7,
)

__all__ = ["p6_combine", "p6a_core", "p6b_core", "p7a_core", "p7b_core", "p8_combine",
           "p8a_core", "p8b_core", "rule_p6", "rule_p6b", "rule_p7", "rule_p7b", "rule_p8",
           "verdict_p6", "verdict_p7", "verdict_p8", "extension_verdicts", "write_sections"]


def extension_verdicts(records: list[dict], settings: dict[str, dict], cfg) -> list[Prediction]:
    """[P6, P7, P8] from `collect.loop_records` and `collect.settings_by_path`."""
    return [verdict_p6(records, settings, cfg), verdict_p7(records, settings, cfg),
            verdict_p8(records, settings, cfg)]


def _ridge(records: list[dict]) -> float | None:
    values = [r["ridge_risk"] for r in records if r.get("ridge_risk") is not None]
    return float(np.mean(values)) if values else None


def _comparison_records(index: dict, base: str, n: int, lam: float, seeds: set) -> list[dict]:
    """The paired plain loops' records, every generation (for a figure)."""
    return [rec for gens in comparison(index, base, n, lam, sorted(seeds)).values()
            for rec in gens.values()]


def _filter_section(doc, tagged: list[dict], index: dict, p6: Prediction,
                    verdict_section: Callable) -> None:
    doc.add("## Prediction 6: filters on synthetic data at λ = 0", "",
            "Mean test risk over seeds (band: min..max) of every filter beside the unfiltered "
            "λ = 0 loop of the same base configuration, n and seeds (dashed).", "")
    filtered = [r for r in tagged if r["filter"] != "none" and r["real_fraction"] == 0
                and r["schedule"] == "constant" and r["n_tasks"] is None]
    for (base, n), recs in group_by(filtered, lambda r: (r["base"], r["n"])).items():
        curves: dict[str, list[dict]] = {}
        for r in recs:
            label = ", ".join(f"{k}={v}" for k, v in filter_of(r).items())
            curves.setdefault(label, []).append(r)
        seeds = {r["seed"] for r in recs}
        plain = _comparison_records(index, base, n, 0.0, seeds)
        if plain:
            curves["comparison: unfiltered λ = 0"] = plain
        name = describe_group(recs[0]["base_label"], n=n)
        doc.figure(figures.curves_figure(curves, doc.figure_path("filters"), name, _ridge(recs)),
                   f"risk against generation per filter, {name}")
    verdict_section(doc, p6)
    doc.add("### Prediction 6 (b): better verifier, lower plateau", "")
    if p6.sub["quality"].groups:
        verdict_section(doc, p6.sub["quality"])
    else:
        doc.add("Not tested: no verifier groups that differ in quality.", "")


def _schedule_section(doc, tagged: list[dict], index: dict, p7: Prediction,
                      verdict_section: Callable) -> None:
    doc.add("## Prediction 7: decaying real-data schedules", "",
            "Mean test risk over seeds (band: min..max) of every schedule beside the "
            "constant-λ loop at its floor (dashed), same base configuration, n and seeds; the "
            "table gives λ_i by generation.", "")
    decaying = [r for r in tagged if r["schedule"] != "constant" and r["filter"] == "none"
                and r["n_tasks"] is None]
    rows = []
    for (base, n), recs in group_by(decaying, lambda r: (r["base"], r["n"])).items():
        curves: dict[str, list[dict]] = {}
        key = lambda r: (r["schedule"], float(r["real_fraction"]), float(r["rate"]),  # noqa: E731
                         float(r["floor"]))
        for (schedule, lam0, rate, floor), group in group_by(recs, key).items():
            label = f"{schedule} λ1={lam0:g} rate={rate:g} floor={floor:g}"
            curves[label] = group
            seeds = {r["seed"] for r in group}
            const = _comparison_records(index, base, n, floor, seeds)
            if const:
                curves[f"comparison: constant λ = {floor:g}"] = const
            by_gen = {r["generation"]: lambda_of(r) for r in group}
            rows.append([describe_group(recs[0]["base_label"], n=n), label,
                         ", ".join(f"{g}: {fmt(by_gen[g])}" for g in sorted(by_gen))])
        name = describe_group(recs[0]["base_label"], n=n)
        doc.figure(figures.curves_figure(curves, doc.figure_path("schedules"), name,
                                         _ridge(recs)),
                   f"risk against generation per schedule, {name}")
    if rows:
        doc.table(["group", "schedule", "λ_i by generation"], rows)
    verdict_section(doc, p7)
    doc.add("### Prediction 7 (b), heuristic: a floor of zero collapses", "")
    if p7.sub["collapse"].groups:
        verdict_section(doc, p7.sub["collapse"])
    else:
        doc.add("Not tested: no decaying schedule with floor 0.", "")


def _pool_section(doc, tagged: list[dict], p8: Prediction, verdict_section: Callable) -> None:
    doc.add("## Prediction 8: finite task pools", "",
            "Generation 0 on test prompts from the Gaussian prior: the learner's mean squared "
            "distance (/d) to ridge's and to dMMSE's predictions, per pool size M (means over "
            "seeds); log ratio > 0: closer to dMMSE.", "")
    pools = [r for r in tagged if r["n_tasks"] is not None and r["filter"] == "none"
             and r["schedule"] == "constant"]
    rows = []
    for (_, n), recs in group_by(pools, lambda r: (r["pool_base"], r["n"])).items():
        for m, t in tracking_table(recs).items():
            risks = [x for x in t["test_risk_prior"] if x is not None]
            rows.append([describe_group(recs[0]["pool_base_label"], n=n) or "(all)", m,
                         recs[0]["task_d"], len(t["seeds"]),
                         fmt(float(np.mean(t["ridge"]))) if t["seeds"] else "n/a",
                         fmt(float(np.mean(t["dmmse"]))) if t["seeds"] else "n/a",
                         fmt(t["mean"]) + (f" [{fmt(min(t['log_ratio']))}, "
                                           f"{fmt(max(t['log_ratio']))}]" if t["seeds"] else ""),
                         fmt(float(np.mean(risks))) if risks else "n/a"])
    if rows:
        doc.table(["group", "M", "d", "seeds", "distance to ridge", "distance to dMMSE",
                   "log(ridge / dMMSE) [min, max]", "risk on the prior"], rows)
    verdict_section(doc, p8)


def write_sections(doc, records: list[dict], settings: dict[str, dict],
                   preds: list[Prediction], verdict_section: Callable) -> None:
    """REPORT.md's sections of P6, P7 and P8 (preds: their `Prediction`s, in that order).
    `verdict_section(doc, prediction)` writes a prediction's group table (report.py)."""
    tagged = tag(records, settings)
    index = plain_index(tagged)
    p6, p7, p8 = preds
    _filter_section(doc, tagged, index, p6, verdict_section)
    _schedule_section(doc, tagged, index, p7, verdict_section)
    _pool_section(doc, tagged, p8, verdict_section)
