"""Prediction 5: risk against the augmentation size m has an interior optimum m*, and m*
grows as n shrinks; judged from the loops that vary m (summary.json).

Per group (configuration, lambda), the final-generation risk of every (n, m) and seed: a seed
bootstrap, shared by every n, gives m*(n) = argmin over m of the mean risk, whether it lies
strictly inside the grid, and the trend of m* against log n. `p5_core` takes arrays with the
seed axis and any leading axes (calibration draws).
"""

from __future__ import annotations

import numpy as np

from icl_stl.report import figures
from icl_stl.report.document import Document
from icl_stl.report.evidence import Evidence
from icl_stl.report.gating import apply_loop_gate, seeds_left_out
from icl_stl.report.groups import describe_group, group_by, in_theorem_setting, last_shared
from icl_stl.report.rules import ReportConfig
from icl_stl.report.stats import (
    C_CONFIRMED,
    C_INCONCLUSIVE,
    C_REFUTED,
    C_UNDERPOWERED,
    CODES,
    bootstrap_se,
    seed_bootstrap,
    slopes,
    t_pvalues,
    t_quantile,
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
    finalise,
    fmt,
    fmt_ci,
)


def rule(cfg: ReportConfig) -> str:
    return (
        "Per group (configuration, lambda) with at least 3 augmentation sizes m at some n, "
        "final-generation risk of the seeds every (n, m) shares. Seed bootstrap "
        f"({cfg.bootstrap} replicates, whole seeds resampled, the same resample at every n): "
        "m*(n) = argmin over m of the mean risk. An n has an *interior* optimum when fewer "
        f"than {cfg.alpha:.0%} of replicates put m* at either end of the grid (its interval "
        "lies strictly inside the grid). The trend of m* against log n: "
        "estimate +- t_{s-1} x bootstrap SE x sqrt(s/(s-1)). **Confirmed** if every n is "
        "interior and the trend is significantly negative (needs 2 n); **refuted** if some n's "
        "optimum is an end of the grid in more than "
        f"{1 - cfg.alpha:.0%} of replicates or the trend is significantly positive (Bonferroni "
        "over the parts). Margin (for the MDE): the interior optimum's risk gain over the "
        f"better end, {cfg.p5_margin:g} of the risk.")


