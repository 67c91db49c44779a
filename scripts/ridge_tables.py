"""Markdown tables for BENCHMARKS.md from committed `icl-stl-bench --suite ridge|ablation|head`
JSON.

    .venv/bin/python scripts/ridge_tables.py docs/bench/ridge-*.json docs/bench/ablation-*.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def outcome(run: dict) -> str:
    if run["reached"]:
        return f"**{run['steps']:,} steps, {run['seconds']:.1f} s**"
    return (f"not in {run['steps_run']:,} steps / {run['seconds_run']:.0f} s "
            f"(best risk {run['best_risk']:.3f}; the last evaluation closed "
            f"{100 * run['gap_closed']:.0f}% of the gap)")


def ridge_table(runs: list[dict]) -> list[str]:
    lines = ["| case | data | ridge / zero / threshold | default recipe | Garg et al.'s recipe |",
             "| --- | --- | --- | --- | --- |"]
    keys = sorted({(r["case"], r["data"], r["seed"]) for r in runs},
                  key=lambda key: (["demo", "tiny", "small"].index(key[0]), key[1], key[2]))
    for case, data, seed in keys:
        pair = {r["recipe"]: r for r in runs
                if (r["case"], r["data"], r["seed"]) == (case, data, seed)}
        any_run = next(iter(pair.values()))
        risks = (f"{any_run['ridge_risk']:.3f} / {any_run['zero_risk']:.3f} / "
                 f"{any_run['threshold']:.3f}")
        label = "fresh prompts" if data == "fresh" else "S_0, n = 2,000"
        cells = [outcome(pair[recipe]) if recipe in pair else "-" for recipe in ("default", "garg")]
        lines.append(f"| {case} (seed {seed}) | {label} | {risks} | {cells[0]} | {cells[1]} |")
    return lines


def ablation_table(runs: list[dict]) -> list[str]:
    seeds = sorted({r["seed"] for r in runs})
    lines = ["| change | " + " | ".join(f"seed {s}" for s in seeds) + " |",
             "| --- |" + " --- |" * len(seeds)]
    for change in dict.fromkeys(r["change"] for r in runs):
        by_seed = {r["seed"]: r for r in runs if r["change"] == change}
        lines.append(f"| {change} | " + " | ".join(outcome(by_seed[s]) for s in seeds) + " |")
    return lines


def main(paths: list[str]) -> None:
    for path in paths:
        result = json.loads(Path(path).read_text())
        command = result["command"]
        command = " & ".join(command) if isinstance(command, list) else command
        print(f"<!-- {path}: {command} ({result['date']}, {result['machine']['threads']}"
              f" thread(s), torch {result['machine']['torch']}) -->")
        table = ridge_table if result["suite"] == "ridge" else ablation_table
        print("\n".join(table(result["runs"])) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
