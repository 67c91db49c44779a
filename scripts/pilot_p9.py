"""The pilot of P9, accumulation as Gerstgrasser et al. (2024) state it (docs/accumulation.md),
on seeds outside any confirmatory set.

    .venv/bin/python scripts/pilot_p9.py run --work outputs/pilot_p9        # resumable
    .venv/bin/python scripts/pilot_p9.py run --work outputs/pilot_p9 --generations 12
    .venv/bin/python scripts/pilot_p9.py analyse --work outputs/pilot_p9 \
        --results docs/results/pilot-p9                                     # -> pilot.json

`run` trains conf/experiment/p9/cpu_pilot.yaml once per arm (`loop.synthetic`), each run with
its oracle-labelled twins (`members.labellers: [model, oracle]`), as one `icl-stl-loop` process
per arm on one thread (runtime.compile, runtime.fused_adam, OMP_NUM_THREADS=1), in two queues
at once (the 2-core CPU). Default order: accumulate_s0 and volume_matched first (the arms P9
needs; replace at lambda = 0 is the P1 design the version-2 pilot already ran), then replace
and accumulate. Killed, the same command resumes every arm from its checkpoints; an arm whose
summary.json already reaches the generations asked for is not started again. `--generations
12` extends the same loops (the loop's checkpoint identity leaves out the generation count, so
a resumed run loads generations 0..8 and trains 9..12); a count below what an arm has finished
is refused, and so is any other change of settings (by the loop itself, naming the key).
Every process's start, end and exit code go to <work>/invocations.json, its output to
<work>/<arm>.log.

`analyse` (scripts/pilot_p9_analysis.py) copies each arm's summary.json and timing.json to
<results>/runs/<arm>/ and reads them with the report's own functions: pilot.json (curves,
contrasts, noise, the oracle twin's trend, the reference learner's curves) and sizing.json
(the P9 rule's power at the pilot's noise by seed count, for each control considered) and
figures/arms.png (each arm's readable loops beside their oracle twins, report/arms_figure.py).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

from icl_stl.runs.provenance import machine

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))

PRESET = "p9/cpu_pilot"
ORDER = ("accumulate_s0", "volume_matched", "replace", "accumulate")
WORKERS = 2  # one thread each: the 2-core CPU
# Set by the pilot itself; an override of them would break resume or pairing.
RESERVED = ("loop.synthetic", "loop.generations", "hydra.run.dir", "run.checkpoint_root",
            "run.name", "experiment")
# An assumed rate for the estimate, until the pilot's own timing.json exist: one one-thread
# worker of the confirmatory programme's part 2 (docs/bench/profile-v2-part-2-cpu-2026-12-06.json:
# 10 members x 2 generations x 6,000 steps in 2,840 s of training, beside a second worker).
ASSUMED_MEMBER_STEPS_PER_S = 42.0


class UsageError(Exception):
    """Bad input: one line, exit code 2, before anything is trained."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("step", choices=("run", "analyse"))
    parser.add_argument("--work", type=Path, default=Path("outputs/pilot_p9"),
                        help="run directories and checkpoints (default: %(default)s)")
    parser.add_argument("--results", type=Path, default=REPO / "docs/results/pilot-p9",
                        help="analyse: where runs/, pilot.json, sizing.json go")
    parser.add_argument("--arms", default=",".join(ORDER),
                        help="run: comma-separated loop.synthetic arms, in queue order "
                             "(default: %(default)s)")
    parser.add_argument("--generations", type=int, default=None,
                        help="run: loop.generations (default: the preset's); a larger count "
                             "extends the same loops")
    parser.add_argument("--workers", type=int, default=WORKERS,
                        help="run: processes at once, one thread each (default: %(default)s)")
    parser.add_argument("--member-steps-per-s", type=float, default=None,
                        help="run: the rate of one worker for the estimate (default: measured "
                             f"from finished generations, else {ASSUMED_MEMBER_STEPS_PER_S:g})")
    parser.add_argument("--draws", type=int, default=20_000,
                        help="analyse: simulated groups per power estimate (default: "
                             "%(default)s)")
    parser.add_argument("--dry-run", action="store_true",
                        help="run: print the commands and the estimate, train nothing")
    parser.add_argument("overrides", nargs="*", help="run: extra settings (KEY=VALUE)")
    args = parser.parse_intermixed_args(argv)
    args.work = args.work.resolve()
    args.argv = list(sys.argv[1:] if argv is None else argv)
    args.arm_list = [a for a in args.arms.split(",") if a]
    return args


