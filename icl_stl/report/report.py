"""REPORT.md from run and sweep directories: figures, and a verdict on each prediction.

    write_report([Path("multirun/loop/2025-01-01")], out_dir=Path("report"))

reads every summary.json / stability.json / decay.json / in_context.json (and error.json of
failed sweep jobs) under the given paths, writes figures/*.png, runs.csv (every loop record,
`tidy`), verdicts.json (numbers: per
prediction its verdict, estimate, interval, margin, seeds, minimum detectable effect and
groups; the training gate's counts) and REPORT.md, which states for each prediction of
docs/THEORY.md the verdict, the numbers behind it and, verbatim, the rule that produced it
(`rules`, `stats`, `loop_verdicts` for P1-P2, `probe_verdicts` for P3, `decay_verdicts` for P4,
`augment_verdicts` for P5, `extension_verdicts` for P6-P8).
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import numpy as np

from icl_stl.persistence import atomic_write_json
from icl_stl.report import fidelity_section, figures, tidy
from icl_stl.report.augment_verdicts import risk_against_m, verdict_p5
from icl_stl.report.collect import (
    THEOREM_SETTING,
    RunResult,
    load_runs,
    loop_records,
    settings_by_path,
    stability_records,
)
from icl_stl.report.decay_verdicts import bound_envelope, decay_table, p4_core, verdict_p4
from icl_stl.report.extension_verdicts import extension_verdicts, write_sections
from icl_stl.report.loop_verdicts import ridge_check, verdict_p1, verdict_p2
from icl_stl.report.probe_verdicts import stability_groups, stability_table, verdict_p3
from icl_stl.report.rules import (
    Prediction,
    ReportConfig,
    describe_group,
    fmt,
    fmt_ci,
    group_by,
)

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
primary group that does not survive reads inconclusive). A group whose generation 0 missed the
training gate is not applicable."""


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


def _gate_text(gate: dict | None) -> str:
    if not gate or gate.get("gap_closed") is None:
        return "n/a"
    return f"{'yes' if gate['reached'] else 'no'} ({fmt(gate['gap_closed'], 2)} at n={gate['n']})"


def _verdict_section(doc: _Doc, pred: Prediction) -> None:
    if not pred.groups:
        doc.add(f"Prediction {pred.number}: not tested (no run holds its data).", "")
        return
    doc.add(f"Primary group: **{pred.primary or 'none'}** (rule: {pred.primary_rule}).", "")
    doc.table(["group", "verdict", "counted", "gate reached (gap closed)", "seeds", "estimate",
               "interval", "margin", "MDE", "p refute (Holm)", "numbers"],
              [[g.group or "(all)", g.verdict, "yes" if g.counted else "no", _gate_text(g.gate),
                g.n_seeds, fmt(g.estimate), fmt_ci(g.interval) if g.interval else "n/a",
                fmt(g.margin), fmt(g.min_detectable_effect),
                f"{fmt(g.p_refute, 2)} ({fmt(g.p_refute_holm, 2)})", g.numbers]
               for g in pred.groups])


def _loop_sections(doc: _Doc, runs: list[RunResult], records: list[dict],
                   p1: Prediction, p2: Prediction) -> None:
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
    doc.add("### Prediction 2, heuristic: larger lambda, lower plateau", "")
    order = p2.sub["ordering"]
    if order.groups:
        _verdict_section(doc, order)
    else:
        doc.add("Not tested: no group has two or more lambda > 0.", "")


def _stability_section(doc: _Doc, stab: list[dict], p3: Prediction) -> None:
    doc.add("## Prediction 3: recursive stability", "",
            "gamma (mean over each seed's replaced indices) beside its chaos ceiling: the same "
            "S_0 trained with another batch order. Only gamma clearly below the ceiling "
            "measures one prompt's effect.", "")
    rows = []
    for (config, lam, replacement, _), recs in stability_groups(stab).items():
        table = stability_table(recs)
        if not table:
            continue
        name = describe_group(config, λ=lam, replacement=replacement)
        doc.figure(figures.stability_figure(table, doc.figure_path("stability"), name),
                   f"gamma against generation and n, {name}")
        for (n, g), row in sorted(table.items()):
            rows.append([name or "(all)", n, g, row["n_seeds"], fmt(row.get("gamma_mean")),
                         fmt(row.get("gamma_max")), fmt(row.get("chaos_gamma_mean")),
                         fmt(row.get("gamma_ratio"))])
    if rows:
        doc.table(["group", "n", "generation", "seeds", "gamma_mean", "gamma_max",
                   "chaos ceiling (gamma_mean)", "gamma / ceiling"], rows)
    _verdict_section(doc, p3)


