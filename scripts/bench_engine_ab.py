"""The engine's speed against an older checkout: arms alternate in fresh processes, round by round.

    python scripts/bench_engine_ab.py --old ../wt-base --new . --rounds 8 \
        --out docs/bench/engine-ab-cpu-<date>.json

This machine's speed swings by 15% and more between minutes, so a ratio of two separate runs
says little. Here each round runs the old arm and the new arm back to back (their order
alternates), each in its own process with its checkout first on sys.path (the package is
installed editable, so without that both arms would import the same code), and the report is
the median over rounds of the per-round ratio, with a bootstrap interval. Each arm records the
module it imported and its commit. The new arm runs `runtime.compile` (with fused AdamW);
the old one the last landed commit's defaults. Whole training runs of a fresh model are timed
too: cold (the process's first, compile included) and warm (the next fresh model).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

ARM_SCRIPT = Path(__file__).resolve().parent / "bench_engine_arm.py"


def commit_of(root: Path) -> str:
    head = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
                          capture_output=True, text=True, check=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--",
                            "icl_stl"], capture_output=True, text=True, check=True).stdout
    return head + ("+uncommitted changes to icl_stl" if dirty.strip() else "")


def run_arm(root: Path, args: argparse.Namespace, compile_: bool) -> dict:
    env = dict(os.environ, PYTHONPATH=str(root), OMP_NUM_THREADS=str(args.threads))
    cmd = [sys.executable, str(ARM_SCRIPT), "--members", str(args.members), "--threads",
           str(args.threads), "--steps", str(args.steps), "--d", str(args.d), "--k", str(args.k),
           "--batch", str(args.batch)] + (["--compile"] if compile_ else [])
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
    result = json.loads(out.strip().splitlines()[-1])
    if not result["module"].startswith(str(root)):
        raise SystemExit(f"error: the arm at {root} imported {result['module']}")
    return result


def bootstrap_median_interval(values: list[float], draws: int = 10_000) -> list[float]:
    rng = random.Random(0)
    medians = sorted(statistics.median(rng.choices(values, k=len(values)))
                     for _ in range(draws))
    return [medians[int(0.025 * draws)], medians[int(0.975 * draws) - 1]]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--old", type=Path, required=True, help="checkout of the reference commit")
    ap.add_argument("--new", type=Path, default=Path("."), help="checkout under test")
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--members", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--d", type=int, default=2)
    ap.add_argument("--k", type=int, default=6)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    if args.rounds < 2:
        sys.exit(f"error: --rounds must be at least 2, got {args.rounds}")
    old, new = args.old.resolve(), args.new.resolve()
    arms = {"old": (old, False), "new": (new, True)}
    commits = {"old": commit_of(old), "new": commit_of(new)}  # before the rounds, as measured
    rounds = []
    for r in range(args.rounds):
        order = ["old", "new"] if r % 2 == 0 else ["new", "old"]
        row = {name: run_arm(arms[name][0], args, arms[name][1]) for name in order}
        row["ratio"] = row["new"]["member_steps_per_s"] / row["old"]["member_steps_per_s"]
        rounds.append(row)
        print(f"round {r + 1}: old {row['old']['member_steps_per_s']:.1f}, new "
              f"{row['new']['member_steps_per_s']:.1f} member steps/s, ratio {row['ratio']:.3f}",
              flush=True)
    ratios = [row["ratio"] for row in rounds]
    summary = {
        "command": " ".join([Path(sys.argv[0]).name] + sys.argv[1:]),
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "setting": {k: getattr(args, k) for k in ("members", "threads", "steps", "d", "k",
                                                   "batch")},
        "old": {"root": str(old), "commit": commits["old"], "options": "defaults",
                "module": rounds[0]["old"]["module"]},
        "new": {"root": str(new), "commit": commits["new"],
                "options": "runtime.compile=true runtime.fused_adam=true",
                "module": rounds[0]["new"]["module"]},
        "median_ratio": statistics.median(ratios),
        "ratio_interval_95": bootstrap_median_interval(ratios),
        "median_member_steps_per_s": {
            arm: statistics.median(row[arm]["member_steps_per_s"] for row in rounds)
            for arm in ("old", "new")},
        "median_cold_run_s": {arm: statistics.median(row[arm]["cold_run_s"] for row in rounds)
                              for arm in ("old", "new")},
        "median_warm_run_s": {arm: statistics.median(row[arm]["warm_run_s"] for row in rounds)
                              for arm in ("old", "new")},
        "rounds": rounds,
    }
    print(json.dumps({k: v for k, v in summary.items() if k != "rounds"}, indent=1))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(summary, indent=1) + "\n")


if __name__ == "__main__":
    main()
