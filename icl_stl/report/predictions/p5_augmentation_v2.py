"""Prediction 5, version 2: excess risk against the augmentation m / n has an interior optimum,
and m* grows as n shrinks.

Compute grows with m (loop.steps_scale=per_prompt: passes over S_i are the same at every m),
so a larger m is not also a smaller share of training on the real prompts. Per seed and n, the
log excess risk of the loop at its last generation against r = m / n on a grid from 0 (at
least 4 points) is fitted by a quadratic (`report.quadratic`). **Interior optimum** when all
hold at alpha (an intersection-union test, so its level is alpha): the mean curvature is
significantly positive, the Fieller interval of the vertex lies strictly inside the grid, and
both ends lie significantly above the mean of the interior points (model-free: a monotone
curve, however curved, never passes). **Refuted** (no interior optimum on the grid) when an end
lies significantly below the interior (Bonferroni over the two). With two or more n, the
vertex against log n on the m / n scale: per seed the slope of log(vertex) against log n (a
constant m* gives -1, so "m* grows as n shrinks" is a slope significantly below -1). The
oracle-augmented arm (the same m prompts labelled by their true task) is fitted beside it.
`p5v2_core` takes arrays with any leading axes, so the calibration runs the report's code.
"""

from __future__ import annotations

import numpy as np

