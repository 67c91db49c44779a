"""Prediction 4, version 2: the generalization gap decays in n consistently with the bound, with
n decoupled from the passes over S_0 by early stopping (`train.held_out_fraction`).

Per decay run (configuration, lambda): each seed is gated on its own loop at the largest n (90%
of the zero-to-ridge gap); an n enters the fit only if every kept seed's generation 0 closed at
least half of the gap at its stopping point (it learns in context rather than memorising), and
the gap closed at every n is reported. The statistic is the final generation's generalization
gap; the fits and outcomes are `report.decay_v2`'s. A run trained without early stopping is not
applicable: its n is confounded with passes over S_0. For lambda > 0 the final generation's gap
over generation 0's is reported beside, per n, with its log-log slope in n.
"""

from __future__ import annotations

import math

import numpy as np

from icl_stl.report.decay_v2 import (
    FITS,
    LEARNS_IN_CONTEXT,
    NO_DECAY_MARGIN,
    OUTCOMES,
    p4v2_core,
)
from icl_stl.report.document import Document
from icl_stl.report.evidence import Evidence
from icl_stl.report.predictions import p4_decay
from icl_stl.report.rules import ReportConfig
from icl_stl.report.verdict import (
    CONFIRMED,
    INCONCLUSIVE,
    NOT_APPLICABLE,
    NOT_TESTED,
    PROVISIONAL,
    UNDERPOWERED,
    GroupResult,
    Prediction,
    finalise,
    fmt,
    fmt_ci,
)
from icl_stl.training.gate import gap_closed

METRIC = "gen_gap"
VERDICT_OF = {"consistent": CONFIRMED, "no_decay": INCONCLUSIVE, "slower": INCONCLUSIVE,
              "not_identified": UNDERPOWERED, "underpowered": UNDERPOWERED,
              "inconclusive": INCONCLUSIVE}


def rule(cfg: ReportConfig) -> str:
    return (
        "Per decay run trained with early stopping on a held-out share of S_0 "
        "(train.held_out_fraction; without it: not applicable), on the final generation's "
        "generalization gap (test - train risk, floor 0). Each seed is gated on its own loop at "
        f"the largest n; an n enters the fit only if every kept seed's generation 0 closed at "
        f"least {LEARNS_IN_CONTEXT:.0%} of the zero-to-ridge gap at its stopping point (the gap "
        f"closed at every n is reported); the fit needs >= {cfg.p4_min_ns} such n over >= "
        f"{cfg.p4_min_decades:g} decades. Fits listed in advance: y = A n^b weighted by the "
        "seeds' variance, y = E + A n^b (E >= 0) weighted, and y = A n^b unweighted; b "
        f"bootstrapped over seeds ({cfg.bootstrap} replicates). **Confirmed**, read *consistent "
        "with n^-1/4 or faster on [a, b]*, only where every fit's b is significantly below "
        "-1/4 and none is at the edge of its search range (a fit there is never evidence). "
        f"The negative outcome, *no decay on [a, b]*: per seed the slope of the gap against "
        f"log10 n over its mean level is significantly above -{NO_DECAY_MARGIN:g} (it falls by "
        f"less than {NO_DECAY_MARGIN:.0%} of its level per decade); verdict inconclusive, since "
        "an upper bound with unknown constants cannot be refuted on a finite range. "
        f"Underpowered with fewer than {cfg.min_seeds} seeds or an exponent's MDE above "
        f"{cfg.p4_margin:g}. Beside it, for lambda > 0: the final generation's gap over "
        "generation 0's per n, and its log-log slope in n (bounded in n: no trend).")


def _cells(records: list[dict], generation: int | None, field: str) -> dict[tuple, float]:
    """{(n, seed): value} of `field` at `generation` (None: each loop's last generation)."""
    last: dict[tuple, dict] = {}
    for r in records:
        if r.get(field) is None:
            continue
        key = (r["n"], r["seed"])
        if generation is None:
            if key not in last or r["generation"] > last[key]["generation"]:
                last[key] = r
        elif r["generation"] == generation:
            last[key] = r
    return {k: float(r[field]) for k, r in last.items()}


def learns_in_context(records: list[dict]) -> dict[int, list[float]]:
    """{n: [gap closed by each seed's generation 0 at its stopping point]}."""
    out: dict[int, list[float]] = {}
    for r in sorted((r for r in records if r["generation"] == 0), key=lambda r: (r["n"],
                                                                                  r["seed"])):
        if all(r.get(k) is not None for k in ("test_risk", "ridge_risk", "zero_risk")):
            out.setdefault(r["n"], []).append(gap_closed(r["test_risk"], r["ridge_risk"],
                                                          r["zero_risk"]))
    return out


def _loop_ratio(records: list[dict], ns: list[int], seeds: list[int]) -> dict | None:
    """Final over generation-0 gap per n (mean over seeds) and its log-log slope in n."""
    final = max((r["generation"] for r in records), default=0)
    if final == 0:
        return None
    g0, gl = _cells(records, 0, METRIC), _cells(records, final, METRIC)
    per_n = {}
    for n in ns:
        ratios = [gl[(n, s)] / g0[(n, s)] for s in seeds
                  if (n, s) in g0 and (n, s) in gl and g0[(n, s)] > 0]
        per_n[str(n)] = float(np.mean(ratios)) if ratios else None
    usable = [(n, v) for n, v in zip(ns, per_n.values()) if v is not None and v > 0]
    slope = None
    if len(usable) >= 3:
        x, y = np.log([n for n, _ in usable]), np.log([v for _, v in usable])
        slope = float(np.polyfit(x, y, 1)[0])
    return {"generation": final, "per_n": per_n, "log_log_slope": slope}


