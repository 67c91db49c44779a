"""The pilot of P6, version 2 (docs/THEORY.md section 8.9): filters that keep the task spread,
at d = 3, k = 8, label noise 0.25, on seeds outside any confirmatory set.

    .venv/bin/python scripts/pilot_p6.py run --work outputs/pilot_p6      # resumable: same command
    .venv/bin/python scripts/pilot_p6.py analyse --work outputs/pilot_p6 \\
        --results docs/results/pilot-p6                                     # pilot.json, sizing.json

Three arms, each its own preset: `unfiltered` (conf/experiment/p6/pilot.yaml), `residual` and
`density_ratio` (p6/pilot_residual, p6/pilot_density_ratio), every loop beside its
oracle-labelled twin (members.labellers). `run` trains one `icl-stl-loop` process per (arm,
seed), one thread each (runtime.threads=1, OMP_NUM_THREADS=1, the compiled engine), at most
--workers at once (two on the 2-core CPU), into <work>/<arm>/<seed>/ with checkpoints under
<work>/checkpoints/. A member's numbers do not depend on the ensemble it trains in (S_0,
initialisation, batch order and synthetic x's come from streams of (seed, purpose,
generation)), so the three arms of a seed share S_0, initialisation and batch order, and each
arm's generation 0 is the same model (`analyse` checks it: `generation_0_agreement`).

About half the seeds of this setting miss the gate at generation 0 with the tiny model
(BENCHMARKS.md, "The second setting: the gate at d = 3"), and a loop that misses is never read.
So `run` first *screens*: generation 0 of the unfiltered arm of every listed seed
(loop.generations=0, 6,000 steps each). Then it continues the first --max-seeds seeds whose
generation 0 passed the gate (the rules' own `matched_loops` at the rules' tolerance), in
ascending order: the unfiltered run grows to the preset's generations (loop.generations grows on
resume), and the two filtered runs train from generation 0. A seed that missed costs 6,000 member
steps instead of 126,000. Killed, the same command resumes every run from its checkpoints and
skips the finished ones; the plan (gate per seed, the seeds continued) is in <work>/plan.json.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from icl_stl.runs.provenance import machine

REPO = Path(__file__).resolve().parents[1]
LOOP = REPO / ".venv/bin/icl-stl-loop"
ARMS = {"unfiltered": "p6/pilot", "residual": "p6/pilot_residual",
        "density_ratio": "p6/pilot_density_ratio"}
RUNTIME = ("runtime.threads=1", "runtime.compile=true", "runtime.fused_adam=true")
SCREEN_ARM = "unfiltered"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("step", choices=("run", "analyse"))
    parser.add_argument("--work", type=Path, default=Path("outputs/pilot_p6"),
                        help="run directories and checkpoints (default: %(default)s)")
    parser.add_argument("--results", type=Path, default=REPO / "docs/results/pilot-p6",
                        help="analyse: where runs/, pilot.json and sizing.json go "
                             "(default: %(default)s)")
    parser.add_argument("--workers", type=int, default=2,
                        help="run: processes at once, one thread each (default: %(default)s)")
    parser.add_argument("--max-seeds", type=int, default=4,
                        help="run: gated seeds continued past generation 0 (default: "
                             "%(default)s)")
    parser.add_argument("--draws", type=int, default=20_000,
                        help="analyse: simulated groups per power estimate (default: "
                             "%(default)s)")
    parser.add_argument("overrides", nargs="*",
                        help="run: extra settings for every process (KEY=VALUE)")
    args = parser.parse_args(argv)
    for name in ("workers", "max_seeds", "draws"):
        if getattr(args, name) < 1:
            parser.exit(2, f"pilot_p6: --{name.replace('_', '-')} must be at least 1, got "
                           f"{getattr(args, name)}\n")
    return args


def preset(name: str, overrides: list[str] = ()) -> dict:
    """What the pilot needs of a preset: seeds, generations, steps, labellers."""
    from hydra import compose, initialize_config_dir

    from icl_stl.cli.common import CONFIG_DIR, load_app_config

    with initialize_config_dir(version_base="1.3", config_dir=CONFIG_DIR):
        cfg = compose("loop", overrides=[f"experiment={name}", *overrides])
    app = load_app_config(cfg, needs_loop=True)
    return {"seeds": list(app.members.seeds), "generations": app.loop.generations,
            "steps": app.train.steps, "labellers": len(app.members.labellers or [None])}


@dataclass(frozen=True)
class Job:
    """One `icl-stl-loop` process: an arm's run of one seed up to `generations`."""

    arm: str
    seed: int
    generations: int

    def run_dir(self, work: Path) -> Path:
        return work / self.arm / str(self.seed)

    def command(self, work: Path, overrides: list[str]) -> list[str]:
        return [str(LOOP), f"experiment={ARMS[self.arm]}", f"members.seeds=[{self.seed}]",
                f"loop.generations={self.generations}", *RUNTIME,
                f"run.name=pilot_p6_{self.arm}_{self.seed}",
                f"run.checkpoint_root={work / 'checkpoints'}",
                f"hydra.run.dir={self.run_dir(work)}", *overrides]

    def records(self, work: Path) -> list[dict]:
        path = self.run_dir(work) / "summary.json"
        return json.loads(path.read_text())["generations"] if path.exists() else []

    def finished(self, work: Path) -> bool:
        """Every member of the run has its record at the job's last generation."""
        summary = self.run_dir(work) / "summary.json"
        if not summary.exists():
            return False
        members = len(json.loads(summary.read_text())["members"])
        return len({r["member"] for r in self.records(work)
                    if r["generation"] == self.generations}) == members


