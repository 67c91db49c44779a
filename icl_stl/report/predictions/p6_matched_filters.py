"""Prediction 6, version 2 (provisional): a filter that keeps the task spread prevents collapse.

Four loops per seed: the filtered loop (labelled by its model), its oracle-labelled twin under the
same filter (the control), and the same seed's unfiltered loop with its oracle twin, all of one
base configuration, regime, n and lambda (`report.matched` pairs each loop with its twin, the
unfiltered pair comes from the run without `loop.filter`). The statistic is the seed-paired
filter x labeller interaction on log excess risk,

    I(g) = log(E_filtered / E_filtered oracle) - log(E_unfiltered / E_unfiltered oracle),

averaged over generations 1..G: what the filter does to the model-labelled loop beyond what it
does to real-like prompts. Confirmed when its one-sided upper bound falls below -delta_6
(`ReportConfig.v2_p6_delta`); refuted when it is significantly above it. Shown beside, never
decisive (co-primary scales): the filtered loop's own P1 statistic, the head's calibration
(`head_z2`, 1 for a calibrated Gaussian) of each arm, and the kept tasks' spread ratio
(`filter_w_cov_ratio_after`, `filter_w_norm_ratio_after`) of each arm.

Only filters that pass the admission test (`icl_stl.loop.admission.ADMITTED_FILTERS`) are
judged: a filter that selects on the task shrinks the kept spread by construction (issue 30),
so its groups are "not applicable: filter not admitted", with their measured spread.
`p6_matched_core` takes arrays with the seed axis and any leading axes (the calibration runs
the very code the report runs, `report.simulate_p6`).
"""

from __future__ import annotations

import json
from collections import defaultdict

import numpy as np

from icl_stl.loop.admission import ADMITTED_FILTERS
from icl_stl.report.document import Document
from icl_stl.report.evidence import Evidence
from icl_stl.report.extension_runs import FIELDS
from icl_stl.report.matched import (
    SCALE,
    MatchedLoop,
    base_config,
    labeller_of,
    matched_loops,
    readable,
    regime_of,
)
from icl_stl.report.rules import ReportConfig
from icl_stl.report.stats import directional_test
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
    describe_test,
    finalise,
    fmt,
    largest,
    result_of,
)

CONTROL = ("the oracle-labelled loop under the same filter, against the same seed's unfiltered "
           "loop and its oracle twin (the filter x labeller interaction)")
FILTER_FIELDS = tuple(k for k in FIELDS if k.startswith(("filter", "verifier")))
SPREAD = ("filter_w_cov_ratio_after", "filter_w_norm_ratio_after")


def rule(cfg: ReportConfig) -> str:
    return (
        "Version 2, provisional. Per group (base configuration, regime, n, lambda, filter) of "
        "an admitted filter (one whose kept prompts, oracle-labelled, keep the covariance trace "
        "and mean ||w|| of real tasks within 2%), one number per seed: the mean over "
        "generations 1..G of log(E_filtered / E_filtered oracle) - log(E_unfiltered / "
        f"E_unfiltered oracle), G >= {cfg.v2_horizon}, E the excess risk over the Bayes "
        "predictor. All four loops of a seed must pass the gate and train. One-sided t-test at "
        f"{cfg.alpha:g}: **confirmed** if the mean is significantly below -delta_6 = "
        f"{-cfg.v2_p6_delta:g}, **refuted** if significantly above it. Shown beside: the "
        "filtered loop's own P1 statistic, the head's z^2 and the kept spread of each arm. "
        "Filters not admitted are not judged.")


def p6_matched_core(interaction: np.ndarray, cfg: ReportConfig) -> dict:
    """interaction (..., seeds, generations 1..G): the per-seed mean against -delta_6."""
    per_seed = np.asarray(interaction, dtype=float).mean(-1)
    return directional_test(per_seed, -cfg.v2_p6_delta, -1, cfg.levels)


def _loop_key(r: dict, settings: dict) -> tuple:
    run = settings.get(r.get("run", ""), {})
    return (base_config(r.get("config", "")), regime_of(r, run), int(r["n"]),
            int(r.get("augment", 0)), float(r["real_fraction"]), int(r["seed"]))


def _index(evidence: Evidence) -> tuple[dict, dict]:
    """{loop key: tagged generation-0 record} and {(loop key, labeller): {generation: record}}."""
    first, arms = {}, defaultdict(dict)
    for r in evidence.tagged:
        key = _loop_key(r, evidence.settings)
        arms[(key, labeller_of(r, evidence.settings.get(r.get("run", ""), {})))][
            int(r["generation"])] = r
        if int(r["generation"]) == 0:
            first.setdefault(key, r)
    return first, arms


def _key_of(loop: MatchedLoop) -> tuple:
    return (loop.config, loop.regime, loop.n, loop.augment, loop.real_fraction, loop.seed)


