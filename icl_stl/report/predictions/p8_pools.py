"""Prediction 8: below the task-diversity threshold the learner tracks dMMSE, and the loop's
drift differs from above it (Raventós et al. 2023; docs/THEORY.md section 7).

Groups are (base configuration without `loop.generations`, n) over runs with a task pool
(`task.n_tasks` = M), unfiltered and with a constant schedule. (a) reads generation 0's
distances to ridge and to dMMSE on the Gaussian prior's test prompts (`prior_distance_ridge`,
`prior_distance_dmmse`); (b) pairs the pool's loops with the M = null loops (every prompt its own
task) of the same base configuration, n, lambda and seeds (`extension_runs`).
"""

from __future__ import annotations

import math

import numpy as np

from icl_stl.report.document import Document
from icl_stl.report.evidence import Evidence
from icl_stl.report.extension_runs import comparison, per_seed
from icl_stl.report.gating import apply_loop_gate, split_by_gate
from icl_stl.report.groups import describe_group, group_by
from icl_stl.report.rules import ReportConfig
from icl_stl.report.stats import (
    C_CONFIRMED,
    C_INCONCLUSIVE,
    CODES,
    band_test,
    conjunction,
    outside_test,
)
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

FIVE = (CONFIRMED, REFUTED, INCONCLUSIVE, UNDERPOWERED, NOT_APPLICABLE)


def rule(cfg: ReportConfig) -> str:
    return (
        "Per group (base configuration without loop.generations, n) of unfiltered loops with a "
        "task pool of M tasks and a constant schedule. (a) *Tracking*: at generation 0, on test "
        "prompts from the Gaussian prior, per seed log(mean (f - ridge)^2 / mean (f - dMMSE)^2) "
        "(positive: closer to dMMSE), at the smallest M <= d (below the threshold, fixed in "
        f"advance). One-sided t-tests: confirmed if significantly above +{cfg.p8_margin:.3g} "
        f"(twice as close to dMMSE), refuted if significantly below -{cfg.p8_margin:.3g}; the "
        "same statistic at every M is shown, with the first M where its mean is negative as "
        "the estimated threshold (descriptive). (b) *Drift differs*: at that M and lambda = 0 "
        "(else the smallest lambda), paired by seed with the M = null loop of the same base "
        "configuration, n and lambda: per seed the difference of P1's statistic, log(risk at "
        "generation G / generation-0 risk), G the last generation both ran. Confirmed if the "
        f"mean lies significantly beyond +-log(1 + {cfg.p8_drift_margin:g}) on either side "
        f"(each at {cfg.alpha / 2:g}), refuted if TOST puts it inside. **Confirmed** if (a) "
        "and (b) confirm (with (b) not tested, at most inconclusive); **refuted** if either "
        "refutes (Bonferroni over the two parts).")


def p8a_core(dist_ridge: np.ndarray, dist_dmmse: np.ndarray, cfg: ReportConfig) -> dict:
    """(..., seeds) distances: log ratio above +p8_margin, or below -p8_margin."""
    ratio = np.log(np.asarray(dist_ridge, float) / np.asarray(dist_dmmse, float))
    return band_test(ratio, cfg.p8_margin, cfg.levels)


def p8b_core(rise_pool: np.ndarray, rise_null: np.ndarray, cfg: ReportConfig) -> dict:
    """(..., seeds) log rises of the pool's and the M = null loops: their difference
    significantly outside +-log(1 + p8_drift_margin), or inside it (`stats.outside_test`)."""
    diff = np.asarray(rise_pool, float) - np.asarray(rise_null, float)
    return outside_test(diff, math.log1p(cfg.p8_drift_margin), cfg.levels)


def p8_combine(a: dict, b: dict | None, cfg: ReportConfig) -> tuple[np.ndarray, np.ndarray]:
    """(codes, p_refute): the conjunction of (a) and (b); without (b) a confirmation of (a)
    alone reads inconclusive (P8 claims both)."""
    if b is None:
        code = np.array(a["code"], dtype=np.int8, copy=True)
        code[code == C_CONFIRMED] = C_INCONCLUSIVE
        return code, np.asarray(a["p_refute"], dtype=float)
    return conjunction(a, b, cfg.levels)


