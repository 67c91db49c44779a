"""REPORT.md from run and sweep directories: figures, and a verdict on each prediction.

    write_report([Path("multirun/loop/2025-01-01")], out_dir=Path("report"))

reads every summary.json / stability.json / decay.json / in_context.json (and error.json of
failed sweep jobs) under the given paths, writes figures/*.png and verdicts.json, and REPORT.md
stating for each prediction of THEORY.md whether the data confirms it, with the numbers behind
the verdict and the rule that produced it (rules: `rules`, `loop_verdicts`, `probe_verdicts`).
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import numpy as np

from icl_stl.io import atomic_write_json
from icl_stl.report import figures
from icl_stl.report.collect import THEOREM_SETTING, RunResult, load_runs, loop_records
from icl_stl.report.loop_verdicts import (
    ridge_check,
    risk_against_m,
    verdict_p1,
    verdict_p2,
    verdict_p5,
)
from icl_stl.report.probe_verdicts import stability_table, verdict_p3, verdict_p4
from icl_stl.report.rules import (
    COMBINE_RULE,
    LEVEL,
    NEGLIGIBLE_GROWTH,
    RIDGE_TOLERANCE,
    Verdict,
    describe_group,
    fmt,
    group_by,
)

log = logging.getLogger(__name__)


@dataclasses.dataclass
class ReportResult:
    path: Path  # REPORT.md
    verdicts: dict[int, str]  # prediction -> verdict
    figures: list[Path]


class _Doc:
    """Markdown lines plus the figures they reference (paths relative to the report)."""

    def __init__(self, out_dir: Path):
        self.out_dir, self.lines, self.figures = out_dir, [], []
        (out_dir / "figures").mkdir(parents=True, exist_ok=True)

    def add(self, *lines: str) -> None:
        self.lines.extend(lines)

    def figure_path(self, stem: str) -> Path:
        return self.out_dir / "figures" / f"{stem}_{len(self.figures) + 1:02d}.png"

    def figure(self, path: Path, caption: str) -> None:
        self.figures.append(path)
        self.add(f"![{caption}]({path.relative_to(self.out_dir).as_posix()})", "")

    def table(self, header: list[str], rows: list[list[str]]) -> None:
        self.add("| " + " | ".join(header) + " |", "|" + "---|" * len(header))
        self.add(*("| " + " | ".join(str(c).replace("|", "/") for c in row) + " |"
                   for row in rows))
        self.add("")


def _verdict_section(doc: _Doc, verdict: Verdict) -> None:
    if not verdict.groups:
        doc.add(f"No data for prediction {verdict.prediction}.", "")
        return
    doc.table(["group", "verdict", "counted", "numbers"],
              [[g.group or "(all)", g.verdict, "yes" if g.counted else "no", g.numbers]
               for g in verdict.groups])


def _loop_sections(doc: _Doc, runs: list[RunResult], records: list[dict],
                   p1: Verdict, p2: Verdict) -> None:
    doc.add("## Predictions 1 and 2: risk against generation", "",
            "Mean test risk over seeds, band = min..max over seeds; dashed: ridge (Bayes-optimal).",
            "")
    baselines = {str(r.path): (r.summary or {}).get("baselines", {}) for r in runs}
    plain = [r for r in records if r.get("augment", 0) == 0]
    for (config, n), recs in group_by(plain, lambda r: (r["config"], r["n"])).items():
        if len({r["generation"] for r in recs}) < 2:
            continue  # e.g. a decay probe's final generation alone: its own figure shows it
        name = describe_group(config, n=n)
        doc.figure(figures.risk_figure(recs, doc.figure_path("risk"), name),
                   f"risk against generation, {name}")
        doc.figure(figures.positions_figure(recs, baselines[recs[0]["run"]],
                                            doc.figure_path("positions"), name),
                   f"error against position, {name}")
    doc.add("### Prediction 1 by group", "")
    _verdict_section(doc, p1)
    doc.add("### Prediction 2 by group", "")
    _verdict_section(doc, p2)


def _stability_section(doc: _Doc, runs: list[RunResult], p3: Verdict) -> None:
    doc.add("## Prediction 3: recursive stability", "")
    for (config, lam, replacement, _), table in stability_table(runs).items():
        if not table:
            continue
        name = describe_group(config, λ=lam, replacement=replacement)
        doc.figure(figures.stability_figure(table, doc.figure_path("stability"), name),
                   f"gamma against generation and n, {name}")
    _verdict_section(doc, p3)


def _decay_section(doc: _Doc, runs: list[RunResult], p4: Verdict) -> None:
    doc.add("## Prediction 4: error decay against n", "",
            "Final-generation metric against n (grey: seeds), the fitted power law with its "
            "interval, the bound's shape c1 n^-1 log^2 n + c2 n^-1/2 log n + c3 n^-1/4 fitted "
            "with c >= 0, and n^-1/4 for reference.", "")
    for run in runs:
        if run.decay is not None and run.decay.get("per_n"):
            try:
                path = figures.decay_figure(run.decay, doc.figure_path("decay"))
            except (KeyError, TypeError, ValueError) as err:  # a decay.json of another version
                log.warning("no decay figure for %s: %s", run.path, err)
                continue
            doc.figure(path, f"decay, {run.config or run.path.name}")
    _verdict_section(doc, p4)


def _augmentation_section(doc: _Doc, records: list[dict], p5: Verdict) -> None:
    doc.add("## Prediction 5: augmentation", "")
    for (config, lam), recs in group_by(records, lambda r: (r["config"],
                                                            r["real_fraction"])).items():
        curves = {n: c for n, c in risk_against_m(recs).items() if len(c["ms"]) >= 2}
        if curves:
            name = describe_group(config, λ=float(lam))
            doc.figure(figures.augmentation_figure(curves, doc.figure_path("augmentation"),
                                                   name), f"risk against m, {name}")
    _verdict_section(doc, p5)


def _summary_table(doc: _Doc, records: list[dict], runs: list[RunResult]) -> None:
    """One row per (configuration, n, m, lambda): what a modes or architectures sweep compares."""
    doc.add("## All loops at a glance", "",
            "Generation-0 and final test risk (mean over seeds) of every loop group; with "
            "stability runs, gamma_mean at their last generation.", "")
    rows = []
    key = lambda r: (r["config"], r["n"], r.get("augment", 0), r["real_fraction"])  # noqa: E731
    for (config, n, m, lam), recs in group_by(records, key).items():
        start, last = (f(r["generation"] for r in recs) for f in (min, max))
        first = float(np.mean([r["test_risk"] for r in recs if r["generation"] == start]))
        final = float(np.mean([r["test_risk"] for r in recs if r["generation"] == last]))
        rows.append([config or "-", n, m, f"{lam:g}", f"{start}-{last}", fmt(first), fmt(final),
                     fmt(final / first) if first else "n/a"])
    doc.table(["configuration", "n", "m", "λ", "generations", "first risk", "final risk",
               "final / first"], rows)
    gammas = []
    for (config, lam, replacement, _), table in stability_table(runs).items():
        for n in sorted({n for n, _ in table}):
            g = max(g for m, g in table if m == n)
            gammas.append([config or "-", n, f"{lam:g}", replacement, g,
                           fmt(table[(n, g)]["gamma_mean"]), fmt(table[(n, g)]["gamma_max"])])
    if gammas:
        doc.table(["configuration", "n", "λ", "replacement", "generation", "gamma_mean",
                   "gamma_max"], gammas)


def _ridge_section(doc: _Doc, rows: list[dict]) -> None:
    doc.add("## Does generation 0 reach the ridge baseline?", "",
            f"Criterion: generation-0 excess risk over ridge (Bayes-optimal) at most "
            f"{RIDGE_TOLERANCE:.0%} of the gap between the zero predictor and ridge, for every "
            "seed. Full-size presets are sized to meet it.", "")
    if not rows:
        doc.add("No loop records.", "")
        return
    missed = sum(r["ok"] is False for r in rows)
    doc.add(f"**{missed} of {len(rows)} groups did not reach it: their verdicts are about an "
            "under-trained learner.**" if missed else "Every group reached it.", "")
    doc.table(["group", "seeds", "ridge risk", "gen-0 excess", "allowed", "reached"],
              [[r["group"] or "(all)", r["seeds"], fmt(r["ridge"]), fmt(r["excess"]),
                fmt(r["allowed"]), {True: "yes", False: "no", None: "n/a"}[r["ok"]]]
               for r in rows])


def _in_context_section(doc: _Doc, runs: list[RunResult]) -> None:
    found = [r for r in runs if r.in_context is not None and r.in_context.get("generations")]
    if not found:
        return
    doc.add("## In-context stability (Li et al. 2023)", "",
            "Mean |loss(P') - loss(P)| at each position after the first example is flipped; an "
            "algorithm stable in context lets it fade with position (negative slope).", "")
    for run in found:
        name = run.config or run.path.name
        doc.figure(figures.in_context_figure(run.in_context, doc.figure_path("in_context"),
                                             name), f"in-context stability, {name}")
        doc.table(["n", "generation", "slope against position", "interval"],
                  [[r["n"], r["generation"], fmt((r.get("linear_fit") or {}).get("slope")),
                    fmt((r.get("linear_fit") or {}).get("ci_low")) + " .. "
                    + fmt((r.get("linear_fit") or {}).get("ci_high"))]
                   for r in run.in_context["generations"]])


def write_report(paths: list[Path], out_dir: Path) -> ReportResult:
    """Read everything under `paths`; write REPORT.md, verdicts.json and figures/ in out_dir."""
    runs = load_runs(paths)
    if not runs:
        raise FileNotFoundError(f"no summary.json, stability.json, decay.json or in_context.json "
                                f"under {[str(p) for p in paths]}")
    out_dir.mkdir(parents=True, exist_ok=True)
    records = loop_records(runs)
    verdicts = [verdict_p1(records), verdict_p2(records), verdict_p3(runs), verdict_p4(runs),
                verdict_p5(records)]
    doc = _Doc(out_dir)
    failed = [r for r in runs if r.error is not None]
    doc.add("# icl-stl report", "",
            f"Read {len(runs)} run directories under {', '.join(str(p) for p in paths)}: "
            f"{sum(r.summary is not None for r in runs)} loops, "
            f"{sum(r.stability is not None for r in runs)} stability, "
            f"{sum(r.decay is not None for r in runs)} decay and "
            f"{sum(r.in_context is not None for r in runs)} in-context probes; "
            f"{len(failed)} failed job(s).", "")
    for r in failed:
        doc.add(f"- failed: `{r.path}`: {r.error.get('error', '?')}")
    doc.add("", "## Verdicts", "")
    doc.table(["#", "prediction", "verdict", "numbers behind it"],
              [[v.prediction, v.statement, f"**{v.verdict}**", v.numbers] for v in verdicts])
    ridge_rows = ridge_check(records)
    if ridge_rows:
        reached = sum(r["ok"] is True for r in ridge_rows)
        doc.add(f"Generation 0 reached the ridge baseline (within {RIDGE_TOLERANCE:.0%} of the "
                f"zero-to-ridge gap) in {reached} of {len(ridge_rows)} loop groups; see below.",
                "")
    doc.add("### How the verdicts are computed", "", COMBINE_RULE.strip(), "",
            "The theorem's setting: " + ", ".join(f"{k}={v}" for k, v in THEOREM_SETTING.items())
            + f". Intervals are {LEVEL:.0%} Student-t; negligible growth = "
            f"{NEGLIGIBLE_GROWTH:g} of the level per generation.", "")
    doc.add(*(f"- **P{v.prediction}.** {v.rule}" for v in verdicts), "")
    _ridge_section(doc, ridge_rows)
    _loop_sections(doc, runs, records, verdicts[0], verdicts[1])
    _stability_section(doc, runs, verdicts[2])
    _decay_section(doc, runs, verdicts[3])
    _augmentation_section(doc, records, verdicts[4])
    _summary_table(doc, records, runs)
    _in_context_section(doc, runs)
    path = out_dir / "REPORT.md"
    path.write_text("\n".join(doc.lines) + "\n")
    atomic_write_json(out_dir / "verdicts.json", {
        "verdicts": {str(v.prediction): {"verdict": v.verdict, "numbers": v.numbers,
                                         "rule": v.rule,
                                         "groups": [dataclasses.asdict(g) for g in v.groups]}
                     for v in verdicts},
        "runs": [str(r.path) for r in runs], "failed": [str(r.path) for r in failed]})
    return ReportResult(path, {v.prediction: v.verdict for v in verdicts}, doc.figures)


def verdicts_of(out_dir: Path) -> dict[int, str]:
    """The verdicts a written report holds (verdicts.json), keyed by prediction."""
    data = json.loads((Path(out_dir) / "verdicts.json").read_text())
    return {int(k): v["verdict"] for k, v in data["verdicts"].items()}
