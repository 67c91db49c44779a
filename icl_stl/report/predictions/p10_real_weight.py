"""Prediction 10, version 2 (provisional): the weight of real data has an interior optimum with
fresh real data, and the optimum moves toward 1 when the real part is reused from S_0.

The loops train with `loop.real_weight` = v (the real part's share of every batch, stratified,
unweighted loss; records carry `real_weight` and `real_source`). The reference learner's closed
forms (icl_stl/theory/real_weight.py) say: with fresh real data (`loop.real_source=fresh`) the
error against v has an interior minimum (1/phi = 0.618 at lambda = 1/2); with S_0's real part
reused (the default) it is smallest at v = 1 from generation 2 on. Per group (configuration,
regime, lambda, n) and real source, per seed the log excess risk at the last generation against
v on a grid ending at 1 (>= 4 points) is read by P5's rule (`p5v2_core`, the quadratic and the
model-free end contrasts of `report.quadratic`) with P10's margins. **Interior optimum** (fresh
data) as P5 states it; **the direction** (both sources on one grid): per seed, the v = 1 end's
contrast with fresh data minus that with reused data, significantly above 0 (the v = 1 end is
costlier with fresh data: w* lies lower there, higher with reused data). Each loop is paired
with its oracle-labelled twin; the oracle arm is fitted beside it (with real-like synthetic
prompts the reference learner's optimum is v = lambda for either source). A group whose fresh
loops show no dip in the point estimates is reported "no curvature": the pilot then states
P10 not testable.
"""

from __future__ import annotations

import dataclasses
import re

import numpy as np

from icl_stl.report.document import Document
from icl_stl.report.evidence import Evidence
from icl_stl.report.groups import describe_group, group_by
from icl_stl.report.matched import SCALE, MatchedLoop, matched_loops
from icl_stl.report.predictions.p5_augmentation_v2 import coverage_notes, p5v2_core
from icl_stl.report.quadratic import end_contrasts
from icl_stl.report.rules import ReportConfig
from icl_stl.report.stats import (
    C_CONFIRMED,
    C_REFUTED,
    C_UNDERPOWERED,
    CODES,
    directional_test,
)
from icl_stl.report.verdict import (
    CONFIRMED,
    INCONCLUSIVE,
    NOT_APPLICABLE,
    NOT_TESTED,
    PROVISIONAL,
    REFUTED,
    UNDERPOWERED,
    GroupResult,
    Prediction,
    finalise,
    fmt,
    fmt_ci,
)

CONTROL = ("the oracle-labelled twin: the same loop (seed, S_0, initialisation, batch order, "
           "synthetic x's, real weight) whose synthetic prompts are labelled by their true task")
MIN_GRID = 4  # weights on the grid (1 among them), as P5's quadratic needs
SOURCES = ("fresh", "reuse")
_WEIGHT_TERMS = re.compile(r"(^|, )loop\.(real_weight|real_source)=[^,]*")


def rule(cfg: ReportConfig) -> str:
    return (
        "Version 2, provisional. Loops trained with loop.real_weight = v (the real part's "
        "share of every batch, stratified, unweighted loss), each beside its oracle-labelled "
        "twin. Per group (configuration, regime, lambda, n) and real source, per seed the log "
        f"excess risk at the last generation against v on a grid ending at 1 (>= {MIN_GRID} "
        "points), read by P5's rule with P10's margins (curvature "
        f"{cfg.v2_p10_curvature:g}, depth {cfg.v2_p10_depth:g}). **Interior optimum** with "
        "fresh real data when the mean curvature is significantly positive, the vertex's "
        f"{1 - 2 * cfg.alpha:.0%} Fieller interval lies inside the grid and both ends lie "
        f"significantly above the interior's mean, at {cfg.alpha:g}; refuted when an end lies "
        "significantly below it. **Direction** (both sources on one grid, seeds paired): the "
        "v = 1 end's contrast with fresh data minus that with reused data is significantly "
        f"above 0 (resolution {cfg.v2_p10_direction:g}): w* lies lower with fresh data. "
        "Confirmed when both hold; refuted when either is refuted. Only seeds whose every loop "
        "passed its own gate and trained are read, ascending, the first "
        f"{cfg.v2_p10_seeds} of them. A group whose fresh loops show no dip (curvature or an "
        "end contrast <= 0 in the point estimates) is reported 'no curvature': P10 is then "
        "not testable on it.")


