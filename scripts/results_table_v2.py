"""The confirmatory reproduction's Results table, printed from a version-2 verdicts.json.

    .venv/bin/python scripts/results_table_v2.py docs/results/cpu-v2

One row per prediction: what it claims, its verdict, the group it was read in and one reading
whose every number is formatted from verdicts.json (the estimate, its 90% interval, the margin,
the seeds read and the minimum detectable effect; or why it was not tested, not run or is not
testable). `--report-only` writes it into the results folder's README between two markers
(`refresh_readme`), and tests/system/test_cpu_v2_results.py checks the README holds exactly
these lines, so the table cannot quote a number the committed verdicts do not hold. An interim
report's rows say what each prediction still needs.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

from readme_markers import replace_between

BEGIN = "<!-- results table: begin (scripts/results_table_v2.py) -->"
END = "<!-- results table: end -->"

CLAIMS = {
    "1": "λ = 0: excess risk grows against the oracle twin",
    "2": "λ > 0: it stays bounded against the twin",
    "3": "recursive stability shrinks with n",
    "4": "error decays at least as n^-1/4",
    "5": "an interior optimum m*",
    "6": "a filter that keeps the spread prevents collapse",
    "7": "decaying λ acts like its floor",
    "8": "M ≤ d tracks dMMSE, drifts apart",
    "9": "accumulation with S_0 kept stays bounded",
    "10": "an interior optimum of the real weight",
}


def _num(x: float) -> str:
    return f"{x:.3g}" if math.isfinite(x) else "n/a"


def reading(v: dict) -> str:
    if v["verdict"] in ("not testable", "not run"):
        return v["why"]
    if v.get("rules_version") == "v1":
        return "no version-2 rule: read in the exploratory reproduction only"
    if v.get("estimate") is None:
        numbers = v.get("numbers") or "no run holds the data"
        group = v.get("primary_group")
        if group and numbers.startswith(f"primary group {group}: "):
            numbers = numbers[len(f"primary group {group}: "):]
        design = v.get("design")
        if design and "min_detectable_effect" not in design:  # not planned (P9's, no pilot)
            return numbers + f"; the design reads {design['seeds']} seeds (MDE not planned)"
        return numbers + (f"; the design reads {design['seeds']} seeds (MDE "
                          f"{_num(design['min_detectable_effect'])})" if design else "")
    low, high = v["interval"]
    text = (f"{v['statistic']} {_num(v['estimate'])} [{_num(low)}, {_num(high)}] against "
            f"{_num(v['margin'])}, {v['n_seeds']} seeds")
    mde = v.get("min_detectable_effect")
    return text + (f", MDE {_num(mde)}" if mde is not None else "")


def results_table(folder: Path) -> list[str]:
    verdicts = json.loads((folder / "verdicts.json").read_text())["verdicts"]
    lines = ["| | prediction | verdict | group | reading |", "| --- | --- | --- | --- | --- |"]
    for number in sorted(verdicts, key=int):
        v = verdicts[number]
        group = v.get("primary_group") or ""
        lines.append(f"| P{number} | {CLAIMS.get(number, v.get('statement', ''))} | "
                     f"**{v['verdict']}** | {group} | {reading(v).replace('|', '/')} |")
    return lines


def refresh_readme(readme: Path, folder: Path) -> bool:
    """Replace the table between the markers; False (nothing written) when they are absent."""
    return replace_between(readme, BEGIN, END, results_table(folder))


if __name__ == "__main__":
    if len(sys.argv) != 2 or not (Path(sys.argv[1]) / "verdicts.json").exists():
        print("usage: results_table_v2.py RESULTS_FOLDER (holding verdicts.json)",
              file=sys.stderr)
        raise SystemExit(2)
    print("\n".join(results_table(Path(sys.argv[1]))))
