"""Prediction 6, version 2: a filter that keeps the task spread prevents collapse.

Four loops per seed: the filtered loop (labelled by its model), its oracle-labelled twin under the
same filter (the control), and the same seed's unfiltered loop with its oracle twin, all of one
base configuration, regime, n and lambda (`report.matched` pairs each loop with its twin, the
unfiltered pair comes from the run without `loop.filter`; `report.p6_pairs` groups the four and
computes the co-primary interactions). The statistic is the seed-paired
filter x labeller interaction on log excess risk,

    I(g) = log(E_filtered / E_filtered oracle) - log(E_unfiltered / E_unfiltered oracle),

averaged over generations 1..G: what the filter does to the model-labelled loop beyond what it
does to real-like prompts. Its pilot (docs/results/pilot-p6) showed that a filter admitted on
oracle-labelled prompts can still select on the task once the model labels them: the residual
filter lowered the excess-risk contrast while the model arm's kept spread fell to 0.42 of real and
its head's z^2 rose to 3.5 by generation 3. So the co-primary scales are decisive: the same
interaction of the head's log z^2 (`head_z2`, 1 for a calibrated Gaussian) and of the kept tasks'
log covariance-trace ratio (`filter_w_cov_ratio_after`; `syn_w_cov_ratio` for the unfiltered
loop). Confirmed when the excess-risk interaction is significantly below -delta_6 AND the
calibration interaction significantly below +calibration AND the spread interaction
significantly above -spread (an intersection-union test: each at alpha); refuted when any of the
three is significantly on the wrong side (Bonferroni over the three). Shown beside: the filtered
loop's own P1 statistic.

Only filters that pass the admission test (`icl_stl.loop.admission.ADMITTED_FILTERS`) are
judged: a filter that selects on the task shrinks the kept spread by construction (issue 30),
so its groups are "not applicable: filter not admitted", with their measured spread.
`p6_matched_core` takes arrays with the seed axis and any leading axes (the calibration runs
the very code the report runs, `report.simulate_p6`).
"""

from __future__ import annotations

import json

import numpy as np

from icl_stl.loop.admission import ADMITTED_FILTERS
from icl_stl.report.document import Document
from icl_stl.report.evidence import Evidence
from icl_stl.report.matched import SCALE
from icl_stl.report.p6_pairs import coprimary, filter_groups, labeller_means, seed_pairs
from icl_stl.report.rules import ReportConfig
from icl_stl.report.stats import conjunction_of, directional_test
from icl_stl.report.verdict import (
    CONFIRMED,
    INCONCLUSIVE,
    NOT_APPLICABLE,
    NOT_TESTED,
    REFUTED,
    UNDERPOWERED,
    V2,
    GroupResult,
    Prediction,
    describe_test,
    finalise,
    fmt,
    largest,
    result_of,
)

CONTROL = ("the oracle-labelled loop under the same filter, against the same seed's unfiltered "
           "loop and its oracle twin (the filter x labeller interaction)")
SPREAD = ("filter_w_cov_ratio_after", "filter_w_norm_ratio_after")


def rule(cfg: ReportConfig) -> str:
    return (
        "Version 2. Per group (base configuration, regime, n, lambda, filter) of an admitted "
        "filter (one whose kept prompts, oracle-labelled, keep the covariance trace and mean "
        "||w|| of real tasks within 2%), three numbers per seed, each the mean over generations "
        "1..G of a filter x labeller interaction, log(X_filtered / X_filtered oracle) - "
        f"log(X_unfiltered / X_unfiltered oracle), G >= {cfg.v2_horizon}: X the excess risk over "
        "the Bayes predictor, the head's z^2 (co-primary: calibration) and the training set's "
        "task covariance-trace ratio against real (co-primary: spread). All four loops of a seed "
        f"must pass the gate and train. One-sided t-tests at {cfg.alpha:g}: **confirmed** if "
        f"the excess-risk interaction is significantly below -delta_6 = {-cfg.v2_p6_delta:g}, "
        f"the calibration interaction significantly below {cfg.v2_p6_calibration:g} and the "
        f"spread interaction significantly above {-cfg.v2_p6_spread:g}; **refuted** if any of "
        "the three is significantly on the wrong side (Bonferroni over the three). The first "
        f"{cfg.v2_p6_seeds} seeds with all four loops readable are read. Primary: the largest "
        f"n, then the {cfg.v2_p6_primary_filter} filter. Shown beside: the filtered loop's own "
        "P1 statistic. Filters not admitted are not judged.")