def p5_core(risk: np.ndarray, ms: list[int], ns: list[int], cfg: ReportConfig,
            rng: np.random.Generator) -> dict:
    """risk (..., len(ns), len(ms), seeds): final risk; a seed bootstrap shared by every n.

    Returns per-n shares of replicates whose m* is the first / last m, the trend of m*
    against log n (estimate, interval, p-values), the MDE of the interior gain, and codes.
    """
    risk = np.asarray(risk, dtype=float)
    s = risk.shape[-1]
    levels = cfg.levels
    idx = seed_bootstrap(s, cfg.bootstrap, rng)
    boot = risk[..., idx].mean(-1)  # (..., N, M, B)
    full = risk.mean(-1)  # (..., N, M)
    arg = boot.argmin(-2)  # (..., N, B)
    last = len(ms) - 1
    share_first = (arg == 0).mean(-1)
    share_last = (arg == last).mean(-1)
    interior = (share_first < cfg.alpha) & (share_last < cfg.alpha)  # (..., N)
    ms_arr = np.asarray(ms, dtype=float)
    gain_b = (np.minimum(boot[..., 0, :], boot[..., last, :])
              - boot[..., 1:last, :].min(-2)) / boot.mean(-2)  # (..., N, B)
    mde = (t_quantile(1 - cfg.alpha, s - 1) + t_quantile(cfg.power, s - 1)) * \
        bootstrap_se(gain_b, s)
    mde = np.max(mde, axis=-1) if np.ndim(mde) else mde
    out = {"share_first": share_first, "share_last": share_last, "interior": interior,
           "m_star": ms_arr[full.argmin(-1)], "mde": mde, "n_seeds": s}
    lead = risk.shape[:-3]
    if len(ns) >= 2:
        logn = np.log(np.asarray(ns, dtype=float))
        trend_b = slopes(logn, np.moveaxis(ms_arr[arg], -1, -2))  # (..., B)
        est = slopes(logn, ms_arr[full.argmin(-1)])
        se = bootstrap_se(trend_b, s)
        tq = t_quantile(1 - cfg.alpha, s - 1)
        p_pos, p_neg = t_pvalues(est, se, s - 1)
        out.update(trend=est, trend_low=est - tq * se, trend_high=est + tq * se,
                   p_trend_negative=p_neg, p_trend_positive=p_pos)
    else:
        p_neg = np.full(lead, np.nan)
        p_pos = np.full(lead, np.nan)
    # Refutation: an end of the grid wins almost always at some n, or m* grows with n.
    p_end = (1.0 - np.maximum(share_first, share_last) + 1.0 / (cfg.bootstrap + 1))
    p_end = np.minimum(1.0, p_end.min(-1) * len(ns))
    p_refute = np.minimum(1.0, 2 * np.fmin(p_end, np.where(np.isnan(p_pos), 1.0, p_pos)))
    confirmed = interior.all(-1) & (np.nan_to_num(p_neg, nan=1.0) < cfg.alpha)
    code = np.full(lead, C_INCONCLUSIVE, dtype=np.int8)
    code[~(np.asarray(mde) <= cfg.p5_margin)] = C_UNDERPOWERED
    code[p_refute < cfg.alpha] = C_REFUTED
    code[confirmed] = C_CONFIRMED
    if s < levels.min_seeds:
        code[...] = C_UNDERPOWERED
    out.update(p_refute=p_refute, code=code)
    return out


def risk_against_m(records: list[dict]) -> dict[int, dict]:
    """Per n: the final generation, per m the per-seed risks, mean curve and argmin m*."""
    out = {}
    for (n,), recs in group_by(records, lambda r: (r["n"],)).items():
        # the last generation every (m, seed) loop reached: one loop run further never moves it
        final = last_shared(recs, lambda r: (r.get("augment", 0), r["seed"]))
        per_m: dict[int, dict[int, float]] = {}
        for r in recs:
            if r["generation"] == final:
                per_m.setdefault(int(r.get("augment", 0)), {})[r["seed"]] = float(r["test_risk"])
        ms = sorted(per_m)
        means = {m: float(np.mean(list(per_m[m].values()))) for m in ms}
        spread = max(float(np.std(list(per_m[m].values()), ddof=1)) if len(per_m[m]) > 1
                     else 0.0 for m in ms)
        out[n] = {"ms": ms, "risk": means, "per_seed": per_m, "spread": spread,
                  "generation": final, "m_star": min(ms, key=means.__getitem__)}
    return out


