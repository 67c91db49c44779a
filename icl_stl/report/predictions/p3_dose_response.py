"""Prediction 3, version 2: recursive stability as a dose-response, and its recursion test.

The records are the dose-response probe's (`icl_stl/probes/dose_response.py`): per seed,
lambda and generation, the slope in q of the squared distance between a loop with a fraction q
of S_0 replaced and its base, minus the chaos twin's (`probes.dose_fit`): b = n gamma^2, the
per-prompt effect on the scale of squared distances. Generation 0 is shared by lambda = 0 and
lambda = 0.5 (same S_0, initialisation and batch order), so b_0 is one number per seed.

Two tests, both per seed and in this order:

1. *Signal*: the generation-0 slope b_0 is significantly above 0 (one-sided t-test): replacing
   more prompts moves the model further. Otherwise the group is **not applicable**: the
   distance is the floor that any change of the data (or of the batch order) produces, and P3
   would read chaos, not the data. (The slope has an intercept, so it does not depend on the
   chaos twin; the twin says where that floor sits: the pilot's replaced loops were 0.34 of
   the way to it.)
2. *Recursion*: rho = mean_s [mean_{i=1..G} (b_i(lambda=0) - b_i(lambda=0.5))] / mean_s b_0:
   how much more the effect of S_0 grows over the generations without real data than with
   lambda = 0.5, in units of generation 0's effect (gamma_i^2 / gamma_0^2, paired between the
   two lambdas seed by seed). The ratio of means (delta method, from per-seed pseudo-values)
   rather than the mean of per-seed ratios: a seed's b_0 is a difference of noisy squared
   distances and can sit near 0, where its own ratio explodes. **Confirmed** when the one-sided
   lower bound exceeds delta_3, **refuted** when the upper bound falls below it. A heuristic
   like P1: the theorem bounds the effect; it does not say the bound is reached.

`signal_core` and `recursion_core` take arrays with the seed axis and any leading axes, so the
calibration (`report/simulate_p3.py`) runs the very code the report runs.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from icl_stl.probes.dose_fit import dose_rows
from icl_stl.report.document import Document
from icl_stl.report.evidence import Evidence
from icl_stl.report.gating import gate_of_record
from icl_stl.report.groups import describe_group
from icl_stl.report.rules import ReportConfig
from icl_stl.report.stats import C_CONFIRMED, directional_test
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

STATISTIC = "sq_dist_slope"  # the chaos-subtracted dose slope, with intercept (probes.dose_fit)
SCALE = "dose_slope"
CONTROL = ("the chaos twin: the same loop under another batch order (same S_0, "
           "initialisation, synthetic x's and reused real prompts), whose squared distance is "
           "subtracted")
LAMBDAS = (0.0, 0.5)


def rule(cfg: ReportConfig) -> str:
    return (
        "Version 2. Per group (configuration, regime, n) of the dose-response probe: per seed, "
        "the slope in q of the squared distance between the loop with a fraction q of S_0 "
        "replaced and its base, minus the chaos twin's (the same loop under another batch "
        "order), on fixed probe prompts. Only seeds every one of whose loops passed the gate "
        "at generation 0 are read, in ascending order, the first "
        f"{cfg.v2_p3_seeds}. *Signal*: the generation-0 slope significantly above 0 "
        f"(one-sided t-test at {cfg.alpha:g}: the distance grows with q), else **not "
        "applicable** (chaos, not data). "
        "*Recursion* (generations 1..G, G >= "
        f"{cfg.v2_p3_horizon}, from scratch): rho = mean over seeds of the mean over "
        "generations of (slope at lambda = 0 - slope at lambda = 0.5), over the mean "
        "generation-0 slope; delta-method t-test: **confirmed** if rho exceeds delta_3 = "
        f"{cfg.v2_p3_delta:g} significantly, **refuted** if it is significantly below it.")


def signal_core(b0: np.ndarray, cfg: ReportConfig) -> dict:
    """b0 (..., seeds): is the generation-0 dose slope above 0 (above the chaos floor)?"""
    return directional_test(np.asarray(b0, float), 0.0, +1, cfg.levels,
                            resolution=float(np.abs(np.mean(b0))) or None)


def recursion_pseudo(b0: np.ndarray, b_zero: np.ndarray, b_half: np.ndarray) -> np.ndarray:
    """Per-seed pseudo-values of rho (..., seeds): their mean is rho, their spread its
    delta-method standard error. b0 (..., seeds); b_zero, b_half (..., seeds, generations)."""
    b0 = np.asarray(b0, float)
    diff = (np.asarray(b_zero, float) - np.asarray(b_half, float)).mean(-1)
    scale = b0.mean(-1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        rho = diff.mean(-1, keepdims=True) / scale
        return rho + (diff - rho * b0) / scale


def recursion_core(b0: np.ndarray, b_zero: np.ndarray, b_half: np.ndarray,
                   cfg: ReportConfig) -> dict:
    """rho (the paired ratio) against delta_3, one-sided, over the seed axis."""
    return directional_test(recursion_pseudo(b0, b_zero, b_half), cfg.v2_p3_delta, +1,
                            cfg.levels)


def p3v2_codes(b0: np.ndarray, b_zero: np.ndarray, b_half: np.ndarray,
               cfg: ReportConfig) -> np.ndarray:
    """The combined code per draw: confirmed or refuted only where the signal test passed;
    elsewhere -1 (not applicable). The calibration reads these."""
    signal = signal_core(b0, cfg)
    test = recursion_core(b0, b_zero, b_half, cfg)
    above = np.asarray(signal["code"]) == C_CONFIRMED
    return np.where(above, np.asarray(test["code"]), -1)


def dose_records(evidence: Evidence, tolerance: float) -> list[dict]:
    """Every dose-response row of every run (`probes.dose_fit.dose_rows` on summary.json's
    records), with the run's configuration, regime and the seed's gate: `gate_missed` lists
    the loops (by tag) whose own generation 0 missed, `gate_min` the least gap closed."""
    out = []
    for run in evidence.runs:
        if run.dose_response is None or run.summary is None:
            continue
        records = run.summary.get("generations", [])
        gates: dict[tuple, list] = defaultdict(list)
        for r in records:
            if r["generation"] == 0:
                gates[(r["seed"], r["n"])].append((r.get("tag", ""), gate_of_record(r,
                                                                                    tolerance)))
        regime = run.flat_settings.get("loop.init", run.dose_response.get("regime"))
        for row in dose_rows(records):
            seed_gates = gates.get((row["seed"], row["n"]), [])
            closed = [g["gap_closed"] for _, g in seed_gates if g["gap_closed"] is not None]
            out.append({**row, "config": run.config, "regime": regime, "run": str(run.path),
                        "in_theorem_setting": run.in_theorem_setting,
                        "gate_missed": [t for t, g in seed_gates if g["reached"] is False],
                        "gate_min": min(closed) if closed else None})
    return out


def _slopes(rows: dict, seeds: list[int], lam: float, gens: list[int]) -> np.ndarray:
    return np.array([[rows[(s, lam, g)][STATISTIC] for g in gens] for s in seeds])


def _group(name: str, recs: list[dict], cfg: ReportConfig) -> GroupResult:
    rows = {(r["seed"], float(r["real_fraction"]), r["generation"]): r for r in recs}
    seeds_all = sorted({r["seed"] for r in recs})
    gens = sorted({r["generation"] for r in recs})
    window = [g for g in gens if g > 0 and all(
        (s, lam, g) in rows for s in seeds_all for lam in LAMBDAS)]
    missed = sorted({s for r in recs if r["gate_missed"] for s in [r["seed"]]})
    complete = [s for s in seeds_all if s not in missed
                and all((s, lam, 0) in rows for lam in LAMBDAS)]
    read = complete[:cfg.v2_p3_seeds] if cfg.v2_p3_seeds else complete
    margins = {"delta_3": cfg.v2_p3_delta, "signal": 0.0}
    left_out = {"missed_gate": len(missed), "beyond_count": len(complete) - len(read),
                "loops": [f"seed {s}" for s in missed]}
    res = GroupResult(name, NOT_TESTED, margin=cfg.v2_p3_delta, n_seeds=len(read))
    res.scale, res.control, res.margins, res.left_out = SCALE, CONTROL, margins, left_out
    notes = [f"{len(missed)} seed(s) left out: a loop's generation 0 missed the gate"] \
        if missed else []
    if not read or len(window) < cfg.v2_p3_horizon:
        res.numbers = "; ".join(notes + [
            f"{len(read)} readable seed(s) with lambda 0 and 0.5, generations 1.."
            f"{max(window, default=0)}: needs a horizon of {cfg.v2_p3_horizon}"])
        return res
    b0 = _slopes(rows, read, LAMBDAS[0], [0])[:, 0]
    b_zero, b_half = (_slopes(rows, read, lam, window) for lam in LAMBDAS)
    signal = signal_core(b0, cfg)
    res = result_of(name, recursion_core(b0, b_zero, b_half, cfg), cfg.v2_p3_delta,
                    "rho = (gamma_i^2(lambda 0) - gamma_i^2(lambda 0.5)) / gamma_0^2")
    res.scale, res.control, res.margins, res.left_out = SCALE, CONTROL, margins, left_out
    res.parts["signal"] = {"estimate": float(signal["estimate"]),
                           "interval": [float(signal["low"]), float(signal["high"])],
                           "p_confirm": float(signal["p_confirm"])}
    res.parts["ratio_by_lambda"] = {f"{lam:g}": (m.mean(0) / b0.mean()).tolist()
                                    for lam, m in zip(LAMBDAS, (b_zero, b_half))}
    text = (f"generation-0 dose slope {fmt(float(b0.mean()))} "
            f"[{fmt(float(signal['low']))}, {fmt(float(signal['high']))}] (n gamma_0^2)")
    if len(read) >= cfg.min_seeds and int(signal["code"]) != C_CONFIRMED:
        res.verdict = NOT_APPLICABLE
        notes.append("no dose-response: the distance does not grow significantly with q above "
                     "its chaos floor, so P3 reads chaos, not the data")
        res.p_refute = None
    elif res.verdict == REFUTED and int(signal["code"]) != C_CONFIRMED:
        res.verdict = UNDERPOWERED
    res.numbers = "; ".join(notes + [text, describe_test(res)])
    return res


def verdict(evidence: Evidence, cfg: ReportConfig) -> Prediction:
    pred = Prediction(3, "Recursive stability: the effect of S_0 on the loop grows more over "
                      "the generations without real data (lambda = 0) than with lambda = 0.5, "
                      "read as a dose-response above the chaos floor.", rule(cfg),
                      (CONFIRMED, REFUTED, INCONCLUSIVE, UNDERPOWERED, NOT_APPLICABLE),
                      heuristic=True, rules_version=PROVISIONAL,
                      primary_rule=f"the counted group of regime {cfg.v2_regime} with the "
                                   "largest n")
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in dose_records(evidence, cfg.gate_tolerance):
        groups[(r["config"], r["regime"], r["n"], r["in_theorem_setting"])].append(r)
    for (config, regime, n, counted), recs in sorted(groups.items(), key=lambda kv: str(kv[0])):
        res = _group(describe_group(config, regime=regime, n=n), recs, cfg)
        res.counted = bool(counted)
        res.key = {"n": n, "primary_regime": regime == cfg.v2_regime}
        pred.groups.append(res)
    return finalise(pred, cfg, lambda gs: largest(
        [g for g in gs if g.key.get("primary_regime")] or gs, "n"))


def section(doc: Document, evidence: Evidence, pred: Prediction) -> None:
    doc.add("## Prediction 3: recursive stability as a dose-response", "",
            "Per seed, lambda and generation, the slope in q of the squared distance between "
            "the loop with a fraction q of S_0 replaced and its base, minus the chaos twin's "
            "(the same loop under another batch order). Mean over seeds; W2 between the "
            "Gaussian heads and |delta mu| beside it.", "")
    rows = []
    for r in dose_records(evidence, pred.rules.gate_tolerance):
        rows.append([describe_group(r["config"], regime=r["regime"], n=r["n"]) or "(all)",
                     r["seed"], fmt(r["real_fraction"]), r["generation"],
                     fmt(r["chaos_sq_dist"]), ", ".join(fmt(v) for v in r["sq_dist"]),
                     fmt(r.get(STATISTIC)), fmt(r.get("sq_dist_intercept")),
                     fmt(r.get("w2_sq_slope")), fmt(r["chaos_abs_dist"])])
    if rows:
        doc.table(["group", "seed", "λ", "generation", "chaos sq. distance",
                   "sq. distance per q", "dose slope", "intercept", "W2² dose slope",
                   "chaos |Δμ|"], rows)
    doc.verdict_table(pred)


__all__ = ["CONTROL", "SCALE", "STATISTIC", "dose_records", "p3v2_codes", "recursion_core",
           "recursion_pseudo", "rule", "section", "signal_core", "verdict"]