def check_args(args: argparse.Namespace) -> None:
    from icl_stl.theory.accumulation import ARMS

    bad = [a for a in args.arm_list if a not in ARMS]
    if bad or not args.arm_list or len(set(args.arm_list)) != len(args.arm_list):
        raise UsageError(f"--arms must be distinct arms of {list(ARMS)}, got {args.arms!r}")
    if args.generations is not None and args.generations < 1:
        raise UsageError(f"--generations must be an integer >= 1, got {args.generations}")
    if args.workers < 1:
        raise UsageError(f"--workers must be >= 1, got {args.workers}")
    for item in args.overrides:
        key = item.split("=", 1)[0].lstrip("+~")
        if "=" not in item or key in RESERVED:
            raise UsageError(f"setting {item!r} is not allowed: give KEY=VALUE, and not one of "
                             f"{list(RESERVED)} (use --arms, --generations, --work)")


def compose(arm: str, args: argparse.Namespace):
    """The AppConfig an arm's process will run (the pilot's settings, checked before any run)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from icl_stl.cli.common import CONFIG_DIR, load_app_config
    from icl_stl.config import ConfigError

    try:
        with initialize_config_dir(version_base="1.3", config_dir=CONFIG_DIR):
            cfg = hydra_compose("loop", overrides=[f"experiment={PRESET}", *arm_settings(
                arm, args)])
        return load_app_config(cfg, needs_loop=True)
    except (ConfigError, ValueError) as err:
        raise UsageError(f"arm {arm}: {err}") from None
    except Exception as err:  # hydra's override and missing-key errors  # noqa: BLE001
        raise UsageError(f"arm {arm}: {type(err).__name__}: {err}".splitlines()[0]) from None


def arm_settings(arm: str, args: argparse.Namespace) -> list[str]:
    gens = [] if args.generations is None else [f"loop.generations={args.generations}"]
    return [f"loop.synthetic={arm}", "runtime.compile=true", "runtime.fused_adam=true",
            "runtime.threads=1", f"run.name=pilot_p9_{arm}",
            f"run.checkpoint_root={args.work / 'checkpoints'}", *gens, *args.overrides]


def command(arm: str, args: argparse.Namespace) -> list[str]:
    return [str(REPO / ".venv/bin/icl-stl-loop"), f"experiment={PRESET}",
            *arm_settings(arm, args), f"hydra.run.dir={args.work / arm}"]


def finished_generations(work: Path, arm: str) -> int | None:
    """The last generation an arm's summary.json records (every loop), or None."""
    path = work / arm / "summary.json"
    if not path.exists():
        return None
    records = json.loads(path.read_text())["generations"]
    return max((r["generation"] for r in records), default=None)


def member_steps(app, done: int | None = None) -> int:
    """The member steps left to a run that has finished generations 0..done (None: none):
    generation 0 once per seed (shared by a loop and its twin), then every member's later
    generations (the loop's rule: loop.steps, else train.steps)."""
    seeds = len(app.members.seeds)
    loops = seeds * len(app.members.labellers or [app.loop.labeller])
    later = app.loop.steps if app.loop.steps is not None else app.train.steps
    if app.loop.steps_scale != "fixed":
        raise UsageError(f"loop.steps_scale={app.loop.steps_scale}: the estimate assumes fixed")
    first = seeds * app.train.steps if done is None else 0
    return first + loops * (app.loop.generations - (done or 0)) * later


def measured_rate(work: Path) -> float | None:
    """Member steps per second of the generations this pilot trained (their timing.json)."""
    steps = seconds = 0.0
    for path in work.glob("*/timing.json"):
        timing = json.loads(path.read_text())
        per_gen = json.loads((path.parent / "summary.json").read_text())["generations"] \
            if (path.parent / "summary.json").exists() else []
        trained = {(r["generation"]): r["steps"] for r in per_gen}
        for rec in [timing, *timing.get("earlier", [])]:
            for row in rec.get("generations", []):
                if row["generation"] in trained and "phases" in row:
                    steps += trained[row["generation"]] * row["trained_members"]
                    seconds += row["phases"].get("training", row["seconds"])
    return steps / seconds if seconds > 0 else None


def estimate(plan: dict[str, object], args: argparse.Namespace) -> str:
    rate = args.member_steps_per_s or measured_rate(args.work)
    source = ("given" if args.member_steps_per_s else "measured here" if rate else
              "assumed (scripts/pilot_p9.py ASSUMED_MEMBER_STEPS_PER_S)")
    rate = rate or ASSUMED_MEMBER_STEPS_PER_S
    steps = {arm: member_steps(app, finished_generations(args.work, arm))
             for arm, app in plan.items()}
    queues = [0.0] * min(args.workers, len(steps))
    for arm in steps:  # each arm to the queue that frees first, as the workers take them
        queues[queues.index(min(queues))] += steps[arm] / rate
    lines = [f"[pilot_p9] {arm}: {s:,} member steps to train, about {s / rate / 60:.0f} min of training"
             for arm, s in steps.items()]
    lines.append(f"[pilot_p9] at {rate:.1f} member steps/s per one-thread worker ({source}): "
                 f"about {max(queues) / 3600:.1f} h of training with {len(queues)} workers "
                 "(plus labelling, evaluation and compilation; finished generations are loaded, "
                 "not retrained)")
    return "\n".join(lines)


