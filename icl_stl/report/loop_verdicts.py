"""Predictions 1, 2 and 5, judged from the loops' per-generation records (summary.json).

Each rule's text (RULE_P1, ...) is what REPORT.md prints, so the report states exactly what
the code computes. Records come from `collect.loop_records`; only records in the theorem's
setting (GPT-2 transformer learner, synthetic data replaced each generation) are counted, and
P1 and P2 use the loops without augmentation (m = 0), P5 the ones that vary m.
"""

from __future__ import annotations

import numpy as np

from icl_stl.report.rules import (
    CONFIRMED,
    INCONCLUSIVE,
    NEGLIGIBLE_GROWTH,
    NO_DATA,
    REFUTED,
    RIDGE_TOLERANCE,
    GroupVerdict,
    Verdict,
    describe_group,
    fmt,
    fmt_ci,
    group_by,
    last_third,
    seed_matrix,
    seed_spread,
)
from icl_stl.theory import fit_linear_slope

RULE_P1 = (
    "In every group (configuration, n, m = 0) with lambda = 0: fit test risk against generation "
    "(one line per seed; 95% Student-t interval over seeds, or the regression interval with one "
    f"seed); negligible growth is {NEGLIGIBLE_GROWTH:g} x the generation-0 risk per generation. "
    "**Confirmed** if the interval lies above negligible growth, or (with 2 or more seeds) the "
    "mean final-generation risk exceeds generation 0's by more than both the seed spread (sd "
    "over seeds of the final risk) and negligible growth over all generations. Otherwise "
    "**refuted** if the interval lies below negligible growth (flat or falling), or the final "
    "risk lies below generation 0's by more than the seed spread. Needs 2 seeds or 3 "
    "generations.")
RULE_P2 = (
    "In every group (configuration, n, m = 0), for each lambda > 0: fit test risk against "
    "generation over the last third of generations (at least 3, generation 0 excluded: the "
    "rise to a plateau is expected; so at least 3 generations after 0). The risk is *bounded* "
    "unless "
    f"the slope's interval lies above {NEGLIGIBLE_GROWTH:g} x the plateau (the mean risk over "
    "that window). **Confirmed** if every lambda > 0 is bounded, every plateau is at most "
    "lambda = 0's final risk plus the seed spread, and plateaus do not rise with lambda by more "
    "than the seed spread. **Refuted** if a lambda > 0 grows or either order is broken beyond "
    "the spread.")
RULE_P5 = (
    "In every group (configuration, lambda) with at least 3 augmentation sizes m at some n: "
    "take the final-generation risk (mean over seeds) against m and its argmin m*(n). "
    "**Confirmed** if every n has an interior m* (neither the smallest nor the largest m) and "
    "m* does not increase with n (over at least 2 n). **Refuted** if some n's best m is an "
    "endpoint that beats every other m by more than the seed spread, or a larger n's m* beats "
    "the smaller n's m* (at the larger n) by more than the seed spread.")


def _counted(r: dict) -> bool:
    return bool(r.get("in_theorem_setting", True))


def _final_and_first(mat: np.ndarray) -> tuple[float, float, float]:
    """(mean generation-0 risk, mean final risk, seed spread of the final risk)."""
    return float(mat[0].mean()), float(mat[-1].mean()), seed_spread(mat[-1])


def _p1_group(records: list[dict]) -> tuple[str, str]:
    gens = sorted({r["generation"] for r in records})
    mat = seed_matrix(records, gens)
    seeds = mat.shape[1]
    if len(gens) < 2 or seeds == 0 or (seeds < 2 and len(gens) < 3):
        return NO_DATA, f"{len(gens)} generation(s), {seeds} complete seed(s)"
    fit = fit_linear_slope(gens, mat)
    first, final, spread = _final_and_first(mat)
    increase = final - first
    text = (f"risk {fmt(first)} -> {fmt(final)} over {gens[-1]} generations (seed sd "
            f"{fmt(spread)}, {seeds} seeds); slope {fmt(fit.slope)}/gen "
            f"{fmt_ci(fit.ci_low, fit.ci_high)}")
    negligible = NEGLIGIBLE_GROWTH * first  # per generation
    if fit.ci_low > negligible or (
            seeds >= 2 and increase > max(spread, negligible * (gens[-1] - gens[0]))):
        return CONFIRMED, text
    if fit.ci_high < negligible or (seeds >= 2 and increase < -spread):
        return REFUTED, text
    return INCONCLUSIVE, text


