"""REPORT.md from run and sweep directories: figures, and a verdict on each prediction.

    write_report([Path("multirun/loop/2025-01-01")], out_dir=Path("report"))

reads every summary.json / stability.json / decay.json / in_context.json (and error.json of
failed sweep jobs) under the given paths once (`evidence.collect`), judges every prediction of
the registry (`predictions.REGISTRY`: one module per prediction of docs/THEORY.md, each with
`verdict` and `section`), and writes figures/*.png, runs.csv (every loop record, `tidy`),
verdicts.json (numbers: per prediction its verdict, estimate, interval, margin, seeds, minimum
detectable effect and groups; the training gate's counts) and REPORT.md, which states for each
prediction the verdict, the numbers behind it and, verbatim, the rule that produced it.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import numpy as np

from icl_stl.persistence import atomic_write_json
from icl_stl.report import fidelity_section, figures, tidy
from icl_stl.report.collect import THEOREM_SETTING, RunResult
from icl_stl.report.document import Document
from icl_stl.report.evidence import Evidence, collect
from icl_stl.report.gating import ridge_gate_counts
from icl_stl.report.groups import describe_group, group_by
from icl_stl.report.matched import matched_loops
from icl_stl.report.predictions import registry
from icl_stl.report.rules import ReportConfig
from icl_stl.report.verdict import Prediction, fmt, fmt_ci, gate_of

log = logging.getLogger(__name__)

VERDICT_MEANINGS = {
    "confirmed": "the test rejects the opposite of the prediction at the configured level, "
                 "with the margin",
    "refuted": "the test rejects the prediction itself at the configured level (after Holm's "
               "correction across groups for the prediction's verdict)",
    "inconclusive": "neither, although the design could detect an effect of the margin's size",
    "underpowered": "neither, and the minimum detectable effect exceeds the margin; or fewer "
                    "seeds than min_seeds (then never confirmed or refuted)",
    "not applicable": "outside the conditions the prediction is judged in: generation 0 missed "
                      "the training gate, gamma is not below the chaos ceiling, or (P7) the "
                      "window is not all at the schedule's floor",
    "not tested": "no run holds the data the prediction needs",
}

COMBINE_RULE = """\
Seeds are the replicates: each rule reduces one seed's data to one number and tests the mean
over seeds (Student-t, s - 1 degrees of freedom) or resamples whole seeds (bootstrap, SE
inflated by sqrt(s/(s-1)), t quantile); a regression interval over the generations of one loop
is never used. Intervals shown are 1 - 2 alpha: their ends are the one-sided bounds. A
prediction is judged separately in every *group* of comparable data. Groups outside the
theorem's setting are shown but not counted. Each prediction names its **primary group** in
advance (the rule in its row below; `icl-stl-report ... primary.N=GROUP` names another). The
prediction's verdict is the primary group's, except that it is **refuted** when any counted
group's refutation survives Holm's correction over the counted groups (a refutation of the
primary group that does not survive reads inconclusive). Each loop is gated on its own
generation 0: a loop that missed the training gate is left out of its group and counted (a group
mean never stands in for a seed; the version-1 rules of P1 and P2, kept for docs/results/cpu,
gate the group mean). Version 2 (the default, `rules=v2`) judges P1 and P2 on excess risk
against each loop's matched oracle-labelled control and reports every later generation that
failed to train."""


@dataclasses.dataclass
class ReportResult:
    path: Path  # REPORT.md
    verdicts: dict[int, str]  # prediction -> verdict
    figures: list[Path]


def judge(evidence: Evidence, cfg: ReportConfig) -> list[Prediction]:
    """Every prediction of the registry judged from the evidence, in the registry's order."""
    return [module.verdict(evidence, cfg) for module in registry(cfg.rules)]


def training_failures(evidence: Evidence, cfg: ReportConfig) -> dict:
    """Matched pairs (a loop and its oracle control) with a later generation that failed to
    train, out of all pairs: reported beside the gate, never read as collapse."""
    pairs = matched_loops(evidence.records, evidence.settings, cfg.gate_tolerance,
                          cfg.failure_gap, cfg.failure_train_ratio)
    return {"pairs": len(pairs), "failed": sum(bool(p.failures) for p in pairs),
            "generations": [f"{p.describe()}: generation {f['generation']} ({f['arm']} arm) "
                            f"{f['why']}" for p in pairs for f in p.failures]}


def gate_rows(records: list[dict], cfg: ReportConfig) -> list[dict]:
    """Per (configuration, n): the training gate on generation 0 (`verdict.gate_of`).

    Generation 0 does not depend on lambda or m, so each (seed, n) loop is counted once.
    """
    rows = []
    gen0 = [r for r in records if r["generation"] == 0]
    for (config, n), recs in group_by(gen0, lambda r: (r["config"], r["n"])).items():
        gate = gate_of(recs, cfg.gate_tolerance)
        if gate is not None:
            rows.append({"group": describe_group(config, n=n), **gate})
    return rows