def _as_p5(cfg: ReportConfig) -> ReportConfig:
    """P5's rule read with P10's margins."""
    return dataclasses.replace(cfg, v2_p5_depth=cfg.v2_p10_depth,
                               v2_p5_curvature=cfg.v2_p10_curvature)


def p10_core(y: np.ndarray, v: np.ndarray, cfg: ReportConfig) -> dict:
    """y (..., seeds, grid): log excess risk at weights v (increasing, ending at 1). P5's
    interior-optimum rule with P10's margins, per leading index; `dip_seen`: the point
    estimates show a dip (curvature and both end contrasts > 0)."""
    core = p5v2_core(y, np.asarray(v, dtype=float), _as_p5(cfg))
    core["dip_seen"] = ((np.asarray(core["curvature"]["estimate"]) > 0)
                        & (np.asarray(core["low_end"]["estimate"]) > 0)
                        & (np.asarray(core["high_end"]["estimate"]) > 0))
    return core


def p10_direction(fresh: np.ndarray, reused: np.ndarray, cfg: ReportConfig) -> dict:
    """fresh, reused (..., seeds, grid), the same seeds and grid: per seed the v = 1 end's
    contrast (the last point minus the interior's mean) with fresh data minus that with
    reused data, tested above 0 (w* lies lower with fresh data)."""
    per_seed = end_contrasts(fresh)[1] - end_contrasts(reused)[1]
    return directional_test(per_seed, 0.0, +1, cfg.levels, cfg.v2_p10_direction)


def _weight_key(record: dict) -> tuple[float, str] | None:
    if record.get("real_weight") is None:
        return None
    return float(record["real_weight"]), str(record.get("real_source") or "reuse")


def weighted_loops(evidence: Evidence, cfg: ReportConfig) -> list[tuple[str, float, MatchedLoop]]:
    """(real source, weight, matched loop) of every weighted loop with its oracle twin; the
    loops' configuration with the weight and the source left out (they are the grid)."""
    by_weight = group_by([r for r in evidence.records if _weight_key(r) is not None],
                         _weight_key)
    out = []
    for (weight, source), records in by_weight.items():
        for lp in matched_loops(records, evidence.settings, cfg.gate_tolerance,
                                cfg.failure_gap, cfg.failure_train_ratio):
            out.append((source, weight, dataclasses.replace(
                lp, config=_WEIGHT_TERMS.sub("", lp.config).lstrip(", "))))
    return out


