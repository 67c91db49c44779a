"""REPORT.md as it is written: markdown lines, tables, figures, and a prediction's group table.

A section writes into a `Document`; figures are drawn through it, so a report written without
figures (`Document(out_dir, figures=False)`) computes the same verdicts and skips only the
drawing.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from icl_stl.report.verdict import Prediction, fmt, fmt_ci


class Document:
    """Markdown lines plus the figures they reference (paths relative to the report)."""

    def __init__(self, out_dir: Path, figures: bool = True):
        self.out_dir, self.draws_figures = out_dir, figures
        self.lines: list[str] = []
        self.figures: list[Path] = []
        if figures:
            (out_dir / "figures").mkdir(parents=True, exist_ok=True)

    def add(self, *lines: str) -> None:
        self.lines.extend(lines)

    def figure(self, stem: str, caption: str, draw: Callable[[Path], Path | None]) -> None:
        """Draw a figure into figures/<stem>_NN.png and reference it; `draw(path)` returns the
        path written, or None when there is nothing to draw (then nothing is referenced)."""
        if not self.draws_figures:
            return
        path = draw(self.out_dir / "figures" / f"{stem}_{len(self.figures) + 1:02d}.png")
        if path is None:
            return
        self.figures.append(path)
        self.add(f"![{caption}]({path.relative_to(self.out_dir).as_posix()})", "")

    def table(self, header: list[str], rows: list[list]) -> None:
        self.add("| " + " | ".join(header) + " |", "|" + "---|" * len(header))
        self.add(*("| " + " | ".join(str(c).replace("|", "/") for c in row) + " |"
                   for row in rows))
        self.add("")

    def verdict_table(self, pred: Prediction) -> None:
        """A prediction's primary group and one row per group: verdict, gate and numbers."""
        if not pred.groups:
            self.add(f"Prediction {pred.number}: not tested (no run holds its data).", "")
            return
        self.add(f"Primary group: **{pred.primary or 'none'}** (rule: {pred.primary_rule}).",
                 "")
        self.table(["group", "verdict", "counted", "gate reached (gap closed)", "seeds",
                    "estimate", "interval", "margin", "MDE", "p refute (Holm)", "numbers"],
                   [[g.group or "(all)", g.verdict, "yes" if g.counted else "no",
                     gate_text(g.gate), g.n_seeds, fmt(g.estimate),
                     fmt_ci(g.interval) if g.interval else "n/a", fmt(g.margin),
                     fmt(g.min_detectable_effect),
                     f"{fmt(g.p_refute, 2)} ({fmt(g.p_refute_holm, 2)})", g.numbers]
                    for g in pred.groups])

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def gate_text(gate: dict | None) -> str:
    """"yes (0.95 at n=10000)": whether a group's generation 0 passed the training gate;
    "4 of 5 loops (min 0.895 at n=10000)" for a gate per loop (`gating.split_by_gate`)."""
    if gate and "loops" in gate and "loops_reached" in gate:
        if not gate["loops"] or gate["loops_unchecked"] == gate["loops"]:
            return "n/a"
        return (f"{gate['loops_reached']} of {gate['loops']} loops (min "
                f"{fmt(gate['gap_closed_min'], 3)} at n={gate['n']})")
    if not gate or gate.get("gap_closed") is None:
        return "n/a"
    return f"{'yes' if gate['reached'] else 'no'} ({fmt(gate['gap_closed'], 2)} at n={gate['n']})"
