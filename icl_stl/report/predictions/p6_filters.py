"""Prediction 6: at lambda = 0 a verifier or confidence filter keeps the risk bounded, and the
plateau falls as the verifier's quality rises (docs/THEORY.md section 7).

Groups are the filtered lambda = 0 loops with a constant schedule and no task pool, by (base
configuration, n, filter and its settings); each is shown beside the unfiltered lambda = 0 loop
of the same base configuration, n and seeds (`extension_runs`), usually another run's. The
statistics reuse P1's and P2's (`p1_core`, `p2_core`, `order_core`) at P6's margins.
"""

from __future__ import annotations

import math

import numpy as np

from icl_stl.report import figures
from icl_stl.report.document import Document
from icl_stl.report.evidence import Evidence
from icl_stl.report.extension_runs import comparison, comparison_records, mean_ridge
from icl_stl.report.gating import apply_loop_gate, split_by_gate
from icl_stl.report.groups import (
    describe_group,
    group_by,
    last_third,
    seed_matrix,
    shared_generations,
)
from icl_stl.report.predictions.p1_collapse import p1_core
from icl_stl.report.predictions.p2_bounded import p2_core
from icl_stl.report.rules import ReportConfig
from icl_stl.report.stats import CODES, conjunction
from icl_stl.report.verdict import (
    CONFIRMED,
    INCONCLUSIVE,
    NOT_APPLICABLE,
    NOT_TESTED,
    REFUTED,
    UNDERPOWERED,
    GroupResult,
    Prediction,
    fields_of,
    finalise,
    fmt,
    fmt_ci,
)
from icl_stl.report.verifier_quality import DIALS, b_family, family_of, rule_quality

ALL_VERDICTS = (CONFIRMED, REFUTED, INCONCLUSIVE, UNDERPOWERED, NOT_APPLICABLE, NOT_TESTED)


def rule(cfg: ReportConfig) -> str:
    return (
        "Per group (base configuration, n, filter and its settings) of filtered loops at "
        "lambda = 0 with a constant schedule and no task pool. (a) *Bounded*: on the last third "
        "of generations (at least 3, generation 0 excluded), per seed the least-squares slope of "
        "test risk against generation over the plateau (mean risk over seeds and window); TOST "
        f"at {cfg.alpha:g}: confirmed if the {1 - 2 * cfg.alpha:.0%} interval lies inside "
        f"+-{cfg.p6_margin:g} per generation, refuted if the mean is significantly above "
        f"+{cfg.p6_margin:g}. Shown beside it: P1's statistic (log final / generation-0 risk) "
        "of the unfiltered lambda = 0 loop of the same base configuration, n and seeds; when it "
        "does not confirm collapse and (a) is not refuted, the group's reading says so (the "
        "verdict stands). (b) "
        "*Ordering by verifier quality* (verifier groups that differ only in one quality dial, "
        "seeds as blocks): P6 (b) below. **Confirmed** if (a) and, where tested, (b) confirm; "
        "**refuted** if either refutes (Bonferroni over the two parts).")


def p6a_core(window_risk: np.ndarray, window: list[int], cfg: ReportConfig) -> dict:
    """P2's boundedness test (`p2_core`) at p6_margin: (..., seeds, len(window)) risks."""
    return p2_core(window_risk, window, cfg, margin=cfg.p6_margin)


def p6_combine(a: dict, b: dict | None, cfg: ReportConfig) -> tuple[np.ndarray, np.ndarray]:
    """(codes, p_refute) of a group: (a) alone when (b) is not tested, else their
    conjunction (`stats.conjunction`)."""
    if b is None:
        return np.asarray(a["code"]), np.asarray(a["p_refute"], dtype=float)
    return conjunction(a, b, cfg.levels)


def filter_of(r: dict) -> dict:
    """The group's filter settings, for its name (defaults left out)."""
    out = {"filter": r["filter"], "keep": r["filter_keep"]}
    if r["filter_threshold"] is not None:
        out["threshold"] = r["filter_threshold"]
    if r["filter"] == "verifier":
        if r["verifier_source"] != "s0":
            out["source"] = r["verifier_source"]
        out["n_real"] = "all" if r["verifier_n_real"] is None else r["verifier_n_real"]
        for dial, short in (("verifier_label_noise", "label_noise"),
                            ("verifier_centre_noise", "centre_noise")):
            if r[dial]:
                out[short] = r[dial]
    return out