def _group(name: str, decay: dict, records: list[dict], cfg: ReportConfig) -> GroupResult:
    res = GroupResult(name, NOT_TESTED, margin=cfg.p4_margin,
                      statistic=f"decay exponents of the final generation's {METRIC}",
                      scale=METRIC, margins={"learns_in_context": LEARNS_IN_CONTEXT,
                                             "no_decay": NO_DECAY_MARGIN,
                                             "exponent_mde": cfg.p4_margin})
    if not any(r.get("stopped_step") is not None for r in records):
        res.verdict = NOT_APPLICABLE
        res.numbers = ("trained without early stopping (train.held_out_fraction = 0): n is "
                       "confounded with the passes over S_0")
        return res
    closed = learns_in_context(records)
    res.parts["gap_closed"] = {str(n): v for n, v in closed.items()}
    learning = [n for n, v in closed.items() if v and min(v) >= LEARNS_IN_CONTEXT]
    dropped = sorted(set(closed) - set(learning))
    fit_ns = decay.get("fit_ns") or sorted(closed)
    lo = cfg.p4_fit_min_n if cfg.p4_fit_min_n is not None else min(fit_ns)
    hi = cfg.p4_fit_max_n if cfg.p4_fit_max_n is not None else max(fit_ns)
    cells = _cells(records, None, METRIC)
    ns = sorted(n for n in learning if lo <= n <= hi)
    seeds = sorted({s for (_, s) in cells if all((n, s) in cells for n in ns)})
    decades = math.log10(max(ns) / min(ns)) if ns else 0.0
    res.n_seeds = len(seeds)
    res.parts["range"] = {"ns": ns, "decades": decades, "left_out_ns": dropped}
    text = (f"{METRIC} at the final generation, {len(ns)} n learning in context over "
            f"{decades:.2g} decades [{min(ns) if ns else '-'}, {max(ns) if ns else '-'}]")
    if dropped:
        text += (f"; n left out (generation 0 closed < {LEARNS_IN_CONTEXT:.0%} of the gap): "
                 + ", ".join(f"{n} ({min(closed[n]):.2f})" for n in dropped))
    if len(ns) < 3 or not seeds:
        res.numbers = text + "; needs at least 3 such n and a seed with all of them"
        return res
    values = np.array([[cells[(n, s)] for n in ns] for s in seeds])
    out = p4v2_core(values, ns, np.random.default_rng(cfg.bootstrap_seed), alpha=cfg.alpha,
                    power=cfg.power, margin=cfg.p4_margin, bootstrap=cfg.bootstrap,
                    min_seeds=cfg.min_seeds, tolerance=cfg.p4_tolerance)
    outcome = OUTCOMES[int(out["outcome"])]
    small = len(ns) < cfg.p4_min_ns or decades < cfg.p4_min_decades - 1e-9
    res.verdict = UNDERPOWERED if small else VERDICT_OF[outcome]
    primary = out["fits"][FITS[0]]
    res.estimate = float(primary["estimate"])
    res.interval = [float(primary["low"]), float(primary["high"])]
    res.min_detectable_effect = float(max(out["fits"][f]["mde"] for f in FITS))
    res.parts["fits"] = {f: {k: float(np.asarray(v)) for k, v in fit.items()}
                         for f, fit in out["fits"].items()}
    res.parts.update(outcome=outcome, no_decay={
        k: float(np.asarray(out[k])) for k in ("relative_slope", "low", "high", "p_no_decay",
                                               "level")})
    if (ratio := _loop_ratio(records, ns, seeds)) is not None:
        res.parts["final_over_generation_0"] = ratio
    reading = {"consistent": f"consistent with n^-1/4 or faster on [{min(ns)}, {max(ns)}]",
               "no_decay": f"no decay on [{min(ns)}, {max(ns)}]",
               "slower": f"decays slower than n^-1/4 on [{min(ns)}, {max(ns)}]"}.get(outcome, "")
    if small:
        text += f" (needs >= {cfg.p4_min_ns} n over >= {cfg.p4_min_decades:g} decades)"
    if reading and not small and len(seeds) >= cfg.min_seeds:
        res.reading = reading
    fits_text = "; ".join(f"{f} b {fmt(float(fit['estimate']))} "
                          f"{fmt_ci([float(fit['low']), float(fit['high'])])}"
                          + (" (at the edge: not evidence)" if bool(fit["at_edge"]) else "")
                          for f, fit in out["fits"].items())
    res.numbers = (f"{text}; {fits_text}; fall per decade over the level "
                   f"{fmt(float(out['relative_slope']))}; outcome {outcome}"
                   + (f"; reads: {res.reading}" if res.reading else ""))
    return res


def verdict(evidence: Evidence, cfg: ReportConfig) -> Prediction:
    pred = Prediction(4, "The generalization gap decays in n consistently with the bound (at "
                         "least as fast as n^-1/4), n decoupled from passes by early stopping.",
                      rule(cfg), (CONFIRMED, INCONCLUSIVE, UNDERPOWERED, NOT_APPLICABLE),
                      primary_rule="the first counted decay group (configuration order)",
                      rules_version=PROVISIONAL)
    pred.groups = p4_decay.gated_decay_groups(evidence, cfg, _group)
    return finalise(pred, cfg, lambda gs: gs[0] if gs else None)


def section(doc: Document, evidence: Evidence, pred: Prediction) -> None:
    """P4's groups (version 2): the verdict table; the decay figure is version 1's."""
    doc.add("## Prediction 4: error decay against n (version 2: early stopping)", "",
            "The final generation's generalization gap against n, each n trained to its own "
            "best held-out step; only n whose generation 0 learns in context are fitted.", "")
    doc.verdict_table(pred)
