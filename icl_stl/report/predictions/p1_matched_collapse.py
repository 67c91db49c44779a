"""Prediction 1, version 2: at lambda = 0 the loop collapses against its matched control.

Per seed, the mean over generations 1..G of log(excess risk / the oracle-labelled loop's), the
loop and its control sharing S_0, initialisation, batch order and compute (`report.matched`).
Confirmed when the one-sided lower bound exceeds delta_1 (`ReportConfig.v2_delta1`); refuted
when it is significantly below. `p1_matched_core` takes arrays with the seed axis and any leading
axes, so the calibration tests run the very code the report runs.
"""

from __future__ import annotations

import numpy as np

from icl_stl.report import figures, matched_figure
from icl_stl.report.document import Document
from icl_stl.report.evidence import Evidence
from icl_stl.report.groups import describe_group, group_by
from icl_stl.report.matched import (
    SCALE,
    MatchedGroup,
    MatchedLoop,
    matched_loops,
    readable,
    secondary_contrast,
)
from icl_stl.report.predictions.p1_collapse import risk_figures
from icl_stl.report.rules import ReportConfig
from icl_stl.report.stats import directional_test, slopes
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
    finalise,
    fmt,
    largest,
    result_of,
)

CONTROL = ("the oracle-labelled loop at the same lambda (same seed, S_0, initialisation, "
           "batch order and compute per generation)")


def rule(cfg: ReportConfig) -> str:
    return (
        "Version 2. Per group (configuration, regime, n, m = 0) at lambda = 0, one number per "
        "seed: the mean over generations 1..G of log(excess risk / the matched oracle-labelled "
        f"loop's excess risk), G >= {cfg.v2_horizon}. Excess risk: the mean of "
        "(f - f_Bayes)^2 / d over test prompts and positions. Only loops whose own generation 0 "
        "passed the gate and whose every later generation trained (both arms) are read; the "
        f"others are counted. One-sided t-test at {cfg.alpha:g}: **confirmed** if the mean "
        f"exceeds delta_1 = {cfg.v2_delta1:g} significantly, **refuted** if it is significantly "
        "below it.")


def p1_matched_core(contrast: np.ndarray, cfg: ReportConfig) -> dict:
    """contrast (..., seeds, generations 1..G): the per-seed mean against delta_1."""
    per_seed = np.asarray(contrast, dtype=float).mean(-1)
    return directional_test(per_seed, cfg.v2_delta1, +1, cfg.levels)


def judged_window(group: MatchedGroup) -> list[int]:
    """Generations 1..G that every read loop has."""
    return [g for g in group.generations if g > 0]


def too_short(group: MatchedGroup, window: list[int], cfg: ReportConfig) -> str:
    """The reading of a group whose loops have not reached the horizon yet."""
    read = f"generations 1..{max(window)}" if window else "generation 0 only"
    return f"{len(group.loops)} readable loop(s), {read}: needs a horizon of {cfg.v2_horizon}"


def v2_fields(res: GroupResult, group: MatchedGroup, cfg: ReportConfig,
              margins: dict) -> GroupResult:
    res.scale, res.control, res.margins, res.left_out = SCALE, CONTROL, margins, group.left_out
    left = group.left_out["missed_gate"] + group.left_out["training_failures"]
    notes = []
    if left:
        notes.append(f"{left} loop(s) left out ({group.left_out['missed_gate']} missed the "
                     f"gate, {group.left_out['training_failures']} failed to train)")
    if group.uneven:
        notes.append("uneven generations: judged on those every loop has")
    if notes:
        res.numbers = "; ".join(notes) + "; " + res.numbers
    return res


