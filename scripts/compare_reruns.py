"""How far two runs of the same loops agree: the same seeds and settings, trained twice (on two
machines, say), compared record by record.

    .venv/bin/python scripts/compare_reruns.py BEFORE/summary.json AFTER/summary.json ... \
        --json docs/results/cpu-v2/first-machine/agreement.json

The arguments are pairs (a run's summary.json before, the same run's after). For every generation
both record, per member: the relative difference of test risk and of excess risk, and per seed
the difference of the rules' statistic log(E / E_oracle) (the model-labelled loop against its
oracle-labelled twin, both in the run). The JSON holds each generation's median and largest.
One seed on two CPU models differs in the last digits of generation 0 (the compiled kernels
round differently) and the difference grows through training on sampled labels.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def records(summary: Path) -> dict[tuple[int, int], dict]:
    """(generation, member) -> record."""
    data = json.loads(summary.read_text())
    return {(r["generation"], r["member"]): r for r in data["generations"]}


def contrasts(recs: dict[tuple[int, int], dict], generation: int) -> dict[int, float]:
    """seed -> log(E_model / E_oracle) at `generation` (pairs within one run)."""
    by_seed: dict[int, dict[str, float]] = {}
    for (g, _), r in recs.items():
        if g == generation:
            by_seed.setdefault(r["seed"], {})[r.get("labeller", "model")] = r["excess_risk"]
    return {seed: math.log(e["model"] / e["oracle"]) for seed, e in by_seed.items()
            if {"model", "oracle"} <= set(e)}


def shown(path: Path) -> str:
    """`path` relative to the repository when it lies inside it (as the JSON records it)."""
    full = Path(path).resolve()
    return str(full.relative_to(REPO)) if full.is_relative_to(REPO) else str(path)


def summarise(values: list[float]) -> dict:
    a = np.abs(np.asarray(values, dtype=float))
    return {"median": float(np.median(a)), "max": float(a.max()), "n": int(a.size)}


def compare(pairs: list[tuple[Path, Path]]) -> dict:
    """Per generation both runs record: medians and maxima over every pair's members."""
    rows: dict[int, dict[str, list[float]]] = {}
    for before, after in pairs:
        a, b = records(before), records(after)
        for key in sorted(set(a) & set(b)):
            row = rows.setdefault(key[0], {"test_risk": [], "excess_risk": [],
                                           "contrast": []})
            for field in ("test_risk", "excess_risk"):
                row[field].append((b[key][field] - a[key][field]) / a[key][field])
        for g in {k[0] for k in set(a) & set(b)}:
            ca, cb = contrasts(a, g), contrasts(b, g)
            rows[g]["contrast"] += [cb[s] - ca[s] for s in sorted(set(ca) & set(cb))]
    return {"pairs": [[shown(p), shown(q)] for p, q in pairs],
            "generations": {str(g): {
                "test_risk_relative": summarise(row["test_risk"]),
                "excess_risk_relative": summarise(row["excess_risk"]),
                "log_contrast_difference": summarise(row["contrast"])}
                for g, row in sorted(rows.items())}}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("summaries", nargs="+", type=Path,
                   help="BEFORE AFTER pairs of summary.json")
    p.add_argument("--json", type=Path, default=None, help="write the comparison here")
    args = p.parse_args(argv)
    if len(args.summaries) % 2:
        p.error(f"summaries come in BEFORE AFTER pairs, got {len(args.summaries)} paths")
    missing = [str(s) for s in args.summaries if not s.exists()]
    if missing:
        p.error(f"no such summary.json: {missing[0]}")
    pairs = list(zip(args.summaries[::2], args.summaries[1::2]))
    result = compare(pairs)
    for g, row in result["generations"].items():
        print(f"generation {g}: " + "; ".join(
            f"{name} median {v['median']:.2g}, largest {v['max']:.2g} (n = {v['n']})"
            for name, v in row.items()))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
