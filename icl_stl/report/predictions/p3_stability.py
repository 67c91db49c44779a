"""Prediction 3: gamma_i shrinks as n grows and stays bounded in i when lambda > 0 (the
stability probe).

P3 reads gamma per (seed, n, generation) from `Evidence.stability`: the mean over that seed's
replaced indices (its twins share one base loop, so they are one replicate), beside the seed's
chaos control (the same S_0 trained with another batch order): gamma is only read where it is
significantly below `chaos_ratio` x that ceiling. The `*_core` functions take arrays with a
seed axis and any leading axes (calibration draws).
"""

from __future__ import annotations

import math

import numpy as np

from icl_stl.report import figures
from icl_stl.report.document import Document
from icl_stl.report.evidence import Evidence
from icl_stl.report.gating import apply_loop_gate, seeds_left_out
from icl_stl.report.groups import (
    describe_group,
    group_by,
    last_shared,
    last_third,
    shared_generations,
)
from icl_stl.report.predictions.p2_bounded import p2_core
from icl_stl.report.rules import ReportConfig
from icl_stl.report.stats import (
    C_CONFIRMED,
    C_INCONCLUSIVE,
    C_UNDERPOWERED,
    CODES,
    directional_test,
    holm,
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
    fmt_ci,
)

GAMMA = "gamma_mean"  # the verdict's statistic; gamma_max is shown beside it


def rule(cfg: ReportConfig) -> str:
    return (
        f"Per stability group (configuration, lambda, replacement; runs pooled over n), on "
        f"{GAMMA} averaged over each seed's replaced indices (one value per seed). *Chaos "
        "ceiling*: at each n, the per-seed log(gamma / gamma_chaos), gamma_chaos from the "
        "control twin (the same S_0, another batch order); only n where gamma is significantly "
        f"below {cfg.chaos_ratio:g} x the ceiling (one-sided t-test at {cfg.alpha:g}) are "
        "judged, and fewer than 2 such n is **not applicable**. (a) *shrinks with n*: at the "
        "last generation every n reached, the per-seed least-squares slope of log gamma "
        f"against log n; one-sided t-test against -{cfg.p3_shrink_margin:g}. (b) *bounded in "
        "i* (lambda > 0): per n, the per-seed slope of gamma against generation over the last "
        f"third of generations over the mean gamma, TOST inside +-{cfg.p3_bounded_margin:g} "
        "(Holm over n for refutations). **Confirmed** if (a) and every n of (b) confirm; "
        "**refuted** if (a) or (b) refutes (Bonferroni over the two parts).")


def chaos_core(gamma: np.ndarray, chaos: np.ndarray, cfg: ReportConfig) -> dict:
    """Is gamma significantly below chaos_ratio x the chaos ceiling? (..., seeds) arrays."""
    ratio = np.log(np.asarray(gamma, float) / np.asarray(chaos, float))
    return directional_test(ratio, math.log(cfg.chaos_ratio), -1, cfg.levels)


def p3a_core(gamma: np.ndarray, ns: list[int], cfg: ReportConfig) -> dict:
    """gamma (..., seeds, len(ns)) > 0: per-seed log-log slope against n, below -margin?"""
    slope = slopes(np.log(np.asarray(ns, float)), np.log(np.asarray(gamma, float)))
    return directional_test(slope, -cfg.p3_shrink_margin, -1, cfg.levels)


def stability_groups(records: list[dict]) -> dict[tuple, list[dict]]:
    """{(config, lambda, replacement, counted): per-seed records} in natural order."""
    return group_by(records, lambda r: (r["config"], r["real_fraction"], r["replacement"],
                                        r["in_theorem_setting"]))


def stability_table(records: list[dict]) -> dict[tuple[int, int], dict]:
    """{(n, generation): mean, min and max over seeds of gamma (and the chaos ceiling)}."""
    table: dict[tuple[int, int], dict] = {}
    for (n, g), recs in group_by(records, lambda r: (r["n"], r["generation"])).items():
        row: dict = {"n_seeds": len(recs)}
        for stat in ("gamma_mean", "gamma_max", "chaos_gamma_mean", "chaos_gamma_max"):
            vals = [r[stat] for r in recs if r.get(stat) is not None]
            if vals:
                row.update({stat: float(np.mean(vals)), f"{stat}_min": float(min(vals)),
                            f"{stat}_max": float(max(vals)),
                            f"{stat}_std": float(np.std(vals, ddof=1)) if len(vals) > 1
                            else 0.0})
        if row.get("chaos_gamma_mean"):
            row["gamma_ratio"] = row["gamma_mean"] / row["chaos_gamma_mean"]
        table[(n, g)] = row
    return table


def _cells(records: list[dict]) -> dict[tuple[int, int], dict[int, dict]]:
    out: dict[tuple[int, int], dict[int, dict]] = {}
    for r in records:
        out.setdefault((r["n"], r["generation"]), {})[r["seed"]] = r
    return out