def verdict_p1(records: list[dict]) -> Verdict:
    v = Verdict(1, "lambda = 0: test risk grows with generations (collapse).", RULE_P1)
    zero = [r for r in records if r["real_fraction"] == 0 and r.get("augment", 0) == 0]
    for (config, n), recs in group_by(zero, lambda r: (r["config"], r["n"])).items():
        verdict, text = _p1_group(recs)
        v.groups.append(GroupVerdict(describe_group(config, n=n), verdict, text,
                                     all(map(_counted, recs))))
    return v


def _plateau(records: list[dict], window: list[int]) -> dict | None:
    mat = seed_matrix(records, window)
    if not window or mat.shape[1] == 0:
        return None
    fit = fit_linear_slope(window, mat)
    per_seed = mat.mean(0)
    plateau = float(per_seed.mean())
    return {"plateau": plateau, "spread": seed_spread(per_seed), "fit": fit,
            "growing": fit.ci_low > NEGLIGIBLE_GROWTH * plateau}


def _p2_group(records: list[dict]) -> tuple[str, str]:
    gens = sorted({r["generation"] for r in records})
    window = last_third(gens)
    by_lam = group_by(records, lambda r: (r["real_fraction"],))
    plateaus = {lam: _plateau(recs, window) for (lam,), recs in by_lam.items() if lam > 0}
    if not plateaus or any(p is None for p in plateaus.values()):
        return NO_DATA, f"generations {gens}: fewer than 3 after generation 0"
    lams = sorted(plateaus)
    parts = [f"λ={lam:g}: plateau {fmt(p['plateau'])} (sd {fmt(p['spread'])}), slope "
             f"{fmt_ci(p['fit'].ci_low, p['fit'].ci_high)}" for lam, p in sorted(plateaus.items())]
    growing = [lam for lam in lams if plateaus[lam]["growing"]]
    disordered = [(a, b) for a, b in zip(lams, lams[1:]) if plateaus[b]["plateau"] >
                  plateaus[a]["plateau"] + max(plateaus[a]["spread"], plateaus[b]["spread"])]
    above_collapse = []
    if (0.0,) in by_lam:
        mat = seed_matrix(by_lam[(0.0,)], [gens[-1]])
        if mat.size:
            final0, spread0 = float(mat.mean()), seed_spread(mat[0])
            parts.append(f"λ=0 final {fmt(final0)}")
            above_collapse = [lam for lam in lams if plateaus[lam]["plateau"] >
                              final0 + max(spread0, plateaus[lam]["spread"])]
    problems = ([f"growing at λ={growing}"] if growing else []) + \
        ([f"plateau rises with λ at {disordered}"] if disordered else []) + \
        ([f"plateau above λ=0's final risk at λ={above_collapse}"] if above_collapse else [])
    text = "; ".join(parts + problems) + f" (window: generations {window[0]}-{window[-1]})"
    return (REFUTED if problems else CONFIRMED), text


def verdict_p2(records: list[dict]) -> Verdict:
    v = Verdict(2, "lambda > 0: test risk stays bounded; larger lambda, lower plateau.", RULE_P2)
    plain = [r for r in records if r.get("augment", 0) == 0]
    for (config, n), recs in group_by(plain, lambda r: (r["config"], r["n"])).items():
        if not any(r["real_fraction"] > 0 for r in recs) or \
                len({r["generation"] for r in recs}) < 2:
            continue  # nothing to judge: no lambda > 0, or a single generation
        verdict, text = _p2_group(recs)
        v.groups.append(GroupVerdict(describe_group(config, n=n), verdict, text,
                                     all(map(_counted, recs))))
    return v