def _group(name: str, loops: list[MatchedLoop], evidence: Evidence,
           cfg: ReportConfig) -> GroupResult:
    group = readable(loops, cfg.v2_p1_seeds)
    window = judged_window(group)
    margins = {"delta_1": cfg.v2_delta1}
    if not group.loops or len(window) < cfg.v2_horizon:
        res = GroupResult(name, NOT_TESTED, numbers=too_short(group, window, cfg),
                          n_seeds=len(group.loops))
        return v2_fields(res, group, cfg, margins)
    mat = group.matrix(window)
    res = result_of(name, p1_matched_core(mat, cfg), cfg.v2_delta1,
                    "mean log(E / E_oracle), generations 1..G")
    trend = slopes(window, mat)
    res.parts["trend_per_generation"] = {"estimate": float(trend.mean()),
                                         "per_seed": [float(t) for t in trend]}
    secondary = [secondary_contrast(evidence.records, evidence.settings, loop)
                 for loop in group.loops]
    if all(s is not None for s in secondary):
        means = [float(np.mean([s[loop.generations.index(g)] for g in window]))
                 for s, loop in zip(secondary, group.loops)]
        res.parts["against_lambda_1"] = {"estimate": float(np.mean(means)), "per_seed": means}
    excess = np.array([[loop.excess[loop.generations.index(g)] for g in window]
                       for loop in group.loops])
    control = np.array([[loop.control[loop.generations.index(g)] for g in window]
                        for loop in group.loops])
    res.numbers = (f"excess risk {fmt(excess[:, 0].mean())} -> {fmt(excess[:, -1].mean())} "
                   f"against the oracle loop's {fmt(control[:, 0].mean())} -> "
                   f"{fmt(control[:, -1].mean())} (generations 1-{window[-1]}); trend "
                   f"{fmt(float(trend.mean()))}/generation; " + describe_test(res))
    return v2_fields(res, group, cfg, margins)


def groups_of(evidence: Evidence, cfg: ReportConfig, lam_test) -> dict[tuple, list]:
    """Matched loops (m = 0) grouped by (configuration, regime, n, lambda)."""
    loops = matched_loops(evidence.records, evidence.settings, cfg.gate_tolerance,
                          cfg.failure_gap, cfg.failure_train_ratio)
    chosen = [loop for loop in loops if loop.augment == 0 and lam_test(loop.real_fraction)]
    return group_by(chosen, lambda lp: (lp.config, lp.regime, lp.n, lp.real_fraction))


def verdict(evidence: Evidence, cfg: ReportConfig) -> Prediction:
    pred = Prediction(1, "lambda = 0: excess risk grows against the matched oracle-labelled "
                      "loop (collapse).", rule(cfg),
                      (CONFIRMED, REFUTED, INCONCLUSIVE, UNDERPOWERED, NOT_APPLICABLE),
                      heuristic=True,
                      rules_version="v2",
                      primary_rule=f"the counted lambda = 0 group of regime {cfg.v2_regime} "
                                   "with the largest n")
    for (config, regime, n, _), loops in groups_of(evidence, cfg, lambda lam: lam == 0).items():
        res = _group(describe_group(config, regime=regime, n=n), loops, evidence, cfg)
        res.counted = all(loop.in_theorem_setting for loop in loops)
        res.key = {"n": n, "config": config, "primary_regime": regime == cfg.v2_regime}
        pred.groups.append(res)
    return finalise(pred, cfg, lambda gs: largest(
        [g for g in gs if g.key.get("primary_regime")] or gs, "n"))


def section(doc: Document, evidence: Evidence, pred: Prediction) -> None:
    """The matched-control contrast: excess risk against generation, each lambda beside its
    oracle-labelled loop (Prediction 2 reads the same figure), then P1's groups."""
    doc.add("## Predictions 1 and 2: each loop against its matched control", "",
            "Excess risk over the Bayes predictor against generation, mean over the loops that "
            "passed the gate and trained, band: a 90% interval over seeds. Solid: the loop "
            "labelled by its own model; dashed: the same seed's oracle-labelled loop (same S_0, "
            "initialisation, batch order and compute). Right: the log contrast "
            "log(E / E_oracle) per generation, the statistic of the version-2 rules.", "")
    loops = matched_loops(evidence.records, evidence.settings, pred.rules.gate_tolerance,
                          pred.rules.failure_gap, pred.rules.failure_train_ratio)
    by_setting = group_by([lp for lp in loops if lp.augment == 0],
                          lambda lp: (lp.config, lp.regime, lp.n))
    short = figures.short_names(config for config, _, _ in by_setting)
    for (config, regime, n), group in by_setting.items():
        kept = readable(group).loops
        if not kept:
            continue
        name = describe_group(config, regime=regime, n=n)
        title = ", ".join(part for part in (short[config], f"{regime.replace('_', ' ')} "
                                            f"generations", f"n = {n:,}") if part)
        doc.figure("matched", f"excess risk against its matched control, {name}",
                   lambda path, kept=kept, title=title: matched_figure.draw(kept, path, title))
    if not loops:
        doc.add("No loop has an oracle-labelled twin (`members.labellers: [model, oracle]`): "
                "the version-2 rules have nothing to read.", "")
    doc.add("### Every loop group: risk against generation and position", "")
    risk_figures(doc, evidence)
    doc.add("### Prediction 1 by group", "")
    doc.verdict_table(pred)