def _decay_section(doc: _Doc, runs: list[RunResult], p4: Prediction,
                   cfg: ReportConfig) -> None:
    doc.add("## Prediction 4: error decay against n", "",
            f"Final-generation {cfg.p4_metric} against n (grey: seeds), the fit E_inf + A n^b "
            "with its bootstrap interval, the bound's shape c1 n^-1 log^2 n + c2 n^-1/2 log n + "
            "c3 n^-1/4 (c >= 0) as a descriptive envelope over seed-bootstrap resamples (its "
            "coefficients are not identified), and n^-1/4 for reference.", "")
    for g, group_runs in zip(p4.groups, _decay_runs(runs)):
        run = group_runs[0]
        ns, seeds, values, _ = decay_table(loop_records(group_runs), cfg.p4_metric)
        keep = (g.parts.get("range") or {}).get("ns") or ns
        cols = [ns.index(n) for n in keep if n in ns]
        if len(cols) < 3 or len(seeds) < 1:
            continue
        values = values[:, cols]
        try:
            rng = np.random.default_rng(cfg.bootstrap_seed)
            fit = p4_core(values, keep, cfg, rng)
            envelope = bound_envelope(keep, values, np.asarray(fit["weights"]), cfg)
            path = figures.decay_figure(keep, values, fit, doc.figure_path("decay"),
                                        g.group or run.path.name, cfg.p4_metric, envelope)
        except (ValueError, FloatingPointError) as err:
            log.warning("no decay figure for %s: %s", run.path, err)
            continue
        doc.figure(path, f"decay, {g.group or run.path.name}")
    _verdict_section(doc, p4)


def _decay_runs(runs: list[RunResult]) -> list[list[RunResult]]:
    """The decay runs of each P4 group, in the groups' order."""
    decays = [r for r in runs if r.decay is not None]
    grouped = group_by(decays, lambda r: (r.config, float(r.decay.get("real_fraction",
                                                                      float("nan"))),
                                          r.in_theorem_setting))
    return list(grouped.values())


def _augmentation_section(doc: _Doc, records: list[dict], p5: Prediction) -> None:
    doc.add("## Prediction 5: augmentation", "")
    for (config, lam), recs in group_by(records, lambda r: (r["config"],
                                                            r["real_fraction"])).items():
        curves = {n: c for n, c in risk_against_m(recs).items() if len(c["ms"]) >= 2}
        if curves:
            name = describe_group(config, λ=float(lam))
            doc.figure(figures.augmentation_figure(curves, doc.figure_path("augmentation"),
                                                   name), f"risk against m, {name}")
    _verdict_section(doc, p5)


def _summary_table(doc: _Doc, records: list[dict]) -> None:
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


def _ridge_section(doc: _Doc, rows: list[dict], cfg: ReportConfig) -> None:
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


def _settings_table(doc: _Doc, cfg: ReportConfig) -> None:
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


def write_report(paths: list[Path], out_dir: Path,
                 cfg: ReportConfig | None = None) -> ReportResult:
    """Read everything under `paths`; write REPORT.md, verdicts.json and figures/ in out_dir."""
    cfg = cfg or ReportConfig()
    cfg.validate()
    runs = load_runs(paths)
    if not runs:
        raise FileNotFoundError(f"no summary.json, stability.json, decay.json or in_context.json "
                                f"under {[str(p) for p in paths]}")
    out_dir.mkdir(parents=True, exist_ok=True)
    records = loop_records(runs)
    stab = stability_records(runs)
    settings = settings_by_path(runs)
    preds = [verdict_p1(records, cfg), verdict_p2(records, cfg), verdict_p3(stab, runs, cfg),
             verdict_p4(runs, cfg), verdict_p5(records, cfg),
             *extension_verdicts(records, settings, cfg)]
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
    doc.table(["#", "prediction", "verdict", "primary group", "estimate [interval]", "margin",
               "seeds", "MDE", "reading / numbers"], _headline_rows(preds))
    ridge_rows = ridge_check(records, cfg)
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
    _loop_sections(doc, runs, records, preds[0], preds[1])
    _stability_section(doc, stab, preds[2])
    _decay_section(doc, runs, preds[3], cfg)
    _augmentation_section(doc, records, preds[4])
    write_sections(doc, records, settings, preds[5:8], _verdict_section)
    _summary_table(doc, records)
    _in_context_section(doc, runs)
    tidy.write_csv(tidy.tidy_rows(records, settings), out_dir / "runs.csv")
    doc.add("", "Every loop record as one table (one row per loop and generation): "
            "`runs.csv`.")
    path = out_dir / "REPORT.md"
    path.write_text("\n".join(doc.lines) + "\n")
    atomic_write_json(out_dir / "verdicts.json", {
        "verdicts": {str(p.number): p.to_json() for p in preds},
        "ridge_gate": {"groups": len(ridge_rows),
                       "reached": sum(r["reached"] is True for r in ridge_rows),
                       "tolerance": cfg.gate_tolerance,
                       "rows": [{k: (None if isinstance(v, float) and not np.isfinite(v) else v)
                                 for k, v in r.items()} for r in ridge_rows]},
        "settings": cfg.to_dict(), "verdict_meanings": VERDICT_MEANINGS,
        "runs": [str(r.path) for r in runs], "failed": [str(r.path) for r in failed]})
    return ReportResult(path, {p.number: p.verdict for p in preds}, doc.figures)


def verdicts_of(out_dir: Path) -> dict[int, str]:
    """The verdicts a written report holds (verdicts.json), keyed by prediction."""
    data = json.loads((Path(out_dir) / "verdicts.json").read_text())
    return {int(k): v["verdict"] for k, v in data["verdicts"].items()}