def tracking_table(recs: list[dict]) -> dict:
    """Per M: generation 0's per-seed distances to ridge and dMMSE and their log ratio."""
    out = {}
    for (m,), m_recs in group_by(recs, lambda r: (r["n_tasks"],)).items():
        rows = {}
        for r in sorted((r for r in m_recs if r["generation"] == 0),
                        key=lambda r: float(r["real_fraction"])):
            ridge, dmmse = r.get("prior_distance_ridge"), r.get("prior_distance_dmmse")
            if ridge is not None and dmmse is not None and ridge > 0 and dmmse > 0:
                rows.setdefault(r["seed"], (float(ridge), float(dmmse),
                                            r.get("test_risk_prior")))
        seeds = sorted(rows)
        ratio = [math.log(rows[s][0] / rows[s][1]) for s in seeds]
        out[m] = {"seeds": seeds, "ridge": [rows[s][0] for s in seeds],
                  "dmmse": [rows[s][1] for s in seeds], "log_ratio": ratio,
                  "mean": float(np.mean(ratio)) if ratio else None,
                  "test_risk_prior": [rows[s][2] for s in seeds]}
    return out


def _drift(pool_recs: list[dict], m: int, index, cfg: ReportConfig, every: dict
           ) -> tuple[dict | None, dict]:
    """Part (b): the test and its numbers (None and why when it cannot be run). `index`: the
    M = null loops that reached ridge on their own generation 0; `every`: all of them."""
    at_m = [r for r in pool_recs if r["n_tasks"] == m]
    lam = min(float(r["real_fraction"]) for r in at_m)
    mine = per_seed([r for r in at_m if float(r["real_fraction"]) == lam])
    base = next(r for r in at_m if float(r["real_fraction"]) == lam)["base"]
    pair = comparison(index, base, at_m[0]["n"], lam, sorted(mine))
    if not pair and comparison(every, base, at_m[0]["n"], lam, sorted(mine)):
        return None, {"verdict": NOT_APPLICABLE, "why": "the M = null loops missed the training "
                      "gate (each on its own generation 0)"}
    if not pair:
        return None, {"verdict": NOT_TESTED, "why": f"no M = null loop at λ = {lam:g} with the "
                      "same base configuration, n and seeds"}
    last = min(max(set(mine[s]) & set(pair[s]), default=-1) for s in pair)
    seeds = [s for s in sorted(pair) if 0 in mine[s] and 0 in pair[s] and last in mine[s]
             and last in pair[s]]
    if last < 1 or not seeds:
        return None, {"verdict": NOT_TESTED, "why": "the pool's and the M = null loops share no "
                      "generation after 0"}
    risk = np.array([[mine[s][0]["test_risk"], mine[s][last]["test_risk"],
                      pair[s][0]["test_risk"], pair[s][last]["test_risk"]] for s in seeds])
    if not np.all(risk > 0):
        return None, {"verdict": NOT_TESTED, "why": "non-positive test risk"}
    rise = np.log(risk[:, [1, 3]] / risk[:, [0, 2]])
    b = p8b_core(rise[:, 0], rise[:, 1], cfg)
    return b, {**fields_of(b), "verdict": CODES[int(b["code"])], "lambda": lam,
               "generation": last, "seeds": len(seeds),
               "rise_pool": float(rise[:, 0].mean()), "rise_null": float(rise[:, 1].mean())}


def _name(r0: dict) -> str:
    return describe_group(r0["pool_base_label"], n=r0["n"])