def risk_against_m(records: list[dict]) -> dict[int, dict]:
    """Per n: final-generation risk (mean and sd over seeds) per m, and the argmin m*."""
    out = {}
    for (n,), recs in group_by(records, lambda r: (r["n"],)).items():
        final = min(max(r["generation"] for r in recs if r.get("augment", 0) == m)
                    for m in {r.get("augment", 0) for r in recs})
        per_m: dict[int, list[float]] = {}
        for r in recs:
            if r["generation"] == final:
                per_m.setdefault(int(r.get("augment", 0)), []).append(float(r["test_risk"]))
        ms = sorted(per_m)
        means = {m: float(np.mean(per_m[m])) for m in ms}
        spread = max(seed_spread(np.array(per_m[m])) for m in ms)
        out[n] = {"ms": ms, "risk": means, "spread": spread, "generation": final,
                  "m_star": min(ms, key=means.__getitem__)}
    return out


def _p5_group(records: list[dict]) -> tuple[str, str]:
    curves = {n: c for n, c in risk_against_m(records).items() if len(c["ms"]) >= 3}
    if not curves:
        return NO_DATA, "fewer than 3 augmentation sizes at every n"
    parts, problems, interior = [], [], True
    for n, c in sorted(curves.items()):
        best, ms, risk = c["m_star"], c["ms"], c["risk"]
        others = [risk[m] for m in ms if m != best]
        at_end = best in (ms[0], ms[-1])
        interior &= not at_end
        parts.append(f"n={n}: m*={best} (risk {fmt(risk[best])}, sd {fmt(c['spread'])})")
        if at_end and risk[best] < min(others) - c["spread"]:
            problems.append(f"n={n}: the best m is the endpoint {best}")
    ns = sorted(curves)
    for small, large in zip(ns, ns[1:]):
        lo, hi = curves[small], curves[large]
        if hi["m_star"] > lo["m_star"] and lo["m_star"] in hi["risk"] and \
                hi["risk"][lo["m_star"]] > hi["risk"][hi["m_star"]] + hi["spread"]:
            problems.append(f"m* grows with n ({small}: {lo['m_star']}, {large}: {hi['m_star']})")
    text = "; ".join(parts + problems)
    if problems:
        return REFUTED, text
    if interior and len(ns) >= 2:
        return CONFIRMED, text
    return INCONCLUSIVE, text + ("" if len(ns) >= 2 else "; m* against n needs 2 n")


def verdict_p5(records: list[dict]) -> Verdict:
    v = Verdict(5, "Risk against augmentation size m has an interior optimum m*; m* grows as "
                   "n shrinks.", RULE_P5)
    varied = group_by(records, lambda r: (r["config"], r["real_fraction"]))
    for (config, lam), recs in varied.items():
        if len({r.get("augment", 0) for r in recs}) < 2:
            continue
        verdict, text = _p5_group(recs)
        v.groups.append(GroupVerdict(describe_group(config, λ=float(lam)), verdict, text,
                                     all(map(_counted, recs))))
    return v


def ridge_check(records: list[dict]) -> list[dict]:
    """Per (configuration, n): did generation 0 reach the ridge baseline within tolerance?

    excess = test risk - ridge risk; allowed = RIDGE_TOLERANCE x (zero risk - ridge risk).
    Generation 0 does not depend on lambda, so each (seed, n) loop is counted once.
    """
    rows = []
    gen0 = [r for r in records if r["generation"] == 0 and r.get("augment", 0) == 0]
    for (config, n), recs in group_by(gen0, lambda r: (r["config"], r["n"])).items():
        seen = {r["seed"]: r for r in recs}
        excess = [r["test_risk"] - r["ridge_risk"] for r in seen.values()]
        zeros = [r.get("zero_risk") for r in seen.values()]
        ridge = float(np.mean([r["ridge_risk"] for r in seen.values()]))
        allowed = (RIDGE_TOLERANCE * (float(np.mean(zeros)) - ridge)
                   if all(z is not None for z in zeros) else None)
        rows.append({"group": describe_group(config, n=n), "seeds": len(seen),
                     "excess": float(np.mean(excess)), "ridge": ridge, "allowed": allowed,
                     "ok": None if allowed is None else bool(max(excess) <= allowed)})
    return rows