def _curves(items: list[tuple[str, float, MatchedLoop]], cfg: ReportConfig) -> dict:
    """Per source: the weight grid and, for the seeds read, model and oracle log excess (seeds,
    grid) at the last generation every loop of the group has; and what was left out."""
    loops = [lp for _, _, lp in items]
    missed = [lp for lp in loops if not lp.gated]
    failed = [lp for lp in loops if lp.gated and lp.failures]
    out_seeds = {lp.seed for lp in missed + failed}
    seeds = sorted({lp.seed for lp in loops} - out_seeds)
    beyond = seeds[cfg.v2_p10_seeds:] if cfg.v2_p10_seeds is not None else []
    seeds = seeds[:cfg.v2_p10_seeds] if cfg.v2_p10_seeds is not None else seeds
    kept = [(src, w, lp) for src, w, lp in items if lp.seed in seeds]
    common = (set.intersection(*(set(lp.generations) for _, _, lp in kept)) if kept else {0})
    last = max(common)
    left_out = {"missed_gate": len(missed), "training_failures": len(failed),
                "loops": [f"{lp.describe()}: gate missed" for lp in missed]
                + [f"{lp.describe()}: generation {lp.failures[0]['generation']} "
                   f"({lp.failures[0]['arm']} arm) {lp.failures[0]['why']}" for lp in failed],
                "seeds_left_out": sorted(out_seeds), "beyond_count": beyond}
    per_source = {}
    for source in SOURCES:
        cells = {(lp.seed, w): lp for src, w, lp in kept if src == source}
        grid = sorted({w for _, w in cells})
        full = [w for w in grid if all((s, w) in cells for s in seeds)]
        if last == 0 or len(full) < MIN_GRID or full[-1] != 1.0:
            continue
        pick = lambda arr, lp: float(np.log(arr[lp.generations.index(last)]))  # noqa: E731
        per_source[source] = {
            "v": np.array(full, dtype=float),
            "model": np.array([[pick(cells[s, w].excess, cells[s, w]) for w in full]
                               for s in seeds]),
            "oracle": np.array([[pick(cells[s, w].control, cells[s, w]) for w in full]
                                for s in seeds])}
    uneven = len({tuple(lp.generations) for _, _, lp in kept}) > 1
    return {"seeds": seeds, "generation": last, "per_source": per_source,
            "left_out": left_out, "uneven": uneven}


def _fit_summary(core: dict) -> dict:
    v = core["vertex"]
    return {"curvature": float(core["curvature"]["estimate"]),
            "curvature_interval": [float(core["curvature"]["low"]),
                                   float(core["curvature"]["high"])],
            "vertex": float(v["vertex"]), "vertex_interval": [float(v["low"]), float(v["high"])],
            "low_end": float(core["low_end"]["estimate"]),
            "high_end": float(core["high_end"]["estimate"]),
            "interior": bool(core["interior"]), "dip_seen": bool(core["dip_seen"]),
            "verdict": CODES[int(core["code"])]}


def _combine(codes: list[int]) -> str:
    if C_REFUTED in codes:
        return REFUTED
    if all(c == C_CONFIRMED for c in codes):
        return CONFIRMED
    if C_UNDERPOWERED in codes:
        return UNDERPOWERED
    return INCONCLUSIVE


