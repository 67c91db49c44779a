"""Predictions 3 and 4, judged from the probes' stability.json and decay.json.

stability.json (icl_stl.probes.stability) holds one record per (n, generation) with gamma_max
and gamma_mean averaged over the twin pairs (seeds x replaced indices) and their sd. Runs of
the same configuration, lambda and replacement are pooled, so a `-m` sweep over data.n gives one
gamma-against-n curve. decay.json (icl_stl.probes.decay) carries the verdict of
`theory.decay_verdict`, which the report takes as it is.
"""

from __future__ import annotations

import numpy as np

from icl_stl.report.collect import RunResult
from icl_stl.report.rules import (
    CONFIRMED,
    INCONCLUSIVE,
    NEGLIGIBLE_GROWTH,
    NO_DATA,
    REFUTED,
    GroupVerdict,
    Verdict,
    describe_group,
    fmt,
    fmt_ci,
    last_third,
)
from icl_stl.theory import fit_linear_slope, fit_power_law

GAMMA = "gamma_mean"  # the verdict's statistic; gamma_max is shown beside it

RULE_P3 = (
    f"Per stability group (configuration, lambda, replacement; runs pooled over n), on {GAMMA} "
    "(the mean over probe prompts and positions of |f_i - f'_i|, averaged over twin pairs). "
    "(a) *shrinks with n*: at the last generation every n reached, fit log gamma against log n. "
    "With 3 or more n the regression interval decides: below 0 shrinks, above 0 grows. With 2 n "
    "the difference must exceed twice its standard error over twin pairs (with one pair per n "
    "no error is measured and the sign decides). (b) *bounded in i* (lambda > 0 only): for each "
    "n, fit gamma against generation over the last third of generations (at least 3, generation "
    f"0 excluded); it grows if the interval lies above {NEGLIGIBLE_GROWTH:g} x its mean. "
    "**Confirmed** if (a) shrinks and (for lambda > 0) (b) was measured and no n grows; "
    "**refuted** if (a) grows or some n grows in (b).")
RULE_P4 = (
    "Per decay run: the verdict of `theory.decay_verdict` on the final-generation decay fit "
    "(log-log slope of decay.json's fit metric against n, 95% interval over seeds): "
    "**confirmed** if slope <= -1/4, **inconclusive** if slope > -1/4 but the interval reaches "
    "-1/4, **refuted** if the whole interval lies above -1/4.")


def stability_table(runs: list[RunResult]) -> dict[tuple, dict[tuple[int, int], dict]]:
    """{(config, lambda, replacement, counted): {(n, generation): record}} pooled over runs."""
    pooled: dict[tuple, dict[tuple[int, int], dict]] = {}
    for run in runs:
        if run.stability is None:
            continue
        key = (run.config, float(run.stability.get("real_fraction", float("nan"))),
               run.stability.get("replacement", ""), run.in_theorem_setting)
        table = pooled.setdefault(key, {})
        for rec in run.stability.get("generations", []):
            table.setdefault((int(rec["n"]), int(rec["generation"])), rec)
    return pooled


def _shrinks_with_n(table: dict[tuple[int, int], dict]) -> tuple[str | None, str]:
    """Part (a): 'shrinks', 'grows', None (undecided) and the numbers; ('n/a', ...) if no data."""
    ns = sorted({n for n, _ in table})
    if len(ns) < 2:
        return "n/a", f"one n ({ns[0]})" if ns else "no records"
    last = min(max(g for m, g in table if m == n) for n in ns)
    rows = [table[(n, last)] for n in ns]
    gammas = np.array([r[GAMMA] for r in rows], dtype=float)
    shown = ", ".join(f"n={n}: {fmt(g)}" for n, g in zip(ns, gammas))
    if not np.all(gammas > 0):
        return "n/a", f"gamma at generation {last}: {shown} (not all positive: no log fit)"
    if len(ns) >= 3:
        fit = fit_power_law(ns, gammas)
        text = (f"gamma at generation {last}: {shown}; log-log slope {fmt(fit.slope)} "
                f"{fmt_ci(fit.ci_low, fit.ci_high)}")
        return ("shrinks" if fit.ci_high < 0 else "grows" if fit.ci_low > 0 else None), text
    se = float(np.sqrt(sum((r.get(f"{GAMMA}_std") or 0.0) ** 2 / max(r.get("n_pairs", 1), 1)
                           for r in rows)))
    diff = float(gammas[0] - gammas[1])
    text = f"gamma at generation {last}: {shown}; difference {fmt(diff)} (se {fmt(se)})"
    return ("shrinks" if diff > 2 * se else "grows" if -diff > 2 * se else None), text


