"""The README's Results table, printed from a committed report's verdicts.json.

    .venv/bin/python scripts/results_table.py docs/results/cpu

One row per prediction: its verdict, the primary group it was read in, and the report's own
line of numbers for that group. tests/test_documented_results.py checks that every row printed
here appears verbatim in README.md, so the README cannot quote a verdict or a number the
committed result does not hold.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def results_table(results: Path) -> list[str]:
    verdicts = json.loads((Path(results) / "verdicts.json").read_text())["verdicts"]
    lines = ["| prediction | verdict | primary group | what the data show |",
             "| --- | --- | --- | --- |"]
    for key in sorted(verdicts, key=int):
        v = verdicts[key]
        numbers = (v.get("numbers") or "no data").replace("|", "/")
        lines.append(f"| P{key}: {v['statement']} | **{v['verdict']}** | "
                     f"{v.get('primary_group') or '-'} | {numbers} |")
    return lines


def gate_line(results: Path) -> str:
    gate = json.loads((Path(results) / "verdicts.json").read_text())["ridge_gate"]
    return (f"Training gate: generation 0 reached ridge in {gate['reached']} of "
            f"{gate['groups']} groups.")


if __name__ == "__main__":
    folder = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/results/cpu")
    print("\n".join(results_table(folder)))
    print()
    print(gate_line(folder))