def _group(name: str, items: list[tuple[str, float, MatchedLoop]],
           cfg: ReportConfig) -> GroupResult:
    curves = _curves(items, cfg)
    per_source = curves["per_source"]
    res = GroupResult(name, NOT_TESTED, n_seeds=len(curves["seeds"]),
                      statistic="depth of the dip with fresh real data: the smaller end "
                                "contrast (log excess risk)")
    res.scale, res.control = SCALE, CONTROL
    res.margins = {"curvature": cfg.v2_p10_curvature, "depth": cfg.v2_p10_depth,
                   "direction": cfg.v2_p10_direction}
    res.left_out = curves["left_out"]
    if "fresh" not in per_source:
        res.numbers = (f"{len(curves['seeds'])} readable seed(s); no grid of >= {MIN_GRID} "
                       "real weights ending at 1, with fresh real data, shared by every seed "
                       "and read after generation 0")
        return res
    shown, codes = [], []
    cores = {}
    for source, c in per_source.items():
        core, oracle = p10_core(c["model"], c["v"], cfg), p10_core(c["oracle"], c["v"], cfg)
        cores[source] = core
        res.parts[source] = {**_fit_summary(core), "grid": c["v"].tolist(),
                             "p_refute": float(core["p_refute"]), "mde": float(core["mde"]),
                             "oracle_arm": _fit_summary(oracle)}
        shown.append(f"{source}: curvature {fmt(float(core['curvature']['estimate']))}, vertex "
                     f"{fmt(float(core['vertex']['vertex']))} "
                     f"{fmt_ci([float(core['vertex']['low']), float(core['vertex']['high'])])}"
                     f", ends {fmt(float(core['low_end']['estimate']))} / "
                     f"{fmt(float(core['high_end']['estimate']))} above the interior; oracle "
                     f"arm vertex {fmt(float(oracle['vertex']['vertex']))}")
    fresh = cores["fresh"]
    codes.append(int(fresh["code"]))
    res.estimate = min(float(fresh["low_end"]["estimate"]), float(fresh["high_end"]["estimate"]))
    res.p_refute = float(fresh["p_refute"])
    res.min_detectable_effect = float(fresh["mde"])
    res.margin = cfg.v2_p10_depth
    same_grid = ("reuse" in per_source
                 and np.array_equal(per_source["reuse"]["v"], per_source["fresh"]["v"]))
    if same_grid:
        direction = p10_direction(per_source["fresh"]["model"], per_source["reuse"]["model"],
                                  cfg)
        codes.append(int(direction["code"]))
        res.p_refute = min(1.0, 2 * min(res.p_refute, float(direction["p_refute"])))
        res.parts["direction"] = {"estimate": float(direction["estimate"]),
                                  "interval": [float(direction["low"]),
                                               float(direction["high"])],
                                  "mde": float(direction["mde"]),
                                  "verdict": CODES[int(direction["code"])]}
        shown.append(f"direction (v = 1 end, fresh minus reused) "
                     f"{fmt(float(direction['estimate']))} "
                     f"{fmt_ci([float(direction['low']), float(direction['high'])])}")
    else:
        shown.append("direction not tested (no reused-data loops on the same grid)")
    res.verdict = _combine(codes)
    res.parts["testable"] = bool(fresh["dip_seen"])
    notes = ([] if fresh["dip_seen"] else
             ["no curvature: the fresh loops show no dip (P10 not testable on them)"])
    notes += coverage_notes(curves)
    res.numbers = "; ".join(notes + shown) + (
        f" (generation {curves['generation']}, {len(curves['seeds'])} seeds, MDE "
        f"{fmt(res.min_detectable_effect)}, depth margin {fmt(cfg.v2_p10_depth)})")
    return res


def verdict(evidence: Evidence, cfg: ReportConfig) -> Prediction:
    pred = Prediction(10, "With fresh real data, excess risk against the real weight has an "
                          "interior optimum; reusing S_0's real part moves the optimum toward "
                          "1.", rule(cfg),
                      (CONFIRMED, REFUTED, INCONCLUSIVE, UNDERPOWERED, NOT_APPLICABLE),
                      rules_version=PROVISIONAL,
                      primary_rule=f"the counted group of regime {cfg.v2_regime} with the "
                                   "lambda closest to 1/2")
    items = weighted_loops(evidence, cfg)
    for (config, regime, lam, n), group in group_by(
            items, lambda it: (it[2].config, it[2].regime, it[2].real_fraction,
                               it[2].n)).items():
        name = describe_group(config, regime=regime, λ=float(lam), n=n)
        res = _group(name, group, cfg)
        res.counted = all(lp.in_theorem_setting for _, _, lp in group)
        res.key = {"lambda": lam, "primary_regime": regime == cfg.v2_regime}
        if res.verdict == NOT_TESTED and not res.n_seeds and res.left_out.get("missed_gate"):
            res.verdict = NOT_APPLICABLE
        pred.groups.append(res)
    return finalise(pred, cfg, lambda gs: min(
        [g for g in gs if g.key.get("primary_regime")] or gs,
        key=lambda g: abs(g.key["lambda"] - 0.5), default=None))


def section(doc: Document, evidence: Evidence, pred: Prediction) -> None:
    """P10's groups (the curves are in the group table's numbers and verdicts.json)."""
    doc.add("## Prediction 10: the weight of real data (version 2, provisional)", "",
            "Per seed, log excess risk at the last generation against the real weight v, "
            "fresh and reused real data, fitted by a quadratic; the oracle-labelled twins "
            "beside them.", "")
    doc.verdict_table(pred)