def p6_matched_core(interaction: np.ndarray, cfg: ReportConfig,
                    calibration: np.ndarray | None = None,
                    spread: np.ndarray | None = None) -> dict:
    """Each array (..., seeds, generations 1..G): a filter x labeller interaction.

    With the excess-risk interaction alone, its per-seed mean against -delta_6 (the rule's
    first part). With the co-primary interactions too, the joint codes and p_refute, and the
    three parts (`excess`, `calibration`, `spread`)."""
    excess = directional_test(np.asarray(interaction, dtype=float).mean(-1), -cfg.v2_p6_delta,
                              -1, cfg.levels)
    if calibration is None or spread is None:
        return excess
    calib = directional_test(np.asarray(calibration, dtype=float).mean(-1),
                             cfg.v2_p6_calibration, -1, cfg.levels)
    kept = directional_test(np.asarray(spread, dtype=float).mean(-1), -cfg.v2_p6_spread, +1,
                            cfg.levels)
    code, p_refute = conjunction_of([excess, calib, kept], cfg.levels)
    return {**excess, "code": code, "p_refute": p_refute, "excess": excess,
            "calibration": calib, "spread": kept}


def _spread_words(spread: dict) -> str:
    cov, norm = spread["filter_w_cov_ratio_after"], spread["filter_w_norm_ratio_after"]
    return (f"kept spread (model / oracle arm): covariance-trace ratio {fmt(cov['model'])} / "
            f"{fmt(cov['oracle'])}, mean ||w|| ratio {fmt(norm['model'])} / "
            f"{fmt(norm['oracle'])}")


def _group(name: str, filter_name: str, pairs: list, arms: dict,
           cfg: ReportConfig) -> GroupResult:
    margins = {"delta_6": cfg.v2_p6_delta}
    chosen = seed_pairs(pairs, cfg.v2_p6_seeds)
    filtered, partners, both, window = (chosen.filtered, chosen.partners, chosen.both,
                                        chosen.window)
    spread = {f: labeller_means(arms, [lp for lp, _ in pairs], f, window or [1]) for f in SPREAD}
    if filter_name not in ADMITTED_FILTERS:
        res = GroupResult(name, NOT_APPLICABLE, numbers=(
            f"not applicable: filter not admitted ({filter_name}); " + _spread_words(spread)),
            n_seeds=len(pairs))
    elif not both or len(window) < cfg.v2_horizon:
        res = GroupResult(name, NOT_TESTED, numbers=(
            f"{len(both)} seed(s) with all four loops readable, generations 1.."
            f"{max(window, default=0)}: needs a horizon of {cfg.v2_horizon} and the unfiltered "
            "loop with its oracle twin; " + _spread_words(spread)), n_seeds=len(both))
    else:
        own = np.array([[lp.contrast[lp.generations.index(g)] for g in window] for lp in both])
        ref = np.array([[partners[lp.seed].contrast[partners[lp.seed].generations.index(g)]
                         for g in window] for lp in both])
        calibration, kept = coprimary(arms, both, partners, window)
        if calibration is None or kept is None:
            res = GroupResult(name, NOT_TESTED, n_seeds=len(both), numbers=(
                "the records lack the co-primary scales (the head's z^2 needs the Gaussian "
                "head; the spread needs `syn_w_cov_ratio` and `filter_w_cov_ratio_after`); "
                + _spread_words(spread)))
            res.scale, res.control, res.margins = SCALE, CONTROL, margins
            return res
        test = p6_matched_core(own - ref, cfg, calibration, kept)
        res = result_of(name, test, -cfg.v2_p6_delta,
                        "mean filter x labeller interaction on log excess risk, "
                        "generations 1..G")
        for part, margin in (("calibration", cfg.v2_p6_calibration),
                             ("spread", -cfg.v2_p6_spread)):
            fields = result_of(part, test[part], margin, part)
            res.parts[f"{part}_interaction"] = {
                "estimate": fields.estimate, "interval": fields.interval, "margin": margin,
                "verdict": fields.verdict,
                "per_seed": [float(v) for v in np.mean(calibration if part == "calibration"
                                                       else kept, axis=1)]}
        res.parts["excess_interaction"] = {"verdict": result_of(
            "excess", test["excess"], -cfg.v2_p6_delta, "excess").verdict}
        z2 = {"filtered": labeller_means(arms, both, "head_z2", window),
              "unfiltered": labeller_means(arms, [partners[lp.seed] for lp in both], "head_z2", window)}
        res.parts["filtered_p1_statistic"] = {"estimate": float(own.mean()),
                                              "per_seed": [float(v) for v in own.mean(1)]}
        res.parts["head_z2"] = z2
        res.parts["kept_spread"] = spread
        cal, spr = res.parts["calibration_interaction"], res.parts["spread_interaction"]
        res.numbers = (f"filtered loop's log contrast {fmt(float(own.mean()))} against the "
                       f"unfiltered loop's {fmt(float(ref.mean()))} ("
                       f"{res.parts['excess_interaction']['verdict']} alone); calibration "
                       f"interaction {fmt(cal['estimate'])} [{fmt(cal['interval'][0])}, "
                       f"{fmt(cal['interval'][1])}] against {fmt(cal['margin'])} "
                       f"({cal['verdict']}); spread interaction {fmt(spr['estimate'])} "
                       f"[{fmt(spr['interval'][0])}, {fmt(spr['interval'][1])}] against "
                       f"{fmt(spr['margin'])} ({spr['verdict']}); head z^2 filtered "
                       f"{fmt(z2['filtered']['model'])} (oracle arm "
                       f"{fmt(z2['filtered']['oracle'])}), unfiltered "
                       f"{fmt(z2['unfiltered']['model'])}; " + _spread_words(spread) + "; "
                       + describe_test(res))
    res.scale, res.control, res.margins = SCALE, CONTROL, margins
    res.left_out = filtered.left_out
    res.parts.setdefault("kept_spread", spread)
    return res