def _summary_table(doc: Document, records: list[dict]) -> None:
    """One row per (configuration, n, m, lambda): what a modes or architectures sweep compares."""
    doc.add("## All loops at a glance", "",
            "Generation-0 and final test risk (mean over seeds) of every loop group.", "")
    rows = []
    key = lambda r: (r["config"], r["n"], r.get("augment", 0), r["real_fraction"])  # noqa: E731
    for (config, n, m, lam), recs in group_by(records, key).items():
        start, last = (f(r["generation"] for r in recs) for f in (min, max))
        first = float(np.mean([r["test_risk"] for r in recs if r["generation"] == start]))
        final = float(np.mean([r["test_risk"] for r in recs if r["generation"] == last]))
        seeds = len({r["seed"] for r in recs})
        rows.append([config or "-", n, m, f"{lam:g}", seeds, f"{start}-{last}", fmt(first),
                     fmt(final), fmt(final / first) if first else "n/a"])
    doc.table(["configuration", "n", "m", "λ", "seeds", "generations", "first risk",
               "final risk", "final / first"], rows)


def _ridge_section(doc: Document, rows: list[dict], cfg: ReportConfig) -> None:
    doc.add("## The training gate: does generation 0 reach ridge?", "",
            f"Criterion (icl_stl.training.gate): generation-0 test risk - ridge risk <= "
            f"{cfg.gate_tolerance:g} x (zero risk - ridge risk), means over seeds, i.e. at least "
            f"{1 - cfg.gate_tolerance:.0%} of the zero-to-ridge gap closed. A group that misses "
            "it (at the largest n for predictions about n) is **not applicable**.", "")
    if not rows:
        doc.add("No loop records.", "")
        return
    missed = sum(r["reached"] is False for r in rows)
    doc.add(f"**{missed} of {len(rows)} groups did not reach it: their verdicts are not "
            "applicable.**" if missed else "Every group reached it.", "")
    doc.table(["group", "seeds", "test risk", "ridge risk", "zero risk", "gap closed",
               "reached", "seeds reaching it alone"],
              [[r["group"] or "(all)", r["seeds"], fmt(r["test_risk"]), fmt(r["ridge_risk"]),
                fmt(r["zero_risk"]), fmt(r["gap_closed"]),
                {True: "yes", False: "no", None: "n/a"}[r["reached"]],
                r.get("seeds_reached", "n/a")] for r in rows])


def _in_context_section(doc: Document, runs: list[RunResult]) -> None:
    found = [r for r in runs if r.in_context is not None and r.in_context.get("generations")]
    if not found:
        return
    doc.add("## In-context stability (Li et al. 2023)", "",
            "Mean |loss(P') - loss(P)| at each position after the first example is flipped; an "
            "algorithm stable in context lets it fade with position (negative slope).", "")
    for run in found:
        name = run.config or run.path.name
        doc.figure("in_context", f"in-context stability, {name}",
                   lambda path, run=run, name=name: figures.in_context_figure(run.in_context,
                                                                              path, name))
        doc.table(["n", "generation", "slope against position", "interval"],
                  [[r["n"], r["generation"], fmt((r.get("linear_fit") or {}).get("slope")),
                    fmt((r.get("linear_fit") or {}).get("ci_low")) + " .. "
                    + fmt((r.get("linear_fit") or {}).get("ci_high"))]
                   for r in run.in_context["generations"]])


def _settings_table(doc: Document, cfg: ReportConfig) -> None:
    rows = [[f.name, json.dumps(getattr(cfg, f.name))] for f in dataclasses.fields(cfg)]
    doc.table(["setting", "value"], rows)


# How a prediction's sub-tests are labelled in the headline table and the rules list.
SUB_LABELS = {"ordering": "heuristic", "quality": "b", "collapse": "b, heuristic"}


def _headline_rows(preds: list[Prediction]) -> list[list[str]]:
    rows = []
    for p in preds:
        entries = [(str(p.number), p)]
        entries += [(f"{p.number} ({SUB_LABELS.get(name, name)})", q)
                    for name, q in p.sub.items()]
        for label, q in entries:
            g = q.primary_group()
            tag = " *(heuristic)*" if q.heuristic and "heuristic" not in label else ""
            rows.append([label, q.statement + tag, f"**{q.verdict}**",
                         (g.group or "(all)") if g else "-",
                         f"{fmt(g.estimate)} {fmt_ci(g.interval)}" if g and g.interval
                         else (fmt(g.estimate) if g else "n/a"),
                         fmt(g.margin) if g else "n/a", str(g.n_seeds) if g else "0",
                         fmt(g.min_detectable_effect) if g else "n/a",
                         q.reading or q.numbers])
    return rows