def _epochs_note(records: list[dict], ns: list[int]) -> str:
    epochs = {n: next((r["epochs"] for r in records if r["n"] == n and r.get("epochs")), None)
              for n in ns}
    if any(v is None for v in epochs.values()) or len({round(v, 6) for v in epochs.values()}) < 2:
        return ""
    shown = ", ".join(f"n={n}: {fmt(v)}" for n, v in epochs.items())
    return (f"; epochs at generation 0 differ across n ({shown}): gamma against n is "
            "entangled with the number of passes over S_0")


def _p3_group(name: str, records: list[dict], lam: float, cfg: ReportConfig) -> GroupResult:
    cells = _cells(records)
    ns = sorted({n for n, _ in cells})
    last = last_shared(records)
    seeds = sorted(set.intersection(*(set(cells[(n, last)]) for n in ns)))
    res = GroupResult(name, NOT_TESTED, margin=cfg.p3_shrink_margin, n_seeds=len(seeds),
                      statistic="log-log slope of gamma against n")
    if len(ns) < 2 or not seeds:
        res.numbers = (f"n={ns}, {len(seeds)} seed(s) with every n: needs 2 n and a seed with "
                       "all of them")
        return res
    gamma = np.array([[cells[(n, last)][s][GAMMA] for n in ns] for s in seeds])
    chaos_known = all(cells[(n, last)][s].get(f"chaos_{GAMMA}") for n in ns for s in seeds)
    shown = ", ".join(f"n={n}: {fmt(gamma[:, i].mean())}" for i, n in enumerate(ns))
    text = f"gamma at generation {last}: {shown}" + _epochs_note(records, ns)
    if len(seeds) < cfg.min_seeds:
        res.verdict = UNDERPOWERED
    if not chaos_known:
        res.numbers = text + "; no chaos control recorded: gamma cannot be told from chaos"
        if res.verdict != UNDERPOWERED:
            res.verdict = NOT_APPLICABLE
        _fill_a(res, gamma, ns, cfg)
        return res
    chaos = np.array([[cells[(n, last)][s][f"chaos_{GAMMA}"] for n in ns] for s in seeds])
    ceiling = chaos_core(gamma.T, chaos.T, cfg)  # one test per n
    below = np.asarray(ceiling["p_confirm"]) < cfg.alpha
    res.parts["ceiling"] = {f"n={n}": {"ratio": float(np.exp(ceiling["estimate"][i])),
                                       "interval": [float(np.exp(ceiling["low"][i])),
                                                    float(np.exp(ceiling["high"][i]))],
                                       "below": bool(below[i])} for i, n in enumerate(ns)}
    text += "; gamma / chaos ceiling " + ", ".join(
        f"n={n}: {fmt(math.exp(ceiling['estimate'][i]))}" for i, n in enumerate(ns))
    kept = [n for n, b in zip(ns, below) if b]
    if res.verdict == UNDERPOWERED:
        _fill_a(res, gamma, ns, cfg)
        res.numbers = text + "; " + describe_test(res)
        return res
    if len(kept) < 2:
        res.verdict = NOT_APPLICABLE
        res.numbers = (text + f"; gamma is significantly below {cfg.chaos_ratio:g} x the chaos "
                       f"ceiling at {len(kept)} n (needs 2): it measures chaos, not one prompt")
        _fill_a(res, gamma, ns, cfg)
        return res
    cols = [ns.index(n) for n in kept]
    a = _fill_a(res, gamma[:, cols], kept, cfg)
    p_refute_b, codes_b = None, []
    if lam > 0:
        b_results = {}
        for n in kept:
            window = last_third(shared_generations(r for r in records if r["n"] == n))
            complete = [s for s in seeds if all(s in cells[(n, g)] for g in window)]
            if not window or not complete:
                continue
            mat = np.array([[cells[(n, g)][s][GAMMA] for g in window] for s in complete])
            b = p2_core(mat, window, cfg, margin=cfg.p3_bounded_margin)
            b_results[n] = b
        if b_results:
            # A part measured on fewer seeds than min_seeds may not refute (nan: left out).
            adjusted = holm([float(b["p_refute"]) if b["n_seeds"] >= cfg.min_seeds
                             else math.nan for b in b_results.values()])
            if np.isfinite(adjusted).any():
                p_refute_b = float(np.nanmin(adjusted))
            codes_b = [int(b["code"]) for b in b_results.values()]
            res.parts["b"] = {f"n={n}": {**fields_of(b), "verdict": CODES[int(b["code"])],
                                         "p_refute_holm": float(p)}
                              for (n, b), p in zip(b_results.items(), adjusted)}
            text += "; (b) slope / gamma per generation " + ", ".join(
                f"n={n}: {fmt(float(b['estimate']))} {fmt_ci([float(b['low']), float(b['high'])])}"
                for n, b in b_results.items())
    code_a = int(a["code"])
    # Bonferroni over the parts that can refute; a nan p-value (no test) is no part.
    parts = [p for p in (float(a["p_refute"]), p_refute_b) if p is not None and math.isfinite(p)]
    res.p_refute = min(1.0, len(parts) * min(parts)) if parts else None
    if res.p_refute is not None and res.p_refute < cfg.alpha:
        res.verdict = REFUTED
    elif code_a == C_CONFIRMED and (lam == 0 or (len(codes_b) == len(kept) and all(
            c == C_CONFIRMED for c in codes_b))):  # (b) confirmed at every judged n
        res.verdict = CONFIRMED
    elif code_a == C_UNDERPOWERED or C_UNDERPOWERED in codes_b:
        res.verdict = UNDERPOWERED
    else:
        res.verdict = INCONCLUSIVE
    if lam > 0 and not codes_b:
        text += "; (b) needs 3 generations after generation 0"
    res.numbers = text + "; (a) " + describe_test(res)
    return res