def record_invocation(work: Path, lock: threading.Lock, row: dict) -> None:
    from icl_stl.persistence import atomic_write_json

    with lock:
        path = work / "invocations.json"
        rows = json.loads(path.read_text()) if path.exists() else []
        atomic_write_json(path, [*rows, row])


def run(args: argparse.Namespace) -> int:
    check_args(args)
    plan = {arm: compose(arm, args) for arm in args.arm_list}
    target = {arm: app.loop.generations for arm, app in plan.items()}
    todo = []
    for arm in args.arm_list:
        done = finished_generations(args.work, arm)
        if done is not None and done > target[arm]:
            raise UsageError(f"--generations {target[arm]} is below the {done} generations arm "
                             f"{arm} has finished in {args.work / arm}: give at least {done}")
        if done == target[arm]:
            print(f"[pilot_p9] {arm}: finished (generations 0-{done}), not started again")
        else:
            todo.append(arm)
    print(estimate({arm: plan[arm] for arm in todo}, args) if todo else
          "[pilot_p9] nothing to run")
    for arm in todo:
        print(f"[pilot_p9] {arm}: {' '.join(command(arm, args))}")
    if args.dry_run or not todo:
        return 0
    args.work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    queue, codes, lock = list(todo), {}, threading.Lock()

    def worker() -> None:
        while True:
            with lock:
                if not queue:
                    return
                arm = queue.pop(0)
            cmd, start = command(arm, args), time.time()
            with open(args.work / f"{arm}.log", "a") as log:
                code = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=REPO,
                                      env=env).returncode
            codes[arm] = code
            record_invocation(args.work, lock, {
                "arm": arm, "command": cmd, "started_at": start, "ended_at": time.time(),
                "seconds": round(time.time() - start, 2), "returncode": code,
                "generations": target[arm],
                "machine": {**machine(), "date": time.strftime("%Y-%m-%d %H:%M %Z")},
                "pilot_command": " ".join(["scripts/pilot_p9.py", *args.argv])})
            print(f"[pilot_p9] {arm}: exit {code} after {time.time() - start:.0f} s "
                  f"(log {args.work / f'{arm}.log'})", flush=True)

    threads = [threading.Thread(target=worker) for _ in range(min(args.workers, len(todo)))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return max(codes.values())


def analyse(args: argparse.Namespace) -> int:
    """pilot.json, sizing.json and README.md under --results from the arms' records."""
    from pilot_p9_analysis import AnalysisError, collect, figure, public
    from pilot_p9_analysis import analyse as analyse_records
    from pilot_p9_sizing import readme, sizing

    if args.draws < 100:
        raise UsageError(f"--draws must be at least 100, got {args.draws}")
    if not args.work.is_dir() and not (args.results / "runs").is_dir():
        raise UsageError(f"--work {args.work} does not exist and --results {args.results} "
                         "holds no runs/")
    if args.work.is_dir():
        print(f"[pilot_p9] copied {', '.join(collect(args.work, args.results)) or 'no runs'} "
              f"from {args.work}")
    try:
        pilot = analyse_records(args.results)
    except AnalysisError as err:
        raise UsageError(str(err)) from None
    from icl_stl.persistence import atomic_write_json

    atomic_write_json(args.results / "pilot.json", public(pilot))
    atomic_write_json(args.results / "sizing.json", sizing(pilot, args.draws))
    drawn = figure(args.results, pilot)
    print(f"[pilot_p9] figure: {drawn or 'none (no arm has a readable loop)'}")
    (args.results / "README.md").write_text(readme(args.results, pilot))
    for arm, part in pilot["arms"].items():
        sigma = (part["noise"]["log_contrast"] or {}).get("sigma")
        twin = part["oracle_twin_trend"]
        print(f"[pilot_p9] {arm}: seeds read {part['seeds_read']}, mean log contrast by "
              f"generation {np.round(part['log_contrast_mean'] or [], 3).tolist()}, sigma "
              f"{sigma if sigma is None else round(sigma, 3)}, twin's slope "
              f"{twin['estimate'] if twin['estimate'] is None else round(twin['estimate'], 3)}"
              f"/gen over {twin['generations']}")
    print(f"[pilot_p9] wrote pilot.json, sizing.json and README.md to {args.results}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        if args.step == "run":
            return run(args)
        return analyse(args)
    except UsageError as err:
        print(f"scripts/pilot_p9.py: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