def write_report(paths: list[Path], out_dir: Path, cfg: ReportConfig | None = None,
                 figures: bool = True, evidence: Evidence | None = None) -> ReportResult:
    """Read everything under `paths`; write REPORT.md, verdicts.json, runs.csv and (unless
    `figures` is False: the verdicts are the same) figures/ in out_dir. `evidence`: what was
    read from `paths`, collected by the caller (a programme that chooses which records of its
    runs count, scripts/v2_gate.py), instead of `collect(paths)`."""
    cfg = cfg or ReportConfig()
    cfg.validate()
    evidence = evidence if evidence is not None else collect(paths)
    runs, records = evidence.runs, evidence.records
    if not runs:
        raise FileNotFoundError(f"no summary.json, stability.json, decay.json or in_context.json "
                                f"under {[str(p) for p in paths]}")
    out_dir.mkdir(parents=True, exist_ok=True)
    preds = judge(evidence, cfg)
    doc = Document(out_dir, figures=figures)
    failed = evidence.failed
    doc.add("# icl-stl report", "",
            f"Read {len(runs)} run directories under {', '.join(str(p) for p in paths)}: "
            f"{sum(r.summary is not None for r in runs)} loops, "
            f"{sum(r.stability is not None for r in runs)} stability, "
            f"{sum(r.decay is not None for r in runs)} decay and "
            f"{sum(r.in_context is not None for r in runs)} in-context probes; "
            f"{len(failed)} failed job(s).", "")
    for r in failed:
        doc.add(f"- failed: `{r.path}`: {r.error.get('error', '?')}")
    if evidence.warnings:  # copied loops, uneven generations (`integrity`)
        doc.add("", "## Warnings about the input", "", *(f"- {w}" for w in evidence.warnings))
    doc.add("", "## Verdicts", "")
    doc.table(["#", "prediction", "verdict", "primary group", "estimate [interval]", "margin",
               "seeds", "MDE", "reading / numbers"], _headline_rows(preds))
    ridge_rows = gate_rows(records, cfg)
    if ridge_rows:
        reached = sum(r["reached"] is True for r in ridge_rows)
        doc.add(f"Training gate: generation 0 reached ridge (at least "
                f"{1 - cfg.gate_tolerance:.0%} of the zero-to-ridge gap closed) in {reached} "
                f"of {len(ridge_rows)} loop groups; see below.", "")
    seeds_seen = sorted({g.n_seeds for p in preds for g in p.groups})
    if seeds_seen and max(seeds_seen) < cfg.min_seeds:
        doc.add(f"Every group has fewer than min_seeds = {cfg.min_seeds} seeds: no prediction "
                "can be confirmed or refuted from these runs.", "")
    doc.add("### How the verdicts are computed", "", COMBINE_RULE, "",
            "The verdicts:", "", *(f"- **{k}**: {v}" for k, v in VERDICT_MEANINGS.items()), "",
            "The theorem's setting: " + ", ".join(f"{k}={v}" for k, v in THEOREM_SETTING.items())
            + ". The rules (docs/THEORY.md states each prediction, its test and margin):", "")
    for p in preds:
        doc.add(f"- **P{p.number}**{' (heuristic)' if p.heuristic else ''}. {p.rule} "
                f"Primary group: {p.primary_rule}.")
        for name, q in p.sub.items():
            label = "heuristic" if q.heuristic else SUB_LABELS.get(name, name)
            doc.add(f"- **P{p.number}, {label}** ({q.statement}) {q.rule}")
    doc.add("", "Settings of this report (`icl-stl-report PATH KEY=VALUE` changes them):", "")
    _settings_table(doc, cfg)
    _ridge_section(doc, ridge_rows, cfg)
    for warning in fidelity_section.write_section(doc, runs, records):
        log.warning("%s", warning)
    for module, pred in zip(registry(cfg.rules), preds):
        module.section(doc, evidence, pred)
    _summary_table(doc, records)
    _in_context_section(doc, runs)
    tidy.write_csv(tidy.tidy_rows(records, evidence.settings), out_dir / "runs.csv")
    doc.add("", "Every loop record as one table (one row per loop and generation): "
            "`runs.csv`.")
    path = out_dir / "REPORT.md"
    path.write_text(doc.text())
    atomic_write_json(out_dir / "verdicts.json", {
        "rules": cfg.rules,
        "verdicts": {str(p.number): p.to_json() for p in preds},
        "ridge_gate": {**ridge_gate_counts(records, cfg.gate_tolerance),
                       "training_failures": training_failures(evidence, cfg),
                       "groups": len(ridge_rows),
                       "reached": sum(r["reached"] is True for r in ridge_rows),
                       "tolerance": cfg.gate_tolerance,
                       "rows": [{k: (None if isinstance(v, float) and not np.isfinite(v) else v)
                                 for k, v in r.items()} for r in ridge_rows]},
        "settings": cfg.to_dict(), "verdict_meanings": VERDICT_MEANINGS,
        "runs": [str(r.path) for r in runs], "failed": [str(r.path) for r in failed],
        "warnings": evidence.warnings, "uneven_groups": evidence.uneven,
        "copied_loops": evidence.copies})
    return ReportResult(path, {p.number: p.verdict for p in preds}, doc.figures)


def verdicts_of(out_dir: Path) -> dict[int, str]:
    """The verdicts a written report holds (verdicts.json), keyed by prediction."""
    data = json.loads((Path(out_dir) / "verdicts.json").read_text())
    return {int(k): v["verdict"] for k, v in data["verdicts"].items()}
