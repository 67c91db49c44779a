"""Prediction 4: the final-generation error decays in n consistently with the bound (the
decay probe).

Per decay run, the final-generation metric per (seed, n) of its base loops is fitted with
y = E_inf + A n^b, and b is bootstrapped over whole seeds. An upper bound with unknown
constants cannot be refuted by a slope over a finite range of n, so P4 is confirmed ("consistent
with the bound") or not, never refuted. `p4_core` takes arrays with a seed axis and any leading
axes (calibration draws).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

import numpy as np

from icl_stl.report import figures
from icl_stl.report.collect import RunResult
from icl_stl.report.decay_v2 import BOUND_EXPONENT, decay_weights
from icl_stl.report.document import Document
from icl_stl.report.evidence import Evidence
from icl_stl.report.gating import apply_loop_gate, seeds_left_out
from icl_stl.report.groups import describe_group, group_by, last_shared
from icl_stl.report.rules import ReportConfig
from icl_stl.report.stats import (
    C_CONFIRMED,
    C_INCONCLUSIVE,
    C_UNDERPOWERED,
    CODES,
    bootstrap_se,
    seed_bootstrap,
    t_pvalues,
    t_quantile,
)
from icl_stl.report.verdict import (
    CONFIRMED,
    INCONCLUSIVE,
    NOT_APPLICABLE,
    NOT_TESTED,
    UNDERPOWERED,
    GroupResult,
    Prediction,
    describe_test,
    fields_of,
    finalise,
    fmt,
    fmt_ci,
)
from icl_stl.theory import DECAY_EXPONENT_RANGE, fit_decay

log = logging.getLogger(__name__)


def rule(cfg: ReportConfig) -> str:
    threshold = BOUND_EXPONENT + cfg.p4_tolerance
    return (
        f"Per decay run, on {cfg.p4_metric} (primary; excess_risk shown beside it) at the "
        "final generation, over a range of n fixed in advance (the probe's fit range, or "
        f"p4_fit_min_n / p4_fit_max_n) with at least {cfg.p4_min_ns} n over "
        f"{cfg.p4_min_decades:g} decades: fit y = E_inf + A n^b (A >= 0, E_inf "
        + ("fitted" if cfg.p4_floor is None else f"= {cfg.p4_floor:g}")
        + ", weights from the seeds' variance, non-positive values kept) to the mean over "
        f"seeds; seed bootstrap ({cfg.bootstrap} replicates) of b, interval estimate +- "
        "t_{s-1} x SE x sqrt(s/(s-1)). **Confirmed**, read *consistent with the bound*, if b "
        f"is significantly below {threshold:g}; otherwise **inconclusive**, read *decays slower "
        f"than {_bound_power(cfg)} on [a, b]* when b is significantly above it. Never refuted: an "
        "upper bound with unknown constants cannot be refuted on a finite range. Underpowered "
        f"when the MDE of b exceeds {cfg.p4_margin:g}, or with fewer n, decades or seeds than "
        "required (then nothing is read, and the numbers say what the fit alone points at); "
        f"also when the fit sits at the edge of the exponent's search range "
        f"[{DECAY_EXPONENT_RANGE[0]:g}, {DECAY_EXPONENT_RANGE[1]:g}) (its estimate, or at "
        f"least {cfg.alpha:.0%} of the bootstrap replicates): such a fit is never evidence. "
        "The bound's shape is drawn as a descriptive envelope (its fits over the bootstrap), "
        "not as an identified fit.")


def _bound_power(cfg: ReportConfig) -> str:
    """The power of n that b is read against, as the reading prints it."""
    return "n^-1/4" if cfg.p4_tolerance == 0 else f"n^{BOUND_EXPONENT + cfg.p4_tolerance:g}"


def p4_core(values: np.ndarray, ns: list[int], cfg: ReportConfig,
            rng: np.random.Generator) -> dict:
    """values (..., seeds, len(ns)): seed bootstrap of the decay exponent b.

    A fit at the edge of the exponent's search range (`theory.decay.EDGE_TOLERANCE`: the point
    estimate, or at least alpha of the bootstrap replicates) is never evidence: the exponent is
    not identified on this range (one high value at the smallest n fits as n^-3, and replicates
    piled at the edge make the interval narrow), so the code is underpowered whatever the test
    says (`at_edge`, `edge_share`). Under a flat truth with the reproduction's noise this keeps
    false confirmations below alpha (tests/report/test_calibration.py)."""
    values = np.asarray(values, float)
    s = values.shape[-2]
    w = decay_weights(values, ns)
    full = fit_decay(ns, values.mean(-2), w, cfg.p4_floor)
    idx = seed_bootstrap(s, cfg.bootstrap, rng)
    boot = fit_decay(ns, values[..., idx, :].mean(-2), w[..., None, :], cfg.p4_floor)
    se = bootstrap_se(boot["slope"], s)
    est = full["slope"]
    threshold = BOUND_EXPONENT + cfg.p4_tolerance
    tq = t_quantile(1 - cfg.alpha, s - 1)
    p_slower, p_faster = t_pvalues(est - threshold, se, s - 1)
    mde = (tq + t_quantile(cfg.power, s - 1)) * se
    code = np.full(np.shape(est), C_INCONCLUSIVE, dtype=np.int8)
    code[~(np.asarray(mde) <= cfg.p4_margin)] = C_UNDERPOWERED
    code[np.asarray(p_faster) < cfg.alpha] = C_CONFIRMED
    edge_share = np.asarray(boot["at_edge"]).mean(-1)
    at_edge = np.asarray(full["at_edge"]) | (edge_share >= cfg.alpha)
    code[at_edge] = C_UNDERPOWERED  # last: no test result overrides it
    if s < cfg.min_seeds:
        code[...] = C_UNDERPOWERED
    return {"estimate": est, "low": est - tq * se, "high": est + tq * se, "se": se,
            "p_confirm": p_faster, "p_slower": p_slower, "mde": mde, "code": code,
            "n_seeds": s, "floor": full["floor"], "amplitude": full["amplitude"],
            "boot_slopes": boot["slope"], "weights": w, "at_edge": at_edge,
            "point_at_edge": np.asarray(full["at_edge"]), "edge_share": edge_share}


def decay_table(records: list[dict], metric: str) -> tuple[list[int], list[int], np.ndarray,
                                                             int | None]:
    """(ns, seeds, values (seeds, ns), generation) of `metric` at the final generation, for the
    seeds that have every n."""
    recs = [r for r in records if r.get(metric) is not None]
    if not recs:
        return [], [], np.zeros((0, 0)), None
    final = last_shared(recs)  # the last generation every (n, seed) loop reached
    cells = {(r["n"], r["seed"]): float(r[metric]) for r in recs if r["generation"] == final}
    ns = sorted({n for n, _ in cells})
    seeds = sorted(s for s in {s for _, s in cells} if all((n, s) in cells for n in ns))
    values = np.array([[cells[(n, s)] for n in ns] for s in seeds]).reshape(len(seeds), len(ns))
    return ns, seeds, values, final


def _p4_group(name: str, decay: dict, records: list[dict], cfg: ReportConfig) -> GroupResult:
    metric = cfg.p4_metric
    ns_all, seeds, values, final = decay_table(records, metric)
    res = GroupResult(name, NOT_TESTED, margin=cfg.p4_margin, n_seeds=len(seeds),
                      statistic=f"decay exponent b of {metric}")
    if not ns_all:
        res.numbers = f"no {metric} in the decay run's records"
        return res
    fit_ns = decay.get("fit_ns") or ns_all
    lo = cfg.p4_fit_min_n if cfg.p4_fit_min_n is not None else min(fit_ns)
    hi = cfg.p4_fit_max_n if cfg.p4_fit_max_n is not None else max(fit_ns)
    ns = [n for n in ns_all if lo <= n <= hi]
    values = values[:, [ns_all.index(n) for n in ns]]
    decades = math.log10(max(ns) / min(ns)) if ns else 0.0
    res.parts["range"] = {"ns": ns, "decades": decades, "generation": final}
    text = (f"{metric} at generation {final}, {len(ns)} n over {decades:.2g} decades "
            f"[{min(ns) if ns else '-'}, {max(ns) if ns else '-'}]")
    if len(ns) < 3 or not seeds:
        res.numbers = text + "; needs at least 3 n and a seed with all of them"
        return res
    rng = np.random.default_rng(cfg.bootstrap_seed)
    out = p4_core(values, ns, cfg, rng)
    fields = fields_of({**out, "p_refute": np.nan})
    res.estimate, res.interval = fields["estimate"], fields["interval"]
    res.min_detectable_effect = fields["min_detectable_effect"]
    res.verdict = CODES[int(out["code"])]
    res.parts.update(fit={"floor": float(out["floor"]), "amplitude": float(out["amplitude"]),
                          "slope": float(out["estimate"])},
                     p_consistent=float(out["p_confirm"]), p_slower=float(out["p_slower"]))
    threshold = BOUND_EXPONENT + cfg.p4_tolerance
    edge = _edge_text(out)
    res.parts.update(at_edge=bool(out["at_edge"]), edge_share=float(out["edge_share"]))
    reading = ""
    if edge:
        reading = edge  # never evidence: neither "consistent" nor "slower" is read
    elif res.verdict == CONFIRMED:
        reading = (f"consistent with the bound (b <= {threshold:g}: {fmt(res.estimate)} "
                   f"{fmt_ci(res.interval)})")
    elif float(out["p_slower"]) < cfg.alpha:
        reading = f"decays slower than {_bound_power(cfg)} on [{min(ns)}, {max(ns)}]"
        if res.verdict == UNDERPOWERED and len(seeds) >= cfg.min_seeds:
            res.verdict = INCONCLUSIVE  # the test did detect something: not underpowered
    small = len(ns) < cfg.p4_min_ns or decades < cfg.p4_min_decades - 1e-9
    if small:
        res.verdict = UNDERPOWERED
        text += f" (needs >= {cfg.p4_min_ns} n over >= {cfg.p4_min_decades:g} decades)"
    # A reading is a claim: only a design that may decide (enough seeds, n and decades) gets
    # one; otherwise the numbers say what the fit alone points at.
    if reading and len(seeds) >= cfg.min_seeds and not small:
        res.reading = reading
    elif reading:
        text += f"; too small a design to read (the fit alone: {reading})"
    secondary = ""
    if metric != "excess_risk":
        ns2, seeds2, values2, _ = decay_table(records, "excess_risk")
        keep = [i for i, n in enumerate(ns2) if lo <= n <= hi]
        if len(keep) >= 3 and seeds2:
            fit2 = fit_decay([ns2[i] for i in keep], values2[:, keep].mean(0),
                             decay_weights(values2[:, keep], [ns2[i] for i in keep]),
                             cfg.p4_floor)
            res.parts["excess_risk_slope"] = float(fit2["slope"])
            secondary = f"; excess_risk exponent {fmt(float(fit2['slope']))} (secondary)"
    res.numbers = (f"{text}; fit E_inf {fmt(float(out['floor']))} + "
                   f"{fmt(float(out['amplitude']))} n^b; " + describe_test(res) + secondary
                   + (f"; reads: {res.reading}" if res.reading else ""))
    return res


def _edge_text(out: dict) -> str:
    """Why a fit at the edge of the exponent's search range is not read ("" if it is not)."""
    if not bool(out["at_edge"]):
        return ""
    lo, hi = DECAY_EXPONENT_RANGE
    where = (f"the fit's exponent b = {fmt(float(out['estimate']))}"
             if bool(out["point_at_edge"]) else
             f"{float(out['edge_share']):.0%} of the bootstrap replicates")
    return (f"not read: {where} at the edge of the exponent's search range [{lo:g}, {hi:g}): "
            "the data do not identify the exponent on this range (e.g. one high value at the "
            "smallest n), so the fit is not evidence and the group is underpowered")