def _unfiltered_line(index, r0: dict, seeds: list[int], last: int, cfg) -> tuple[dict, str]:
    """P1's statistic of the paired unfiltered lambda = 0 loops (part `unfiltered`), reading."""
    pair = comparison(index, r0["base"], r0["n"], 0.0, seeds)
    paired = [s for s, gens in pair.items() if 0 in gens and last in gens]
    if not paired:
        return ({"seeds": 0}, "no unfiltered lambda = 0 loop with the same base configuration, "
                "n and seeds: whether the filter prevents a collapse cannot be read here")
    mat = np.array([[pair[s][0]["test_risk"], pair[s][last]["test_risk"]] for s in paired])
    if not np.all(mat > 0):
        return {"seeds": len(paired)}, "the unfiltered loop has non-positive risks"
    p1 = p1_core(mat, cfg)
    verdict = CODES[int(p1["code"])]
    part = {**fields_of(p1), "verdict": verdict, "seeds": len(paired), "generation": last,
            "risk_first": float(mat[:, 0].mean()), "risk_final": float(mat[:, 1].mean())}
    if verdict == CONFIRMED:
        return part, ""
    return part, (f"the unfiltered lambda = 0 loop of this configuration does not confirm "
                  f"collapse (P1 statistic {fmt(part['estimate'])}, {verdict}): a bounded "
                  "filtered loop shows nothing beyond it")


def _name(r0: dict) -> str:
    return describe_group(r0["base_label"], n=r0["n"], **filter_of(r0))


def _a_group(recs: list[dict], index, cfg: ReportConfig) -> tuple[GroupResult, dict]:
    r0 = recs[0]
    name = _name(r0)
    gens = shared_generations(recs)  # what every seed reached: uneven loops drop no seed
    window = last_third(gens)
    mat, seeds = seed_matrix(recs, window) if window else (np.zeros((0, 0)), [])
    if not window or not seeds:
        return GroupResult(name, NOT_TESTED, numbers=f"generations {gens}: needs at least 3 "
                           "after generation 0 and a seed with all of them"), {}
    a = p6a_core(mat, window, cfg)
    unfiltered, reading = _unfiltered_line(index, r0, seeds, gens[-1], cfg)
    fields = fields_of(a)
    if CODES[int(a["code"])] == REFUTED:  # the filtered loop grows: nothing to qualify
        reading = ""
    res = GroupResult(name, CODES[int(a["code"])], fields["estimate"], fields["interval"],
                      cfg.p6_margin, len(seeds), fields["min_detectable_effect"],
                      fields["p_refute"], statistic="slope / plateau", reading=reading)
    res.parts = {"a": {**fields, "verdict": res.verdict, "window": window},
                 "unfiltered": unfiltered}
    res.numbers = (f"plateau {fmt(float(mat.mean()))} (generations {window[0]}-{window[-1]}); "
                   f"(a) slope / plateau {fmt(res.estimate)}/gen {fmt_ci(res.interval)} "
                   f"({len(seeds)} seeds, MDE {fmt(res.min_detectable_effect)})")
    if unfiltered.get("estimate") is not None:
        res.numbers += (f"; unfiltered λ=0 loop: risk {fmt(unfiltered['risk_first'])} -> "
                        f"{fmt(unfiltered['risk_final'])}, P1 {unfiltered['verdict']}")
    res.key = {"n": r0["n"], "full_verifier": r0["filter"] == "verifier"
               and r0["verifier_n_real"] is None and not r0["verifier_label_noise"]
               and not r0["verifier_centre_noise"], "keep": r0["filter_keep"],
               "threshold": r0["filter_threshold"], "window": tuple(window)}
    return res, {"test": a, "plateaus": dict(zip(seeds, mat.mean(1)))}