def _p5_group(name: str, records: list[dict], cfg: ReportConfig) -> GroupResult:
    curves = {n: c for n, c in risk_against_m(records).items() if len(c["ms"]) >= 3}
    if not curves:
        return GroupResult(name, NOT_TESTED, numbers="fewer than 3 augmentation sizes at every n")
    ms = sorted(set.intersection(*(set(c["ms"]) for c in curves.values())))
    if len(ms) < 3:
        return GroupResult(name, NOT_TESTED, numbers="fewer than 3 augmentation sizes shared "
                                                     "by every n")
    seeds = sorted(set.intersection(*(set(c["per_seed"][m]) for c in curves.values()
                                      for m in ms)))
    if not seeds:
        return GroupResult(name, NOT_TESTED, numbers="no seed has every (n, m)")
    ns = sorted(curves)
    risk = np.array([[[curves[n]["per_seed"][m][s] for s in seeds] for m in ms] for n in ns])
    rng = np.random.default_rng(cfg.bootstrap_seed)
    out = p5_core(risk, ms, ns, cfg, rng)
    parts = {}
    for i, n in enumerate(ns):
        parts[f"n={n}"] = {"m_star": float(out["m_star"][i]),
                           "share_first": float(out["share_first"][i]),
                           "share_last": float(out["share_last"][i]),
                           "interior": bool(out["interior"][i])}
    res = GroupResult(name, CODES[int(out["code"])], margin=cfg.p5_margin, n_seeds=len(seeds),
                      min_detectable_effect=float(out["mde"]), p_refute=float(out["p_refute"]),
                      parts=parts)
    shown = "; ".join(f"n={n}: m*={int(out['m_star'][i])} (ends {fmt(out['share_first'][i], 2)}"
                      f"/{fmt(out['share_last'][i], 2)} of replicates)"
                      for i, n in enumerate(ns))
    if "trend" in out:
        res.statistic = "trend of m* against log n"
        res.estimate = float(out["trend"])
        res.interval = [float(out["trend_low"]), float(out["trend_high"])]
        shown += f"; trend of m* per log n {fmt(res.estimate)} {fmt_ci(res.interval)}"
    else:
        res.statistic = "m* at the only n"
        res.estimate = float(out["m_star"][0])
        shown += "; the trend of m* against n needs 2 n"
        if res.verdict == CONFIRMED:
            res.verdict = INCONCLUSIVE
    res.numbers = (f"{shown} ({len(seeds)} seeds, MDE of the interior gain "
                   f"{fmt(res.min_detectable_effect)}, margin {fmt(cfg.p5_margin)})")
    return res


def verdict(evidence: Evidence, cfg: ReportConfig) -> Prediction:
    pred = Prediction(5, "Risk against augmentation size m has an interior optimum m*; m* "
                         "grows as n shrinks.", rule(cfg),
                      (CONFIRMED, REFUTED, INCONCLUSIVE, UNDERPOWERED, NOT_APPLICABLE),
                      primary_rule="the counted group with the smallest lambda")
    varied = group_by(evidence.records, lambda r: (r["config"], r["real_fraction"]))
    for (config, lam), recs in varied.items():
        if len({r.get("augment", 0) for r in recs}) < 2:
            continue
        name = describe_group(config, λ=float(lam))
        # Each seed is gated on its own loop at the largest n and the smallest m
        largest = max(r["n"] for r in recs)
        smallest_m = min(r.get("augment", 0) for r in recs)
        missed, gate = seeds_left_out(
            recs, cfg.gate_tolerance,
            lambda r, n=largest, m=smallest_m: r["n"] == n and r.get("augment", 0) == m)
        kept = [r for r in recs if r["seed"] not in missed]
        res = _p5_group(name, kept, cfg) if kept else GroupResult(name, NOT_APPLICABLE)
        res.counted, res.key = in_theorem_setting(recs), {"lambda": lam}
        pred.groups.append(apply_loop_gate(res, gate, bool(kept)))
    return finalise(pred, cfg, lambda gs: min(gs, key=lambda g: g.key["lambda"], default=None))


def section(doc: Document, evidence: Evidence, pred: Prediction) -> None:
    """Risk against m per (configuration, lambda), then P5's groups."""
    doc.add("## Prediction 5: augmentation", "")
    key = lambda r: (r["config"], r["real_fraction"])  # noqa: E731
    configs = [r["config"] for r in evidence.records]
    for (config, lam), recs in group_by(evidence.records, key).items():
        curves = {n: c for n, c in risk_against_m(recs).items() if len(c["ms"]) >= 2}
        if curves:
            name = describe_group(config, λ=float(lam))
            title = figures.group_title(figures.short_name(config, configs), (float(lam),))
            doc.figure("augmentation", f"risk against m, {name}",
                       lambda path, curves=curves, title=title: figures.augmentation_figure(
                           curves, path, title))
    doc.verdict_table(pred)
