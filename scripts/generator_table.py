"""README tables of the generator run (docs/results/generator-cpu) from its committed summaries.

    .venv/bin/python scripts/generator_table.py docs/results/generator-cpu

Prints (1) mean test risk over seeds per generation for each generator and lambda, and (2)
generation 1's synthetic/real label-variance ratio per position (min..max over seeds).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

GENERATORS = (("model", "model (predictive sampling)"), ("oracle", "oracle (control)"))


def load(results: Path) -> dict[str, list[dict]]:
    """generator -> the loop records of its run."""
    return {name: json.loads((results / "runs" / name / "summary.json").read_text())
            ["generations"] for name, _ in GENERATORS}


def risk_table(records: dict[str, list[dict]]) -> list[str]:
    columns = [(name, label, lam) for name, label in GENERATORS
               for lam in sorted({r["real_fraction"] for r in records[name]})]
    lines = ["| generation | " + " | ".join(f"{label}, λ = {lam:g}" for _, label, lam in columns)
             + " |", "| ---: |" + " ---: |" * len(columns)]
    generations = sorted({r["generation"] for r in records["model"]})
    for g in generations:
        cells = []
        for name, _, lam in columns:
            risks = [r["test_risk"] for r in records[name]
                     if r["generation"] == g and r["real_fraction"] == lam]
            cells.append(f"{np.mean(risks):.3f}")
        lines.append(f"| {g} | " + " | ".join(cells) + " |")
    return lines


def ratio_table(records: dict[str, list[dict]], generation: int = 1) -> list[str]:
    k = len(records["model"][0]["test_risk_per_position"])
    lines = ["| generator | " + " | ".join(f"y_{j}" for j in range(1, k + 1)) + " |",
             "| --- |" + " ---: |" * k]
    for name, label in GENERATORS:
        rows = np.array([r["syn_label_var_ratio_per_position"] for r in records[name]
                         if r["generation"] == generation])
        cells = [f"{lo:.2f}-{hi:.2f}" for lo, hi in zip(rows.min(0), rows.max(0))]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines


def main(path: str) -> None:
    records = load(Path(path))
    print("\n".join(risk_table(records)) + "\n")
    print("\n".join(ratio_table(records)))


if __name__ == "__main__":
    main(sys.argv[1])