def verdict(evidence: Evidence, cfg: ReportConfig) -> Prediction:
    pred = Prediction(6, "An admitted filter (one that keeps the task spread) prevents "
                      "collapse: it lowers the loop's excess risk against its oracle twin by "
                      "more than delta_6 beyond what it does to the unfiltered loop.",
                      rule(cfg), (CONFIRMED, REFUTED, INCONCLUSIVE, UNDERPOWERED,
                                  NOT_APPLICABLE),
                      rules_version=V2,
                      primary_rule="the counted group of an admitted filter at lambda = 0, "
                                   f"regime {cfg.v2_regime}, with the largest n, then the "
                                   f"{cfg.v2_p6_primary_filter} filter")
    groups, arms = filter_groups(evidence, cfg)
    for (_, regime, n, lam, settings), pairs in sorted(groups.items(), key=str):
        filter_settings = json.loads(settings)
        label = ", ".join(f"{k}={v}" for k, v in filter_settings.items()
                          if v not in (None, "s0", 0.0, "known") or k == "filter")
        name = f"{pairs[0][0].config or 'base'}; {label}; {regime}, n={n}, λ={lam:g}"
        res = _group(name, filter_settings["filter"], pairs, arms, cfg)
        res.counted = (lam == 0 and regime == cfg.v2_regime
                       and filter_settings["filter"] in ADMITTED_FILTERS)
        res.key = {"n": n, "lambda": lam,
                   "other_filter": int(filter_settings["filter"] != cfg.v2_p6_primary_filter)}
        pred.groups.append(res)
    return finalise(pred, cfg, lambda gs: largest(gs, "n", then="other_filter"))


def section(doc: Document, evidence: Evidence, pred: Prediction) -> None:
    doc.add("## Prediction 6 (version 2): filters that keep the task spread", "",
            "Each filtered loop against its oracle-labelled twin under the same filter, "
            "beside the same seed's unfiltered pair; filters that select on the task (the "
            "ranking, threshold and best-of-K verifiers) are shown with their kept spread and "
            "not judged.", "")
    doc.verdict_table(pred)