def filter_groups(evidence: Evidence, cfg: ReportConfig
                  ) -> tuple[dict[tuple, list[tuple[MatchedLoop, MatchedLoop | None]]], dict]:
    """Filtered matched loops grouped by (base, regime, n, lambda, filter settings), each with
    the same seed's unfiltered matched loop (None when missing), and the record index."""
    first, arms = _index(evidence)
    loops = matched_loops(evidence.records, evidence.settings, cfg.gate_tolerance,
                          cfg.failure_gap, cfg.failure_train_ratio)
    plain, filtered = {}, defaultdict(list)
    for loop in loops:
        tag = first.get(_key_of(loop))
        if tag is None or loop.augment != 0 or tag.get("schedule", "constant") != "constant":
            continue
        where = (tag["base"], loop.regime, loop.n, loop.real_fraction)
        if tag.get("filter", "none") == "none":
            plain.setdefault((*where, loop.seed), loop)
        else:
            settings = json.dumps({k: tag.get(k) for k in FILTER_FIELDS}, default=str)
            filtered[(*where, settings)].append(loop)
    groups = {key: [(lp, plain.get((*key[:4], lp.seed))) for lp in members]
              for key, members in filtered.items()}
    return groups, arms


def _arm_mean(arms: dict, loop: MatchedLoop, labeller: str, field: str,
              window: list[int]) -> float | None:
    values = [arms[(_key_of(loop), labeller)].get(g, {}).get(field) for g in window]
    values = [float(v) for v in values if v is not None]
    return float(np.mean(values)) if values else None


def _side(arms: dict, loops: list[MatchedLoop], field: str, window: list[int]) -> dict:
    out = {}
    for labeller in ("model", "oracle"):
        vals = [_arm_mean(arms, lp, labeller, field, window) for lp in loops]
        vals = [v for v in vals if v is not None]
        out[labeller] = float(np.mean(vals)) if vals else None
    return out


def _spread_words(spread: dict) -> str:
    cov, norm = spread["filter_w_cov_ratio_after"], spread["filter_w_norm_ratio_after"]
    return (f"kept spread (model / oracle arm): covariance-trace ratio {fmt(cov['model'])} / "
            f"{fmt(cov['oracle'])}, mean ||w|| ratio {fmt(norm['model'])} / "
            f"{fmt(norm['oracle'])}")


def _group(name: str, filter_name: str, pairs: list, arms: dict,
           cfg: ReportConfig) -> GroupResult:
    margins = {"delta_6": cfg.v2_p6_delta}
    filtered = readable([lp for lp, _ in pairs])
    partners = {lp.seed: plain for lp, plain in pairs}
    both = [lp for lp in filtered.loops if partners.get(lp.seed) is not None
            and partners[lp.seed].gated and not partners[lp.seed].failures]
    both = both[:cfg.v2_p6_seeds] if cfg.v2_p6_seeds is not None else both
    window = sorted(set.intersection(*(set(lp.generations) & set(partners[lp.seed].generations)
                                       for lp in both)) - {0}) if both else []
    spread = {f: _side(arms, [lp for lp, _ in pairs], f, window or [1]) for f in SPREAD}
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
        res = result_of(name, p6_matched_core(own - ref, cfg), -cfg.v2_p6_delta,
                        "mean filter x labeller interaction on log excess risk, "
                        "generations 1..G")
        z2 = {"filtered": _side(arms, both, "head_z2", window),
              "unfiltered": _side(arms, [partners[lp.seed] for lp in both], "head_z2", window)}
        res.parts["filtered_p1_statistic"] = {"estimate": float(own.mean()),
                                              "per_seed": [float(v) for v in own.mean(1)]}
        res.parts["head_z2"] = z2
        res.parts["kept_spread"] = spread
        res.numbers = (f"filtered loop's log contrast {fmt(float(own.mean()))} against the "
                       f"unfiltered loop's {fmt(float(ref.mean()))}; head z^2 filtered "
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
                      rules_version=PROVISIONAL,
                      primary_rule="the counted group of an admitted filter at lambda = 0, "
                                   f"regime {cfg.v2_regime}, with the largest n")
    groups, arms = filter_groups(evidence, cfg)
    for (_, regime, n, lam, settings), pairs in sorted(groups.items(), key=str):
        filter_settings = json.loads(settings)
        label = ", ".join(f"{k}={v}" for k, v in filter_settings.items()
                          if v not in (None, "s0", 0.0, "known") or k == "filter")
        name = f"{pairs[0][0].config or 'base'}; {label}; {regime}, n={n}, λ={lam:g}"
        res = _group(name, filter_settings["filter"], pairs, arms, cfg)
        res.counted = (lam == 0 and regime == cfg.v2_regime
                       and filter_settings["filter"] in ADMITTED_FILTERS)
        res.key = {"n": n, "lambda": lam}
        pred.groups.append(res)
    return finalise(pred, cfg, lambda gs: largest(gs, "n"))


def section(doc: Document, evidence: Evidence, pred: Prediction) -> None:
    doc.add("## Prediction 6 (version 2, provisional): filters that keep the task spread", "",
            "Each filtered loop against its oracle-labelled twin under the same filter, "
            "beside the same seed's unfiltered pair; filters that select on the task (the "
            "ranking, threshold and best-of-K verifiers) are shown with their kept spread and "
            "not judged.", "")
    doc.verdict_table(pred)
