"""Prediction 2, version 2: at lambda > 0 the loop stays bounded against its matched control.

A joint test, so that no loop P1 calls collapsing is ever certified bounded: per seed, (a) the
slope of log(E / E_oracle) over the window after the transient lies within +-delta_2 per
generation (TOST), and (b) the loop's own P1 statistic (the mean log contrast over generations
1..G) lies significantly below delta_1. The window starts at the first generation i_0 with
(1 - lambda)^(i_0 + 1) <= `v2_transient`; a lambda whose i_0 exceeds 2G/3 is not judged.
"""

from __future__ import annotations

import math

import numpy as np

from icl_stl.report.document import Document
from icl_stl.report.evidence import Evidence
from icl_stl.report.groups import describe_group
from icl_stl.report.matched import MatchedLoop, readable
from icl_stl.report.predictions.p1_matched_collapse import (
    groups_of,
    judged_window,
    too_short,
    v2_fields,
)
from icl_stl.report.rules import ReportConfig
from icl_stl.report.stats import (
    CODES,
    conjunction,
    directional_test,
    equivalence_test,
    slopes,
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
    describe_test,
    fields_of,
    finalise,
    fmt,
    largest,
)


def rule(cfg: ReportConfig) -> str:
    return (
        "Version 2. Per group (configuration, regime, n, lambda > 0, m = 0), the log contrast "
        "log(excess risk / the matched oracle-labelled loop's) per seed and generation. The "
        "window starts at the first generation i_0 with (1 - lambda)^(i_0 + 1) <= "
        f"{cfg.v2_transient:g} (the transient is over) and ends at G >= {cfg.v2_horizon}; a "
        "lambda with i_0 > 2G/3 is not judged. **Confirmed** (bounded) only when both hold at "
        f"{cfg.alpha:g}: the {1 - 2 * cfg.alpha:.0%} interval of the mean per-seed slope over "
        f"the window lies inside +-delta_2 = {cfg.v2_delta2:g} per generation (TOST), and the "
        "loop's own P1 statistic (mean log contrast over generations 1..G) is significantly "
        f"below delta_1 = {cfg.v2_delta1:g}. **Refuted** when either part is significantly on "
        "the wrong side (Bonferroni over the two).")


def transient_end(lam: float, level: float) -> int:
    """The first generation i_0 >= 1 with (1 - lambda)^(i_0 + 1) <= level."""
    if lam >= 1.0:
        return 1
    return max(1, math.ceil(math.log(level) / math.log(1.0 - lam) - 1.0 - 1e-12))


def p2_matched_core(window_contrast: np.ndarray, window: list[int], p1_contrast: np.ndarray,
                    cfg: ReportConfig) -> dict:
    """window_contrast (..., seeds, len(window)), p1_contrast (..., seeds, G): the joint test.

    Returns the slope's TOST fields with the joint codes and p_refute, and both parts."""
    slope = slopes(window, np.asarray(window_contrast, dtype=float))
    bounded = equivalence_test(slope, cfg.v2_delta2, cfg.levels)
    below = directional_test(np.asarray(p1_contrast, dtype=float).mean(-1), cfg.v2_delta1, -1,
                             cfg.levels)
    code, p_refute = conjunction(bounded, below, cfg.levels)
    return {**bounded, "code": code, "p_refute": p_refute, "slope": bounded, "below": below}


def _group(name: str, lam: float, loops: list[MatchedLoop], cfg: ReportConfig) -> GroupResult:
    group = readable(loops, cfg.v2_p2_seeds)
    horizon = judged_window(group)
    i0 = transient_end(lam, cfg.v2_transient)
    margins = {"delta_1": cfg.v2_delta1, "delta_2": cfg.v2_delta2, "i_0": i0}
    G = max(horizon, default=0)
    if not group.loops or G < cfg.v2_horizon:
        res = GroupResult(name, NOT_TESTED, n_seeds=len(group.loops),
                          numbers=too_short(group, horizon, cfg))
        return v2_fields(res, group, cfg, margins)
    if i0 > 2 * G / 3:
        res = GroupResult(name, NOT_APPLICABLE, n_seeds=len(group.loops), numbers=(
            f"transient: (1 - λ)^(i+1) <= {cfg.v2_transient:g} first at i_0 = {i0} > 2G/3 "
            f"= {2 * G / 3:.3g}; not judged at horizon G = {G}"))
        return v2_fields(res, group, cfg, margins)
    window = [g for g in horizon if g >= i0]
    test = p2_matched_core(group.matrix(window), window, group.matrix(horizon), cfg)
    f = fields_of(test)
    res = GroupResult(name, CODES[int(test["code"])], f["estimate"], f["interval"],
                      cfg.v2_delta2, int(test["n_seeds"]), f["min_detectable_effect"],
                      float(test["p_refute"]), statistic="slope of log(E / E_oracle)")
    below = fields_of(test["below"])
    res.parts["p1_statistic_below_delta_1"] = {**below, "margin": cfg.v2_delta1,
                                               "verdict": CODES[int(test["below"]["code"])]}
    res.numbers = (f"window generations {window[0]}-{window[-1]}; "
                   + describe_test(res, "/gen") + f"; own P1 statistic {fmt(below['estimate'])} "
                   f"[{fmt(below['interval'][0])}, {fmt(below['interval'][1])}] against "
                   f"delta_1 = {cfg.v2_delta1:g}")
    return v2_fields(res, group, cfg, margins)


def verdict(evidence: Evidence, cfg: ReportConfig) -> Prediction:
    pred = Prediction(2, "lambda > 0: excess risk stays bounded against the matched "
                      "oracle-labelled loop.", rule(cfg),
                      (CONFIRMED, REFUTED, INCONCLUSIVE, UNDERPOWERED, NOT_APPLICABLE),
                      rules_version="v2",
                      primary_rule=f"the counted group of regime {cfg.v2_regime} with the "
                                   "largest n, then the lambda closest to 0.5")
    grouped = groups_of(evidence, cfg, lambda lam: 0 < lam < 1)
    for (config, regime, n, lam), loops in grouped.items():
        res = _group(describe_group(config, regime=regime, n=n, λ=float(lam)), lam, loops, cfg)
        res.counted = all(loop.in_theorem_setting for loop in loops)
        res.key = {"n": n, "lambda": abs(lam - 0.5), "primary_regime": regime == cfg.v2_regime}
        pred.groups.append(res)
    return finalise(pred, cfg, lambda gs: largest(
        [g for g in gs if g.key.get("primary_regime")] or gs, "n", then="lambda"))


def section(doc: Document, evidence: Evidence, pred: Prediction) -> None:
    """P2's groups (the figures are Prediction 1's)."""
    doc.add("### Prediction 2 by group", "")
    doc.verdict_table(pred)