from icl_stl.report.document import Document
from icl_stl.report.evidence import Evidence
from icl_stl.report.groups import describe_group, group_by
from icl_stl.report.matched import SCALE, MatchedLoop, base_config, matched_loops
from icl_stl.report.quadratic import (
    curvature_test,
    end_contrasts,
    fieller_vertex,
    fit_quadratics,
    vertex_pseudo_values,
)
from icl_stl.report.rules import ReportConfig
from icl_stl.report.stats import (
    C_CONFIRMED,
    C_INCONCLUSIVE,
    C_REFUTED,
    C_UNDERPOWERED,
    CODES,
    directional_test,
    slopes,
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

CONTROL = ("the oracle-augmented arm: the same m synthetic prompts labelled by their true task "
           "(same seed, S_0, initialisation, batch order and compute)")
MIN_GRID = 4  # grid points (r = 0 among them) a quadratic with a lack-of-fit check needs
STEPS_TOLERANCE = 0.01  # steps per training prompt equal across m up to rounding


def rule(cfg: ReportConfig) -> str:
    return (
        "Version 2. Per group (configuration, regime, lambda), loops trained with compute that "
        "grows with m (loop.steps_scale=per_prompt). Per seed and n, log excess risk at the "
        f"last generation against r = m / n on a grid from 0 (>= {MIN_GRID} points, up to "
        f"{cfg.v2_p5_grid_max:g}), fitted by a quadratic. **Interior optimum** when all hold at "
        f"{cfg.alpha:g}: the mean curvature is significantly positive; the vertex's "
        f"{1 - 2 * cfg.alpha:.0%} Fieller interval lies strictly inside the grid; and both "
        "ends of the grid lie significantly above the mean of its interior points (per seed, "
        "model-free). **Refuted** (no interior optimum on the grid) when an end lies "
        "significantly below the interior (Bonferroni over the two). Underpowered when the "
        f"MDE of either end contrast exceeds the depth margin {cfg.v2_p5_depth:g} (log excess "
        "risk). With >= 2 n the vertex's trend against log n on the m / n scale: per seed the "
        "slope of log(vertex) (linearised) against log n; m* grows as n shrinks when it is "
        "significantly below -1 (a constant m* gives -1). Only seeds whose every loop passed "
        "its own gate and trained are read, in ascending order, the first "
        f"{cfg.v2_p5_seeds} of them. The oracle-augmented arm is fitted beside it.")


def p5v2_core(y: np.ndarray, r: np.ndarray, cfg: ReportConfig) -> dict:
    """y (..., seeds, grid): log excess risk at r = m / n (r[0] = 0, increasing). Codes and
    the numbers behind them, per leading index."""
    levels = cfg.levels
    coef = fit_quadratics(y, r)
    curv = curvature_test(coef, levels, cfg.v2_p5_curvature)
    vert = fieller_vertex(coef, levels)
    low_end, high_end = end_contrasts(y)
    lo = directional_test(low_end, 0.0, +1, levels, cfg.v2_p5_depth)
    hi = directional_test(high_end, 0.0, +1, levels, cfg.v2_p5_depth)
    inside = vert["bounded"] & (vert["low"] > r[0]) & (vert["high"] < r[-1])
    alpha = levels.alpha
    interior = ((np.asarray(curv["p_confirm"]) < alpha) & inside
                & (np.asarray(lo["p_confirm"]) < alpha) & (np.asarray(hi["p_confirm"]) < alpha))
    p_refute = np.minimum(1.0, 2 * np.fmin(lo["p_refute"], hi["p_refute"]))
    s = np.shape(y)[-2]
    code = np.full(np.shape(p_refute), C_INCONCLUSIVE, dtype=np.int8)
    mde = np.fmax(lo["mde"], hi["mde"])
    code[~(np.asarray(mde) <= cfg.v2_p5_depth)] = C_UNDERPOWERED
    code[np.asarray(p_refute) < alpha] = C_REFUTED
    code[interior] = C_CONFIRMED
    if s < levels.min_seeds:
        code[...] = C_UNDERPOWERED
    return {"code": code, "interior": interior, "p_refute": p_refute, "mde": mde,
            "curvature": curv, "vertex": vert, "low_end": lo, "high_end": hi, "coef": coef,
            "n_seeds": s}


def p5v2_trend(y: np.ndarray, r: np.ndarray, ns: list[int], cfg: ReportConfig) -> dict:
    """y (..., len(ns), seeds, grid): per seed the slope of log(linearised vertex) against
    log n, tested below -1 (m* grows as n shrinks on the m / n scale)."""
    coef = fit_quadratics(y, r)
    pseudo = vertex_pseudo_values(coef)  # (..., N, seeds)
    centre = pseudo.mean(-1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        log_vertex = np.log(centre) + (pseudo - centre) / centre  # delta method on the log
    per_seed = slopes(np.log(np.asarray(ns, dtype=float)), np.moveaxis(log_vertex, -1, -2))
    return directional_test(per_seed, -1.0, -1, cfg.levels, cfg.v2_p5_trend_margin)


def _curves(loops: list[MatchedLoop], cfg: ReportConfig) -> dict:
    """Per n: the grid r, and for the seeds read, model and oracle log excess (seeds, grid)
    at the last generation every loop of the group has; and what was left out."""
    by_seed = group_by(loops, lambda lp: (lp.seed,))
    missed = [lp for lp in loops if not lp.gated]
    failed = [lp for lp in loops if lp.gated and lp.failures]
    out_seeds = {lp.seed for lp in missed + failed}
    seeds = [s for (s,) in sorted(by_seed) if s not in out_seeds]
    beyond = seeds[cfg.v2_p5_seeds:] if cfg.v2_p5_seeds is not None else []
    seeds = seeds[:cfg.v2_p5_seeds] if cfg.v2_p5_seeds is not None else seeds
    kept = [lp for lp in loops if lp.seed in seeds]
    common = set.intersection(*(set(lp.generations) for lp in kept)) if kept else {0}
    last = max(common)
    left_out = {"missed_gate": len(missed), "training_failures": len(failed),
                "loops": [f"{lp.describe()}: gate missed" for lp in missed]
                + [f"{lp.describe()}: generation {lp.failures[0]['generation']} "
                   f"({lp.failures[0]['arm']} arm) {lp.failures[0]['why']}" for lp in failed],
                "seeds_left_out": sorted(out_seeds), "beyond_count": beyond}
    per_n = {}
    for (n,), group in sorted(group_by(kept if last > 0 else [], lambda lp: (lp.n,)).items()):
        grid = sorted({lp.augment for lp in group})
        cells = {(lp.seed, lp.augment): lp for lp in group}
        full = [m for m in grid if all((s, m) in cells for s in seeds)]
        if (not full or full[0] != 0 or len(full) < MIN_GRID
                or full[-1] / n < cfg.v2_p5_grid_max - 1e-9):
            continue
        pick = lambda arr, lp: float(np.log(arr[lp.generations.index(last)]))  # noqa: E731
        per_n[n] = {"r": np.array(full, dtype=float) / n, "ms": full,
                    "model": np.array([[pick(cells[s, m].excess, cells[s, m]) for m in full]
                                       for s in seeds]),
                    "oracle": np.array([[pick(cells[s, m].control, cells[s, m]) for m in full]
                                        for s in seeds])}
    uneven = len({tuple(lp.generations) for lp in kept}) > 1
    return {"seeds": seeds, "generation": last, "per_n": per_n, "left_out": left_out,
            "uneven": uneven}


def coverage_notes(curves: dict) -> list[str]:
    """What the reading of `_curves` left out or cut short, for the verdict's numbers."""
    notes = []
    left = curves["left_out"]["missed_gate"] + curves["left_out"]["training_failures"]
    if left:
        notes.append(f"{left} loop(s) left out, their seeds unread")
    if curves["uneven"]:
        notes.append("uneven generations: read at the last one every loop has")
    return notes


def _fit_summary(core: dict) -> dict:
    v = core["vertex"]
    return {"curvature": float(core["curvature"]["estimate"]),
            "curvature_interval": [float(core["curvature"]["low"]),
                                   float(core["curvature"]["high"])],
            "vertex": float(v["vertex"]), "vertex_interval": [float(v["low"]), float(v["high"])],
            "low_end": float(core["low_end"]["estimate"]),
            "high_end": float(core["high_end"]["estimate"]),
            "interior": bool(core["interior"]), "verdict": CODES[int(core["code"])]}


def _group(name: str, loops: list[MatchedLoop], cfg: ReportConfig) -> GroupResult:
    curves = _curves(loops, cfg)
    margins = {"curvature": cfg.v2_p5_curvature, "depth": cfg.v2_p5_depth,
               "trend": cfg.v2_p5_trend_margin, "grid_max": cfg.v2_p5_grid_max}
    per_n = curves["per_n"]
    res = GroupResult(name, NOT_TESTED, n_seeds=len(curves["seeds"]),
                      statistic="depth of the dip: the smaller end contrast (log excess risk)")
    res.scale, res.control, res.margins = SCALE, CONTROL, margins
    res.left_out = curves["left_out"]
    if not per_n:
        res.numbers = (f"{len(curves['seeds'])} readable seed(s); no n has a grid of >= "
                       f"{MIN_GRID} m / n from 0 to {cfg.v2_p5_grid_max:g} shared by every "
                       "seed, read after generation 0")
        return res
    codes, shown = [], []
    for n, c in per_n.items():
        core = p5v2_core(c["model"], c["r"], cfg)
        oracle = p5v2_core(c["oracle"], c["r"], cfg)
        contrast = slopes(c["r"], c["model"] - c["oracle"])
        cost = directional_test(contrast, 0.0, +1, cfg.levels)
        res.parts[f"n={n}"] = {
            **_fit_summary(core), "grid_m_over_n": c["r"].tolist(), "ms": c["ms"],
            "p_refute": float(core["p_refute"]), "mde": float(core["mde"]),
            "oracle_arm": _fit_summary(oracle),
            "label_cost_slope": {"estimate": float(cost["estimate"]),
                                 "interval": [float(cost["low"]), float(cost["high"])]}}
        codes.append(int(core["code"]))
        shown.append(f"n={n}: curvature {fmt(float(core['curvature']['estimate']))}, vertex "
                     f"{fmt(float(core['vertex']['vertex']))} "
                     f"{fmt_ci([float(core['vertex']['low']), float(core['vertex']['high'])])}"
                     f" in m / n, ends {fmt(float(core['low_end']['estimate']))} / "
                     f"{fmt(float(core['high_end']['estimate']))} above the interior; oracle "
                     f"arm curvature {fmt(float(oracle['curvature']['estimate']))}")
        res.p_refute = min(float(core["p_refute"]),
                           1.0 if res.p_refute is None else res.p_refute)
        depth = min(float(core["low_end"]["estimate"]), float(core["high_end"]["estimate"]))
        res.estimate = depth if res.estimate is None else min(res.estimate, depth)
        res.min_detectable_effect = max(float(core["mde"]), res.min_detectable_effect or 0.0)
    res.p_refute = min(1.0, res.p_refute * len(per_n))  # Bonferroni over n
    res.margin = cfg.v2_p5_depth
    if C_REFUTED in codes and res.p_refute < cfg.alpha:
        res.verdict = REFUTED
    elif all(c == C_CONFIRMED for c in codes):
        res.verdict = CONFIRMED
    elif C_UNDERPOWERED in codes:
        res.verdict = UNDERPOWERED
    else:
        res.verdict = INCONCLUSIVE
    if len(per_n) >= 2:
        grids = {tuple(c["r"]) for c in per_n.values()}
        if len(grids) == 1 and res.verdict == CONFIRMED:
            ns = sorted(per_n)
            trend = p5v2_trend(np.stack([per_n[n]["model"] for n in ns]), per_n[ns[0]]["r"],
                               ns, cfg)
            res.parts["trend"] = {"estimate": float(trend["estimate"]),
                                  "interval": [float(trend["low"]), float(trend["high"])],
                                  "verdict": CODES[int(trend["code"])]}
            res.verdict = CODES[int(trend["code"])]
            shown.append(f"slope of log(vertex) against log n {fmt(float(trend['estimate']))} "
                         f"{fmt_ci([float(trend['low']), float(trend['high'])])} (m* grows as "
                         "n shrinks below -1)")
        else:
            shown.append("m* against n: read only when every n has an interior optimum on the "
                         "same m / n grid")
    else:
        shown.append("m* against n not tested (one n)")
    notes = coverage_notes(curves)
    res.numbers = "; ".join(notes + shown) + (
        f" (generation {curves['generation']}, {len(curves['seeds'])} seeds, MDE "
        f"{fmt(res.min_detectable_effect)}, depth margin {fmt(cfg.v2_p5_depth)})")
    return res


def verdict(evidence: Evidence, cfg: ReportConfig) -> Prediction:
    pred = Prediction(5, "Excess risk against the augmentation m / n has an interior optimum "
                         "(compute growing with m); m* grows as n shrinks.", rule(cfg),
                      (CONFIRMED, REFUTED, INCONCLUSIVE, UNDERPOWERED, NOT_APPLICABLE),
                      rules_version=PROVISIONAL,
                      primary_rule=f"the counted group of regime {cfg.v2_regime} with the "
                                   "smallest lambda")
    loops = matched_loops(evidence.records, evidence.settings, cfg.gate_tolerance,
                          cfg.failure_gap, cfg.failure_train_ratio)
    for (config, regime, lam), group in group_by(
            loops, lambda lp: (lp.config, lp.regime, lp.real_fraction)).items():
        if len({lp.augment for lp in group}) < 2:
            continue
        name = describe_group(config, regime=regime, λ=float(lam))
        spread = steps_per_prompt_spread(evidence.records, group)
        if spread is None or spread > STEPS_TOLERANCE:
            res = GroupResult(name, NOT_TESTED, numbers=(
                "compute does not grow with m (steps per training prompt differ by "
                f"{fmt(spread)} across the grid; loop.steps_scale=per_prompt keeps them equal)"
                if spread is not None else "the records do not say how many steps each m "
                "trained (steps, train_size)"))
            res.scale, res.control = SCALE, CONTROL
        else:
            res = _group(name, group, cfg)
        res.counted = all(lp.in_theorem_setting for lp in group)
        res.key = {"lambda": lam, "primary_regime": regime == cfg.v2_regime}
        if res.verdict == NOT_TESTED and not res.n_seeds and res.left_out.get("missed_gate"):
            res.verdict = NOT_APPLICABLE
        pred.groups.append(res)
    return finalise(pred, cfg, lambda gs: min(
        [g for g in gs if g.key.get("primary_regime")] or gs,
        key=lambda g: g.key["lambda"], default=None))


def steps_per_prompt_spread(records: list[dict], loops: list[MatchedLoop]) -> float | None:
    """max / min - 1 of steps / |S_i| over the later generations of `loops` (both arms): 0
    when compute grows with m at equal passes; None when a record lacks the numbers."""
    wanted = {(lp.config, lp.n, lp.augment, lp.real_fraction, lp.seed) for lp in loops}
    ratios = []
    for r in records:
        key = (base_config(r.get("config", "")), int(r["n"]), int(r.get("augment", 0)),
               float(r["real_fraction"]), int(r["seed"]))
        if key not in wanted or int(r["generation"]) == 0:
            continue
        if not r.get("steps") or not r.get("train_size"):
            return None
        ratios.append(float(r["steps"]) / float(r["train_size"]))
    return (max(ratios) / min(ratios) - 1.0) if ratios else None


def section(doc: Document, evidence: Evidence, pred: Prediction) -> None:
    """P5's groups (the curves are in the group table's numbers and verdicts.json)."""
    doc.add("## Prediction 5: augmentation (version 2)", "",
            "Per seed, log excess risk at the last generation against m / n (compute growing "
            "with m), fitted by a quadratic; the oracle-augmented arm beside it.", "")
    doc.verdict_table(pred)