def _growing_in_generation(table: dict[tuple[int, int], dict]) -> tuple[list[int], list[str]]:
    """Part (b): the n whose gamma grows over the last third of generations, and the numbers."""
    growing, parts = [], []
    for n in sorted({n for n, _ in table}):
        gens = sorted(g for m, g in table if m == n)
        window = last_third(gens)
        if not window:
            continue
        values = [table[(n, g)][GAMMA] for g in window]
        fit = fit_linear_slope(window, values)
        mean = float(np.mean(values))
        parts.append(f"n={n}: slope over generations {window[0]}-{window[-1]} "
                     f"{fmt_ci(fit.ci_low, fit.ci_high)}")
        if fit.ci_low > NEGLIGIBLE_GROWTH * mean:
            growing.append(n)
    return growing, parts


def verdict_p3(runs: list[RunResult]) -> Verdict:
    v = Verdict(3, "gamma_i shrinks as n grows and stays bounded in i when lambda > 0.", RULE_P3)
    for (config, lam, replacement, counted), table in stability_table(runs).items():
        shrink, text_a = _shrinks_with_n(table)
        growing, parts_b = _growing_in_generation(table) if lam > 0 else ([], [])
        text = "; ".join([f"(a) {text_a}"] + ([f"(b) {', '.join(parts_b)}"] if parts_b else []))
        if growing:
            text += f"; gamma grows with generation at n={growing}"
        has_b = bool(parts_b)
        if shrink == "grows" or growing:
            verdict = REFUTED
        elif shrink == "shrinks" and (has_b or lam == 0):
            verdict = CONFIRMED
        elif shrink == "n/a" and not has_b:
            verdict = NO_DATA
        else:
            verdict = INCONCLUSIVE
        name = describe_group(config, λ=lam, replacement=replacement)
        v.groups.append(GroupVerdict(name, verdict, text, counted))
    return v


def verdict_p4(runs: list[RunResult]) -> Verdict:
    v = Verdict(4, "Final-generation risk decays in n at least as fast as n^-1/4.", RULE_P4)
    for run in runs:
        decay = run.decay
        if decay is None:
            continue
        name = describe_group(run.config, λ=float(decay.get("real_fraction", float("nan"))))
        if decay.get("verdict") is None or decay.get("ci") is None:
            v.groups.append(GroupVerdict(name, NO_DATA, "no decay fit (see decay.json's fits)",
                                         run.in_theorem_setting))
            continue
        bound = decay.get("bound") or {}
        text = (f"{decay.get('metric')} at generation {decay.get('generation')} over n="
                f"{decay.get('fit_ns', decay.get('ns'))}: slope {fmt(decay['slope'])} "
                f"{fmt_ci(*decay['ci'])}; bound fit c=({fmt(bound.get('c1'), 2)}, "
                f"{fmt(bound.get('c2'), 2)}, {fmt(bound.get('c3'), 2)})")
        if not (decay.get("grid") or {}).get("meets_guideline", True):
            text += " (grid smaller than 5 n over 1.5 decades)"
        v.groups.append(GroupVerdict(name, decay["verdict"], text, run.in_theorem_setting))
    return v
