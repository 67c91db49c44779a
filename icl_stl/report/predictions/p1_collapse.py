"""Prediction 1, version 1 (exploratory): at lambda = 0 the test risk grows with generations.

Kept as the first reproduction (docs/results/cpu) was judged, with its group-mean training gate,
so that its verdicts regenerate (`icl-stl-report ... rules=v1`); version 2
(`p1_matched_collapse`) gates each loop on its own generation 0 and reads matched controls.

Judged from the loops' per-generation records without augmentation (m = 0). The rule's text
(`rule`) is what REPORT.md prints; its statistic is `p1_core`, on arrays with the seed axis and
any leading axes, so the calibration tests (tests/report/test_calibration.py) run the very code
the report runs on thousands of simulated draws. Groups outside the theorem's setting (another
architecture, the reference learner, accumulated synthetic data) are shown but not counted.
"""

from __future__ import annotations

import numpy as np

from icl_stl.report import figures
from icl_stl.report.document import Document
from icl_stl.report.evidence import Evidence
from icl_stl.report.groups import describe_group, group_by, in_theorem_setting, seed_matrix
from icl_stl.report.rules import ReportConfig
from icl_stl.report.stats import directional_test
from icl_stl.report.verdict import (
    CONFIRMED,
    INCONCLUSIVE,
    NOT_APPLICABLE,
    NOT_TESTED,
    REFUTED,
    UNDERPOWERED,
    GroupResult,
    Prediction,
    apply_gate,
    describe_test,
    finalise,
    fmt,
    gate_of,
    largest,
    result_of,
)


def rule(cfg: ReportConfig) -> str:
    return (
        "Per group (configuration, n, m = 0) at lambda = 0, one number per seed: the log rise "
        "log(final-generation risk / generation-0 risk). One-sided t-test over seeds at level "
        f"{cfg.alpha:g}: **confirmed** if the mean log rise exceeds log(1 + {cfg.p1_margin:g}) "
        f"(a {cfg.p1_margin:.0%} rise) significantly, **refuted** if it is "
        "significantly below it (no collapse beyond the margin; a heuristic, so this does not "
        "refute the theorem).")


def p1_core(risk: np.ndarray, cfg: ReportConfig) -> dict:
    """risk (..., seeds, generations) > 0, generation 0 first and the final one last.

    Per seed the log of final over generation-0 risk; the claim is a rise above the margin,
    log(final / gen 0) > log(1 + p1_margin). (A ratio to the seeds' pooled generation-0 risk
    shares one random denominator between seeds, which the spread over seeds does not see: it
    confirms 5.7% of the time at the margin instead of 5%.)
    """
    risk = np.asarray(risk, dtype=float)
    log_rise = np.log(risk[..., -1] / risk[..., 0])
    return directional_test(log_rise, float(np.log1p(cfg.p1_margin)), +1, cfg.levels)


def _group(name: str, records: list[dict], cfg: ReportConfig) -> GroupResult:
    gens = sorted({r["generation"] for r in records})
    mat, seeds = seed_matrix(records, gens)
    if len(gens) < 2 or gens[0] != 0 or not seeds:
        return GroupResult(name, NOT_TESTED, numbers=f"generations {gens}, {len(seeds)} "
                           "complete seed(s): needs generation 0 and a later one")
    if not np.all(mat > 0):
        return GroupResult(name, NOT_TESTED, numbers="non-positive test risk: no log rise")
    res = result_of(name, p1_core(mat, cfg), float(np.log1p(cfg.p1_margin)),
                    "log(final / generation-0 risk)")
    res.numbers = (f"risk {fmt(mat[:, 0].mean())} -> {fmt(mat[:, -1].mean())} over "
                   f"{gens[-1]} generations; " + describe_test(res))
    return res


def verdict(evidence: Evidence, cfg: ReportConfig) -> Prediction:
    pred = Prediction(1, "lambda = 0: test risk grows with generations (collapse).",
                      rule(cfg), (CONFIRMED, REFUTED, INCONCLUSIVE, UNDERPOWERED,
                                  NOT_APPLICABLE), heuristic=True,
                      primary_rule="the counted lambda = 0 group with the largest n")
    records = evidence.records
    zero = [r for r in records if r["real_fraction"] == 0 and r.get("augment", 0) == 0]
    plain = [r for r in records if r.get("augment", 0) == 0]
    for (config, n), recs in group_by(zero, lambda r: (r["config"], r["n"])).items():
        res = _group(describe_group(config, n=n), recs, cfg)
        gen0 = [r for r in plain if r["config"] == config and r["n"] == n]
        res.counted, res.key = in_theorem_setting(recs), {"n": n, "config": config}
        pred.groups.append(apply_gate(res, gate_of(gen0, cfg.gate_tolerance)))
    return finalise(pred, cfg, lambda gs: largest(gs, "n"))


def section(doc: Document, evidence: Evidence, pred: Prediction) -> None:
    """Risk against generation and against position of every loop group (every lambda:
    Prediction 2 reads the same figures), then P1's groups."""
    doc.add("## Predictions 1 and 2: risk against generation", "")
    risk_figures(doc, evidence)
    doc.add("### Prediction 1 by group", "")
    doc.verdict_table(pred)


def risk_figures(doc: Document, evidence: Evidence) -> None:
    """Every loop group's risk against generation and against position."""
    doc.add("Left: test risk minus ridge's (Bayes-optimal) risk on the same test prompts, mean "
            "over seeds, band ± one standard deviation over seeds, on an axis zoomed to the "
            "lines (ridge and the zero predictor are named with their value when off it). "
            "Right: the change since generation 0 of the same loop. The position figures show "
            "how the error at each position changed from generation 0 to the last. A figure's "
            "title names its group in words; the caption holds its full settings.", "")
    baselines = {str(r.path): (r.summary or {}).get("baselines", {}) for r in evidence.runs}
    plain = [r for r in evidence.records if r.get("augment", 0) == 0]
    short = figures.short_names(r["config"] for r in evidence.records)
    for (config, n), recs in group_by(plain, lambda r: (r["config"], r["n"])).items():
        if len({r["generation"] for r in recs}) < 2:
            continue  # e.g. a decay probe's final generation alone: its own figure shows it
        name = describe_group(config, n=n)
        title = figures.group_title(short[config], (r["real_fraction"] for r in recs), n)
        doc.figure("risk", f"risk against generation, {name}",
                   lambda path, recs=recs, title=title: figures.risk_figure(recs, path, title))
        doc.figure("positions", f"error against position, {name}",
                   lambda path, recs=recs, title=title: figures.positions_figure(
                       recs, baselines[recs[0]["run"]], path, title))
