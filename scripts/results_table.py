"""The README's Results table, printed from a committed report's verdicts.json.

    .venv/bin/python scripts/results_table.py docs/results/cpu

One row per prediction: its verdict, the primary group it was read in, and the report's own
line of numbers for that group. tests/system/test_documented_results.py checks that every row printed
here appears verbatim in README.md, so the README cannot quote a verdict or a number the
committed result does not hold.

    .venv/bin/python scripts/results_table.py docs/results/cpu docs/results/generator-cpu

With a second folder it also prints the two training regimes side by side: the reproduction's
warm-started generations against the generator run's generations trained from scratch, on the
seeds and lambdas both hold.
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
    """The gate's count, and the n of every group that missed it (such a group is "not
    applicable" for the predictions judged per group)."""
    gate = json.loads((Path(results) / "verdicts.json").read_text())["ridge_gate"]
    line = (f"Training gate: generation 0 reached ridge in {gate['reached']} of "
            f"{gate['groups']} groups.")
    missed = sorted({row["n"] for row in gate["rows"] if not row["reached"]})
    if missed:
        line += (f" The groups that missed it are at n = {', '.join(f'{n:,}' for n in missed)}"
                 ".")
    return line


def _risk_by(summary: Path) -> tuple[dict, dict]:
    """({(seed, lambda, generation): test risk} at the largest n, the training settings)."""
    data = json.loads(Path(summary).read_text())
    records = data["generations"]
    n = max(r["n"] for r in records)
    risk = {(r["seed"], r["real_fraction"], r["generation"]): r["test_risk"]
            for r in records if r["n"] == n and r.get("augment", 0) == 0}
    return risk, data["settings"]


def _regime(settings: dict) -> str:
    train, loop = settings["train"], settings["loop"]
    if loop["init"] == "warm_start":
        return (f"warm start: generation 0 {train['steps']:,} steps, then {loop['steps']} "
                f"per generation (batch {train['batch_size']})")
    return f"from scratch: {train['steps']:,} steps per generation (batch {train['batch_size']})"


def regimes_table(warm: Path, scratch: Path) -> list[str]:
    """Mean test risk over the shared seeds at generation 0 and at the last generation both
    runs reached, per lambda both hold: one row per (regime, lambda)."""
    (w, w_set), (s, s_set) = (_risk_by(Path(f) / "runs" / sub / "summary.json")
                              for f, sub in ((warm, "collapse"), (scratch, "model")))
    keys = {(seed, lam) for seed, lam, _ in w} & {(seed, lam) for seed, lam, _ in s}
    seeds = sorted({seed for seed, _ in keys})
    last = min(max(g for *_, g in w), max(g for *_, g in s))
    lines = [f"| regime | λ | risk, generation 0 | risk, generation {last} | change |",
             "| --- | --- | --- | --- | --- |"]
    for risk, settings in ((w, w_set), (s, s_set)):
        for lam in sorted({lam for _, lam in keys}):
            first = sum(risk[(seed, lam, 0)] for seed in seeds) / len(seeds)
            end = sum(risk[(seed, lam, last)] for seed in seeds) / len(seeds)
            lines.append(f"| {_regime(settings)} | {lam:g} | {first:.3f} | {end:.3f} | "
                         f"{100 * (end / first - 1):+.0f}% |")
    lines.append(f"\nMeans over seeds {', '.join(map(str, seeds))} (the seeds both runs hold).")
    return lines


if __name__ == "__main__":
    folder = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/results/cpu")
    print("\n".join(results_table(folder)))
    print()
    print(gate_line(folder))
    if len(sys.argv) > 2:
        print()
        print("\n".join(regimes_table(folder, Path(sys.argv[2]))))