def decay_groups(runs: list[RunResult]) -> dict[tuple, list[RunResult]]:
    """{(config, lambda, counted): decay runs} in natural order: P4's groups."""
    decays = [r for r in runs if r.decay is not None]
    return group_by(decays, lambda r: (r.config, float(r.decay.get("real_fraction",
                                                                   float("nan"))),
                                       r.in_theorem_setting))


def verdict(evidence: Evidence, cfg: ReportConfig) -> Prediction:
    pred = Prediction(4, "Final-generation error decays in n consistently with the bound "
                         "(at least as fast as n^-1/4 on the fitted range).", rule(cfg),
                      (CONFIRMED, INCONCLUSIVE, UNDERPOWERED, NOT_APPLICABLE),
                      primary_rule="the first counted decay group (configuration order)")
    pred.groups = gated_decay_groups(evidence, cfg, _p4_group)
    return finalise(pred, cfg, lambda gs: gs[0] if gs else None)


def gated_decay_groups(evidence: Evidence, cfg: ReportConfig,
                       judge: Callable[[str, dict, list[dict], ReportConfig], GroupResult]
                       ) -> list[GroupResult]:
    """Each decay group judged by `judge(name, decay, kept records, cfg)` on the seeds whose
    own loop at the largest n passed the gate (small n cannot reach ridge); the others are
    left out and counted. Shared by P4's two versions."""
    groups = []
    for (config, lam, counted), group_runs in decay_groups(evidence.runs).items():
        recs = evidence.loop_records_of({str(r.path) for r in group_runs})
        name = describe_group(config, λ=lam)
        largest = max((r["n"] for r in recs), default=None)
        missed, gate = seeds_left_out(recs, cfg.gate_tolerance,
                                      lambda r, n=largest: r["n"] == n)
        kept = [r for r in recs if r["seed"] not in missed]
        res = (judge(name, group_runs[0].decay, kept, cfg) if kept
               else GroupResult(name, NOT_APPLICABLE))
        res.counted, res.key = bool(counted), {"lambda": lam}
        groups.append(apply_loop_gate(res, gate, bool(kept)))
    return groups