def verdict(evidence: Evidence, cfg: ReportConfig) -> Prediction:
    pred = Prediction(6, "lambda = 0 with a verifier or confidence filter: the risk stays "
                         "bounded, and the plateau falls as the verifier improves.",
                      rule(cfg), ALL_VERDICTS[:5],
                      primary_rule="the counted group with the largest n, then the verifier "
                                   "fitted on all of S_0, then the strictest filter")
    quality = Prediction(6, "Better verifier, lower plateau (part b).", rule_quality(cfg),
                         ALL_VERDICTS, primary_key="6.quality",
                         primary_rule="the counted family with the largest n")
    tagged, index = evidence.tagged, evidence.passing_index(cfg.gate_tolerance)
    filtered = [r for r in tagged if r["filter"] != "none" and r["schedule"] == "constant"
                and r["n_tasks"] is None and r.get("augment", 0) == 0
                and r["real_fraction"] == 0]
    key = lambda r: (r["base"], r["n"], r["filter"], r["filter_keep"],  # noqa: E731
                     r["filter_threshold"], r["verifier_source"], *(r[d] for d in DIALS))
    groups = []
    for recs in group_by(filtered, key).values():
        kept, gate = split_by_gate(recs, cfg.gate_tolerance)  # each loop on its own gen 0
        res, info = (_a_group(kept, index, cfg) if kept
                     else (GroupResult(_name(recs[0]), NOT_APPLICABLE), {}))
        res.counted = all(r["counted"] for r in recs)
        groups.append((recs, res, info, gate, bool(kept)))
    families: dict[tuple, list] = {}
    for recs, res, info, *_ in groups:
        r = recs[0]
        if r["filter"] == "verifier" and info:
            families.setdefault(family_of(r), []).append((r, res.key, info["plateaus"], recs))
    b_of: dict[tuple, dict | None] = {}
    for fam, members in families.items():
        if len(members) < 2:
            continue
        b_res, b = b_family([m[:3] for m in members], cfg)
        fam_recs = [r for m in members for r in m[3]]
        b_res.counted = all(r["counted"] for r in fam_recs)
        _, fam_gate = split_by_gate(fam_recs, cfg.gate_tolerance)
        quality.groups.append(apply_loop_gate(b_res, fam_gate, True))
        b_of[fam] = (b, b_res) if b is not None and b_res.verdict != NOT_APPLICABLE else None
    for recs, res, info, gate, kept_any in groups:
        r = recs[0]
        found = b_of.get(family_of(r)) if r["filter"] == "verifier" else None
        if info:
            _combine(res, info["test"], found, cfg)
        pred.groups.append(apply_loop_gate(res, gate, kept_any))
    finalise(pred, cfg, _primary)
    finalise(quality, cfg, lambda gs: max(gs, key=lambda g: g.key.get("n", 0), default=None))
    if not quality.groups:
        quality.reading = "not tested: no verifier groups that differ in quality"
    pred.sub["quality"] = quality
    return pred


def _combine(res: GroupResult, a: dict, found, cfg: ReportConfig) -> None:
    """The group's verdict from (a) and, where tested, its family's (b)."""
    if found is None:
        res.parts["b"] = {"verdict": NOT_TESTED}
        return
    b, b_res = found
    code, p_refute = p6_combine(a, b, cfg)
    res.verdict, res.p_refute = CODES[int(code)], float(p_refute)
    res.parts["b"] = {**fields_of(b), "verdict": b_res.verdict, "family": b_res.group}
    res.numbers += f"; (b) {b_res.verdict}: {b_res.statistic} {fmt(b_res.estimate)}"


def _primary(groups: list[GroupResult]) -> GroupResult | None:
    if not groups:
        return None

    def rank(g: GroupResult) -> tuple:
        k = g.key
        threshold = k.get("threshold")
        return (-k.get("n", 0), not k.get("full_verifier", False), k.get("keep", 1.0),
                math.inf if threshold is None else threshold)

    return min(groups, key=rank)


def section(doc: Document, evidence: Evidence, pred: Prediction) -> None:
    """Risk against generation per filter beside the unfiltered loop, then P6's groups and (b)."""
    doc.add("## Prediction 6: filters on synthetic data at λ = 0", "",
            "Mean test risk over seeds (band: min..max) of every filter beside the unfiltered "
            "λ = 0 loop of the same base configuration, n and seeds (dashed).", "")
    filtered = [r for r in evidence.tagged if r["filter"] != "none" and r["real_fraction"] == 0
                and r["schedule"] == "constant" and r["n_tasks"] is None]
    for (base, n), recs in group_by(filtered, lambda r: (r["base"], r["n"])).items():
        curves: dict[str, list[dict]] = {}
        for r in recs:
            label = ", ".join(f"{k}={v}" for k, v in filter_of(r).items())
            curves.setdefault(label, []).append(r)
        seeds = {r["seed"] for r in recs}
        plain = comparison_records(evidence.index, base, n, 0.0, seeds)
        if plain:
            curves["comparison: unfiltered λ = 0"] = plain
        name = describe_group(recs[0]["base_label"], n=n)
        title = figures.group_title(figures.short_name(
            recs[0]["base_label"], (r["config"] for r in evidence.records)), (0.0,), n)
        doc.figure("filters", f"risk against generation per filter, {name}",
                   lambda path, curves=curves, title=title, recs=recs: figures.curves_figure(
                       curves, path, title, mean_ridge(recs)))
    doc.verdict_table(pred)
    doc.add("### Prediction 6 (b): better verifier, lower plateau", "")
    if pred.sub["quality"].groups:
        doc.verdict_table(pred.sub["quality"])
    else:
        doc.add("Not tested: no verifier groups that differ in quality.", "")