def gate_of_seed(records: list[dict]) -> dict:
    """The seed's gate, as the rules read it: every matched loop's own generation 0 (both
    arms) closes 1 - tolerance of the zero-to-ridge gap (`report.matched.matched_loops`)."""
    from icl_stl.report.matched import matched_loops
    from icl_stl.report.rules import ReportConfig

    cfg = ReportConfig()
    loops = matched_loops(records, {}, cfg.gate_tolerance, cfg.failure_gap,
                          cfg.failure_train_ratio)
    return {"gated": bool(loops) and all(lp.gated for lp in loops),
            "gap_closed": [lp.gate["gap_closed"] for lp in loops]}


def run_queue(jobs: list[Job], work: Path, overrides: list[str], workers: int) -> int:
    """Run the unfinished jobs, `workers` at a time, in order; the worst exit code."""
    pending = [j for j in jobs if not j.finished(work)]
    for job in jobs:
        if job not in pending:
            print(f"[pilot_p6] {job.arm} seed {job.seed}: finished, skipped", flush=True)
    running: list[tuple[Job, subprocess.Popen, float]] = []
    worst = 0
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    (work / "logs").mkdir(parents=True, exist_ok=True)
    while pending or running:
        while pending and len(running) < workers:
            job = pending.pop(0)
            log = open(work / "logs" / f"{job.arm}_{job.seed}.log", "a")  # noqa: SIM115
            print(f"[pilot_p6] start {job.arm} seed {job.seed} to generation "
                  f"{job.generations}", flush=True)
            proc = subprocess.Popen(job.command(work, overrides), stdout=log,
                                    stderr=subprocess.STDOUT, cwd=REPO, env=env)
            running.append((job, proc, time.monotonic()))
        time.sleep(0.2)
        for item in [r for r in running if r[1].poll() is not None]:
            job, proc, start = item
            running.remove(item)
            worst = max(worst, proc.returncode)
            print(f"[pilot_p6] {job.arm} seed {job.seed}: exit {proc.returncode} after "
                  f"{time.monotonic() - start:.0f} s", flush=True)
    return worst


def now() -> str:
    return datetime.datetime.now().isoformat(timespec="seconds")


def run(work: Path, overrides: list[str], workers: int, max_seeds: int) -> int:
    """Screen every listed seed's generation 0, then continue the first gated ones."""
    work = work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    old = json.loads((work / "plan.json").read_text()) if (work / "plan.json").exists() else {}
    invocation = {"command": " ".join(["scripts/pilot_p6.py run --work", str(work), "--workers",
                                       str(workers), "--max-seeds", str(max_seeds),
                                       *overrides]), "started": now()}
    plan = preset(ARMS[SCREEN_ARM], overrides)
    # a continued seed: every arm's later generations, and the filtered arms' own generation 0
    per_seed = plan["steps"] * (len(ARMS) * plan["generations"] * plan["labellers"]
                                + len(ARMS) - 1)
    print(f"[pilot_p6] seeds {plan['seeds']}: screen {len(plan['seeds']) * plan['steps']:,} "
          f"member steps, then at most {max_seeds} x {per_seed:,}", flush=True)
    screens = [Job(SCREEN_ARM, s, 0) for s in plan["seeds"]]
    code = run_queue(screens, work, overrides, workers)
    gates = {j.seed: gate_of_seed([r for r in j.records(work) if r["generation"] == 0])
             for j in screens}
    continued = [s for s in plan["seeds"] if gates[s]["gated"]][:max_seeds]
    state = {"seeds": plan["seeds"], "generations": plan["generations"], "gate": gates,
             "continued": continued, "max_seeds": max_seeds, "overrides": overrides,
             "member_steps_per_continued_seed": per_seed, "machine": machine(),
             "invocations": [*old.get("invocations", []), invocation]}
    (work / "plan.json").write_text(json.dumps(state, indent=2, default=str) + "\n")
    passed = [s for s, g in gates.items() if g["gated"]]
    print(f"[pilot_p6] gate passed by {passed} of {plan['seeds']}; continuing {continued}",
          flush=True)
    jobs = [Job(arm, s, plan["generations"]) for s in continued for arm in ARMS]
    code = max(code, run_queue(jobs, work, overrides, workers))
    invocation.update(ended=now(), exit_code=code)
    (work / "plan.json").write_text(json.dumps(state, indent=2, default=str) + "\n")
    return code


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.step == "run":
        return run(args.work, args.overrides, args.workers, args.max_seeds)
    from pilot_p6_analysis import write_results

    return write_results(args.work, args.results, args.draws)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    sys.exit(main())