def section(doc: Document, evidence: Evidence, pred: Prediction) -> None:
    """Per decay group the metric against n with its fit and the bound's envelope, then P4's
    groups."""
    cfg = pred.rules
    doc.add("## Prediction 4: error decay against n", "",
            f"Final-generation {cfg.p4_metric} against n (grey: seeds), the fit E_inf + A n^b "
            "with its bootstrap interval, the bound's shape c1 n^-1 log^2 n + c2 n^-1/2 log n + "
            "c3 n^-1/4 (c >= 0) as a descriptive envelope over seed-bootstrap resamples (its "
            "coefficients are not identified), and n^-1/4 for reference.", "")
    configs = [r.config for r in evidence.runs]
    for g, ((config, lam, _), group_runs) in zip(pred.groups,
                                                 decay_groups(evidence.runs).items()):
        name = g.group or group_runs[0].path.name
        title = figures.group_title(figures.short_name(config, configs), (lam,))
        records = evidence.loop_records_of({str(r.path) for r in group_runs})
        doc.figure("decay", f"decay, {name}",
                   lambda path, g=g, records=records, title=title: _decay_figure(
                       path, g, records, title, cfg))
    doc.verdict_table(pred)


def _decay_figure(path, group: GroupResult, records: list[dict], title: str,
                  cfg: ReportConfig):
    """The decay figure of one group over its fit range (None when there is nothing to fit)."""
    ns, seeds, values, _ = decay_table(records, cfg.p4_metric)
    keep = (group.parts.get("range") or {}).get("ns") or ns
    cols = [ns.index(n) for n in keep if n in ns]
    if len(cols) < 3 or len(seeds) < 1:
        return None
    values = values[:, cols]
    try:
        fit = p4_core(values, keep, cfg, np.random.default_rng(cfg.bootstrap_seed))
        envelope = figures.bound_envelope(keep, values, np.asarray(fit["weights"]),
                                           cfg.bootstrap_seed)
        return figures.decay_figure(keep, values, fit, path, title, cfg.p4_metric, envelope)
    except (ValueError, FloatingPointError) as err:
        log.warning("no decay figure for %s: %s", title, err)
        return None
