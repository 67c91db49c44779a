"""Collect generation-0 gate scans (runs of `icl-stl-loop ... loop.generations=0`) into one JSON.

    .venv/bin/python scripts/collect_gate_scan.py outputs/scan_d3 outputs/scan_d3_10k ... \
        --out docs/bench/gate-scan-d3-cpu-2026-12-06.json

For each run directory (the Hydra run dir, holding summary.json, timing.json and
.hydra/overrides.yaml): its overrides (the recipe), and per member its seed, n, the share of
the zero-to-ridge gap its generation 0 closed, whether it passed the 90% gate, its test and
ridge risk, its excess over the Bayes predictor, and the run's wall time and members. This is
how the second setting's recipe was chosen (BENCHMARKS.md, "The second setting: time to the
gate").
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
from pathlib import Path

import yaml


def scan_row(run_dir: Path) -> dict:
    summary = json.loads((run_dir / "summary.json").read_text())
    timing = json.loads((run_dir / "timing.json").read_text())
    overrides = yaml.safe_load((run_dir / ".hydra" / "overrides.yaml").read_text())
    recipe = [o for o in overrides if not o.startswith(("run.", "hydra."))]
    gen0 = [g for g in summary["generations"] if g["generation"] == 0]
    return {"run": run_dir.parent.name, "overrides": recipe,
            "steps": gen0[0]["steps"], "seconds": timing["generations"][0]["seconds"],
            "members": len(gen0), "code": summary.get("code"),
            "loops": [{"seed": g["seed"], "n": g["n"], "gap_closed": g["gap_closed"],
                       "reached_ridge": g["reached_ridge"], "test_risk": g["test_risk"],
                       "ridge_risk": g["ridge_risk"], "bayes_excess": g["bayes_excess"]}
                      for g in gen0]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="scan directories (holding run/)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout
    data = {"machine": platform.processor() or platform.machine(), "collected_at_commit":
            commit.strip(), "scans": [scan_row(d / "run" if (d / "run").is_dir() else d)
                                      for d in args.runs]}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(data, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