def _fill_a(res: GroupResult, gamma: np.ndarray, ns: list[int], cfg: ReportConfig) -> dict:
    """Part (a) on the given n: fills estimate, interval, MDE and p_refute of `res`."""
    if gamma.shape[1] < 2 or not np.all(gamma > 0):
        return {"code": C_INCONCLUSIVE, "p_refute": float("nan")}
    a = p3a_core(gamma, ns, cfg)
    fields = fields_of(a)
    res.estimate, res.interval = fields["estimate"], fields["interval"]
    res.min_detectable_effect = fields["min_detectable_effect"]
    res.parts["a"] = {**fields, "ns": list(ns), "verdict": CODES[int(a["code"])]}
    return a


def verdict(evidence: Evidence, cfg: ReportConfig) -> Prediction:
    pred = Prediction(3, "gamma_i shrinks as n grows and stays bounded in i when lambda > 0.",
                      rule(cfg), (CONFIRMED, REFUTED, INCONCLUSIVE, UNDERPOWERED,
                                     NOT_APPLICABLE),
                      primary_rule="the counted group with fresh replacement and the smallest "
                                   "lambda > 0 (else lambda = 0)")
    for (config, lam, replacement, counted), recs in stability_groups(evidence.stability).items():
        name = describe_group(config, λ=lam, replacement=replacement)
        # Each seed is gated on its own base loop at the largest n (small n cannot reach ridge)
        paths = {p for r in recs for p in r.get("runs", [r.get("run")])}
        largest = max(r["n"] for r in recs)
        base = evidence.loop_records_of(paths)
        missed, gate = seeds_left_out(base, cfg.gate_tolerance,
                                      lambda r, n=largest: r["n"] == n)
        kept = [r for r in recs if r["seed"] not in missed]
        res = _p3_group(name, kept, lam, cfg) if kept else GroupResult(name, NOT_APPLICABLE)
        res.counted = bool(counted)
        res.key = {"lambda": lam, "replacement": replacement}
        pred.groups.append(apply_loop_gate(res, gate, bool(kept)))
    return finalise(pred, cfg, _primary)


def _primary(groups: list[GroupResult]) -> GroupResult | None:
    if not groups:
        return None

    def rank(g: GroupResult) -> tuple:
        lam = g.key.get("lambda", 0.0)
        return (g.key.get("replacement") != "fresh", lam == 0, lam)

    return min(groups, key=rank)


def section(doc: Document, evidence: Evidence, pred: Prediction) -> None:
    """gamma against generation and n per stability group, its table, then P3's groups."""
    doc.add("## Prediction 3: recursive stability", "",
            "gamma (mean over each seed's replaced indices) beside its chaos ceiling: the same "
            "S_0 trained with another batch order. Only gamma clearly below the ceiling "
            "measures one prompt's effect.", "")
    rows = []
    configs = [r["config"] for r in evidence.stability]
    for (config, lam, replacement, _), recs in stability_groups(evidence.stability).items():
        table = stability_table(recs)
        if not table:
            continue
        name = describe_group(config, λ=lam, replacement=replacement)
        title = figures.group_title(figures.short_name(config, configs), (lam,),
                                    replacement=replacement)
        doc.figure("stability", f"gamma against generation and n, {name}",
                   lambda path, table=table, title=title: figures.stability_figure(table, path,
                                                                                   title))
        for (n, g), row in sorted(table.items()):
            rows.append([name or "(all)", n, g, row["n_seeds"], fmt(row.get("gamma_mean")),
                         fmt(row.get("gamma_max")), fmt(row.get("chaos_gamma_mean")),
                         fmt(row.get("gamma_ratio"))])
    if rows:
        doc.table(["group", "n", "generation", "seeds", "gamma_mean", "gamma_max",
                   "chaos ceiling (gamma_mean)", "gamma / ceiling"], rows)
    doc.verdict_table(pred)
