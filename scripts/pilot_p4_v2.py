"""The pilot of P4 version 2 (error decay in n with early stopping), on seeds outside any
confirmatory set.

    .venv/bin/python scripts/pilot_p4_v2.py run       # the decay probe, one thread (resumable)
    .venv/bin/python scripts/pilot_p4_v2.py analyse   # -> docs/results/pilot-p4-v2/pilot.json

`run` trains conf/experiment/pilot/p4v2_d2.yaml: every (n, seed) loop of the grid as one member
of one ensemble, generation 0 only, 10% of each S_0 held out and each member kept at its best
held-out step, within a step cap sized to about 30 minutes of one core. Killed, the same
command resumes from its checkpoint. `analyse` copies the run's records (summary.json,
decay.json, timing.json) into the results folder and decides whether P4 is testable at this
setting: at least 6 n over 2 decades whose generation 0 closes at least half of the
zero-to-ridge gap at its stopping point, the largest n through the 90% gate. If so it proposes
the numbers (the seed count for 80% power from the pilot's noise, the n grid, the fits);
otherwise it states P4 "not testable at d = 2 on this CPU budget" with the reason.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
PRESET = "pilot/p4v2_d2"
RUN_NAME = "pilot_p4v2_d2"
GATE = 0.9  # the training gate (closed share of the zero-to-ridge gap) at the largest n
MIN_NS, MIN_DECADES = 6, 2.0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("step", choices=("run", "analyse"))
    parser.add_argument("--work", type=Path, default=REPO / "outputs/pilot_p4v2",
                        help="run directory and checkpoints (default: %(default)s)")
    parser.add_argument("--results", type=Path, default=REPO / "docs/results/pilot-p4-v2",
                        help="where the records and pilot.json go (default: %(default)s)")
    parser.add_argument("--draws", type=int, default=2000,
                        help="simulated draws per seed count when sizing (default: %(default)s)")
    return parser.parse_args(argv)


def run(work: Path) -> int:
    work.mkdir(parents=True, exist_ok=True)
    cmd = [str(REPO / ".venv/bin/icl-stl-probe"), f"experiment={PRESET}", "runtime.threads=1",
           f"run.name={RUN_NAME}", f"run.checkpoint_root={work / 'checkpoints'}",
           f"hydra.run.dir={work / 'run'}"]
    with open(work / "run.log", "a") as log:
        return subprocess.call(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)


def testable(per_n: dict[int, dict]) -> tuple[bool, list[int], str]:
    """(testable, the n that learn in context, why) from per-n gap-closed lists."""
    from icl_stl.report.decay_v2 import LEARNS_IN_CONTEXT

    learning = sorted(n for n, v in per_n.items() if min(v["gap_closed"]) >= LEARNS_IN_CONTEXT)
    largest = max(per_n)
    decades = math.log10(max(learning) / min(learning)) if learning else 0.0
    reasons = []
    if len(learning) < MIN_NS or decades < MIN_DECADES - 1e-9:
        reasons.append(f"{len(learning)} n over {decades:.2f} decades close >= "
                       f"{LEARNS_IN_CONTEXT:.0%} of the gap at their stopping point (needs "
                       f">= {MIN_NS} over >= {MIN_DECADES:g})")
    if min(per_n[largest]["gap_closed"]) < GATE:
        reasons.append(f"the largest n ({largest}) closes {min(per_n[largest]['gap_closed']):.3f}"
                       f" < {GATE} of the gap (the gate)")
    return not reasons, learning, "; ".join(reasons)


def size_seeds(values: np.ndarray, ns: list[int], draws: int) -> dict:
    """Power of P4 v2 by seed count, simulated with the pilot's per-n noise around a truth
    decaying as n^-1/2 through the pilot's mean at the smallest fitted n."""
    from icl_stl.report.simulate_p4_v2 import power_table

    sd = values.std(0, ddof=1) if values.shape[0] > 1 else np.abs(values[0]) * 0.3
    return power_table(ns, level=float(values[:, 0].mean()), exponent=-0.5, sd=sd,
                       seed_counts=(5, 10, 15, 20, 30), draws=draws)


def analyse(work: Path, results: Path, draws: int) -> dict:
    run_dir = work / "run"
    results.mkdir(parents=True, exist_ok=True)
    for name in ("summary.json", "decay.json", "timing.json"):
        if (run_dir / name).exists():
            shutil.copy2(run_dir / name, results / name)
    summary = json.loads((results / "summary.json").read_text())
    settings = summary["settings"]
    records = [r for r in summary["generations"] if r["generation"] == 0]
    from icl_stl.training.gate import gap_closed

    per_n: dict[int, dict] = {}
    for r in sorted(records, key=lambda r: (r["n"], r["seed"])):
        cell = per_n.setdefault(r["n"], {"seeds": [], "gap_closed": [], "gen_gap": [],
                                         "stopped_step": [], "passes": [], "bayes_excess": []})
        cell["seeds"].append(r["seed"])
        cell["gap_closed"].append(gap_closed(r["test_risk"], r["ridge_risk"], r["zero_risk"]))
        cell["gen_gap"].append(r["gen_gap"])
        cell["stopped_step"].append(r["stopped_step"])
        cell["passes"].append(r["stopped_step"] * settings["train"]["batch_size"]
                              / r["train_n"])
        cell["bayes_excess"].append(r["bayes_excess"])
    ok, learning, why = testable(per_n)
    cap = settings["train"]["steps"]
    timing = json.loads((results / "timing.json").read_text()) if (
        results / "timing.json").exists() else {}
    out = {"setting": {"d": settings["task"]["d"], "k": settings["task"]["k"], "model": "tiny",
                       "batch_size": settings["train"]["batch_size"], "step_cap": cap,
                       "held_out_fraction": settings["train"]["held_out_fraction"],
                       "seeds": sorted({r["seed"] for r in records}),
                       "test_seed": settings["seed"]},
           "per_n": {str(n): v for n, v in per_n.items()},
           "learning_ns": learning, "testable": ok,
           "stopped_at_cap": sum(s == cap for v in per_n.values() for s in v["stopped_step"]),
           "timing": timing}
    if ok:
        values = np.array([[per_n[n]["gen_gap"][j] for n in learning]
                           for j in range(len(per_n[learning[0]]["gen_gap"]))])
        out["proposal"] = {"ns": learning, "fits": ["floor0_weighted", "free_floor_weighted",
                                                    "floor0_unweighted"],
                           "power": size_seeds(values, learning, draws)}
        power = out["proposal"]["power"]["seeds"]
        enough = [int(k) for k, v in power.items() if v["consistent"] >= 0.8
                  and v["flat_consistent"] <= 0.05]
        out["proposal"]["seeds_for_80_percent_power"] = min(enough) if enough else None
        out["decision"] = "P4 is testable at this setting"
    else:
        out["decision"] = f"P4 is not testable at d = 2 on this CPU budget: {why}"
    (results / "pilot.json").write_text(json.dumps(out, indent=2) + "\n")
    print(out["decision"])
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.step == "run":
        return run(args.work)
    analyse(args.work, args.results, args.draws)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