def _group(design: list[dict], recs: list[dict], index, cfg: ReportConfig, every: dict
           ) -> GroupResult:
    """The group's verdict from the loops that passed the gate (`recs`); M is chosen from the
    design (every loop of the group), as fixed in advance."""
    r0 = design[0]
    name = _name(r0)
    table = tracking_table(recs)
    shown = "; ".join(f"M={m}: {fmt(t['mean'])} ({len(t['seeds'])} seeds)"
                      for m, t in table.items())
    negative = [m for m, t in table.items() if t["mean"] is not None and t["mean"] < 0]
    text = (f"log(dist to ridge / dist to dMMSE) at generation 0: {shown or 'none recorded'}; "
            f"estimated threshold: {'M=' + str(negative[0]) if negative else 'not reached'}")
    d = r0["task_d"]
    below = [m for m, t in tracking_table(design).items()
             if d is not None and m <= d and t["seeds"]]
    if below and not table.get(below[0], {}).get("seeds"):
        return GroupResult(name, NOT_APPLICABLE, numbers=f"{text}; (a) not applicable: every "
                           f"loop at M={below[0]} missed the training gate")
    if not below:
        why = "task.d unknown" if d is None else f"no pool with M <= d = {d} and distances"
        res = GroupResult(name, NOT_TESTED, numbers=f"{text}; (a) not tested: {why}")
        res.parts = {"tracking": table}
        return res
    m = below[0]
    t = table[m]
    a = p8a_core(np.array(t["ridge"]), np.array(t["dmmse"]), cfg)
    fields = fields_of(a)
    b, b_part = _drift(recs, m, index, cfg, every)
    code, p_refute = p8_combine(a, b, cfg)
    res = GroupResult(name, CODES[int(code)], fields["estimate"], fields["interval"],
                      cfg.p8_margin, len(t["seeds"]), fields["min_detectable_effect"],
                      float(p_refute), statistic=f"log(dist ridge / dist dMMSE) at M={m}")
    res.parts = {"a": {**fields, "verdict": CODES[int(a["code"])], "M": m}, "b": b_part,
                 "tracking": table}
    res.numbers = (f"{text}; (a) at M={m}: {fmt(res.estimate)} {fmt_ci(res.interval)} "
                   f"({CODES[int(a['code'])]}, MDE {fmt(res.min_detectable_effect)})")
    if b is None:
        res.numbers += f"; (b) {b_part['verdict']}: {b_part['why']}"
        res.reading = f"(b) {b_part['verdict']}: {b_part['why']}; P8 needs both parts"
    else:
        res.numbers += (f"; (b) log rise at M={m} {fmt(b_part['rise_pool'])} against M=null "
                        f"{fmt(b_part['rise_null'])} (generation {b_part['generation']}): "
                        f"difference {fmt(b_part['estimate'])} {fmt_ci(b_part['interval'])} "
                        f"({b_part['verdict']})")
    res.key = {"n": r0["n"], "M": m}
    return res


def verdict(evidence: Evidence, cfg: ReportConfig) -> Prediction:
    pred = Prediction(8, "Below the task-diversity threshold (M <= d) the learner tracks "
                         "dMMSE, and the loop's drift differs from M = null.", rule(cfg),
                      FIVE, primary_rule="the counted group with the largest n")
    tagged, index = evidence.tagged, evidence.passing_index(cfg.gate_tolerance)
    pools = [r for r in tagged if r["n_tasks"] is not None and r["filter"] == "none"
             and r["schedule"] == "constant" and r.get("augment", 0) == 0]
    for (_, n), recs in group_by(pools, lambda r: (r["pool_base"], r["n"])).items():
        kept, gate = split_by_gate(recs, cfg.gate_tolerance)  # each loop on its own gen 0
        res = (_group(recs, kept, index, cfg, evidence.index) if kept
               else GroupResult(_name(recs[0]), NOT_APPLICABLE))
        res.counted = all(r["counted"] for r in recs)
        res.key = {**res.key, "n": n}
        pred.groups.append(apply_loop_gate(res, gate, bool(kept)))
    return finalise(pred, cfg, lambda gs: max(gs, key=lambda g: g.key["n"], default=None))


def section(doc: Document, evidence: Evidence, pred: Prediction) -> None:
    """Generation 0's distances to ridge and dMMSE per pool size, then P8's groups."""
    doc.add("## Prediction 8: finite task pools", "",
            "Generation 0 on test prompts from the Gaussian prior: the learner's mean squared "
            "distance (/d) to ridge's and to dMMSE's predictions, per pool size M (means over "
            "seeds); log ratio > 0: closer to dMMSE.", "")
    pools = [r for r in evidence.tagged if r["n_tasks"] is not None and r["filter"] == "none"
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
    doc.verdict_table(pred)
