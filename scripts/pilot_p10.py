"""The pilot of P10, the weight of real data (docs/real_weight.md, docs/THEORY.md section 8.8),
on seeds outside any confirmatory set.

    .venv/bin/python scripts/pilot_p10.py run --work outputs/pilot_p10
    .venv/bin/python scripts/pilot_p10.py analyse --work outputs/pilot_p10 \
        --results docs/results/pilot-p10

`run` trains conf/experiment/p10/pilot_d2.yaml's grid (its hydra.sweeper.params: 5 real weights
x 2 real sources) as one `icl-stl-loop` run per grid point, run directory <work>/<source>_w<w>,
checkpoints under <work>/checkpoints, log <work>/logs/<source>_w<w>.log, compiled, fused AdamW,
one thread (OMP_NUM_THREADS=1), in two worker queues at once (the 2-core CPU). Resumable with
the same command: a run that finished under the same command (its done.json) is skipped; any
other is started again and the loop resumes from its last finished generation or mid-training
checkpoint (a finished generation is loaded, never retrained; a resume with other settings is
refused by the loop, naming the key). Extra KEY=VALUE settings go to every run (later keys win).

`analyse` copies each run's summary.json and timing.json to <results>/runs/<source>_w<w>/,
reads them with the report's own functions (scripts/pilot_p10_analysis.py) and writes
pilot.json, sizing.json and README.md there.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path

from icl_stl.runs.provenance import machine

REPO = Path(__file__).resolve().parents[1]
PRESET = "p10/pilot_d2"
NAME = "pilot_p10"
WORKERS = 2  # one thread each: the 2-core CPU
RUNTIME = ("runtime.compile=true", "runtime.fused_adam=true", "runtime.threads=1")
DONE = "done.json"  # written by `run` beside a finished run's summary.json


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("step", choices=("run", "analyse"))
    parser.add_argument("--work", type=Path, default=Path("outputs/pilot_p10"),
                        help="run directories, checkpoints and logs (default: %(default)s)")
    parser.add_argument("--results", type=Path, default=REPO / "docs/results/pilot-p10",
                        help="where the records, pilot.json and sizing.json go "
                             "(default: %(default)s)")
    parser.add_argument("--weights", default=None,
                        help="run: comma-separated real weights (default: the preset's grid)")
    parser.add_argument("--sources", default=None,
                        help="run: comma-separated real sources (default: the preset's)")
    parser.add_argument("--workers", type=int, default=WORKERS,
                        help="run: runs at once, one thread each (default: %(default)s)")
    parser.add_argument("--draws", type=int, default=4000,
                        help="analyse: simulated groups per power estimate (default: %(default)s)")
    parser.add_argument("overrides", nargs="*", help="run: extra settings (KEY=VALUE)")
    return parser.parse_intermixed_args(argv)


def fail(message: str) -> int:
    print(f"scripts/pilot_p10.py: {message}", file=sys.stderr)
    return 2


def preset_grid(overrides: list[str]) -> tuple[list[float], list[str]]:
    """The preset's weights and sources (its hydra.sweeper.params), as `-m` would sweep them."""
    from hydra import compose, initialize_config_dir

    from icl_stl.cli.common import CONFIG_DIR

    with initialize_config_dir(version_base="1.3", config_dir=CONFIG_DIR):
        cfg = compose("loop", overrides=[f"experiment={PRESET}", *overrides],
                      return_hydra_config=True)
    params = cfg.hydra.sweeper.params
    return ([float(w) for w in str(params["loop.real_weight"]).split(",")],
            [s.strip() for s in str(params["loop.real_source"]).split(",")])


def point_name(source: str, weight: float) -> str:
    return f"{source}_w{weight:g}"


def merged(settings: list[str]) -> list[str]:
    """KEY=VALUE settings with one value per key, the last one given (Hydra refuses two)."""
    out: dict[str, str] = {}
    for item in settings:
        out[item.split("=", 1)[0]] = item
    return list(out.values())


def commands(work: Path, weights: list[float], sources: list[str],
             overrides: list[str]) -> dict[str, list[str]]:
    """Each grid point's `icl-stl-loop` command, by its run directory's name, in the order the
    queues take them (by weight, both sources of a weight together)."""
    loop = str(REPO / ".venv/bin/icl-stl-loop")
    work = work.resolve()
    out = {}
    for weight in weights:
        for source in sources:
            name = point_name(source, weight)
            out[name] = [loop, *merged([
                f"experiment={PRESET}", "hydra.sweeper.params=null",  # one point, not -m
                f"loop.real_weight={weight:g}",
                f"loop.real_source={source}", *RUNTIME, f"run.name={NAME}_{name}",
                f"run.checkpoint_root={work / 'checkpoints'}", f"hydra.run.dir={work / name}",
                *overrides])]
    return out


def finished(run_dir: Path, cmd: list[str]) -> bool:
    """The run finished under this very command (its summary.json and done.json)."""
    done = run_dir / DONE
    if not (done.exists() and (run_dir / "summary.json").exists()):
        return False
    record = json.loads(done.read_text())
    return record.get("command") == cmd and record.get("returncode") == 0


def run_one(name: str, cmd: list[str], work: Path) -> int:
    run_dir, logs = work / name, work / "logs"
    if finished(run_dir, cmd):
        print(f"[run] {name}: finished earlier, skipped", flush=True)
        return 0
    logs.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    print(f"[run] {name}: started (log {logs / (name + '.log')})", flush=True)
    start, started = time.perf_counter(), time.strftime("%Y-%m-%d %H:%M:%S %z")
    with open(logs / f"{name}.log", "a") as log:
        log.write(f"\n[pilot_p10] {started}: {' '.join(cmd)}\n")
        log.flush()
        code = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=REPO,
                              env=env).returncode
    wall = time.perf_counter() - start
    if code == 0:
        record = {"command": cmd, "returncode": code, "started": started,
                  "finished": time.strftime("%Y-%m-%d %H:%M:%S %z"), "wall_s": round(wall, 1),
                  "machine": machine()}
        (run_dir / DONE).write_text(json.dumps(record, indent=2) + "\n")
    print(f"[run] {name}: exit {code} after {wall:.0f} s", flush=True)
    return code


def run(work: Path, jobs: dict[str, list[str]], workers: int) -> int:
    """Every grid point, `workers` runs at once, each worker taking the next point when its
    run ends; the worst exit code."""
    todo: queue.Queue = queue.Queue()
    for item in jobs.items():
        todo.put(item)
    codes: list[int] = []

    def worker() -> None:
        while True:
            try:
                name, cmd = todo.get_nowait()
            except queue.Empty:
                return
            codes.append(run_one(name, cmd, work))

    threads = [threading.Thread(target=worker) for _ in range(max(1, workers))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return max(codes, default=0)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.step == "run":
        weights, sources = preset_grid([])
        try:
            if args.weights:
                weights = [float(w) for w in args.weights.split(",")]
        except ValueError:
            return fail(f"--weights must be numbers separated by commas, got {args.weights!r}")
        if args.sources:
            sources = args.sources.split(",")
        if args.workers < 1:
            return fail(f"--workers must be >= 1, got {args.workers}")
        args.work.mkdir(parents=True, exist_ok=True)
        return run(args.work, commands(args.work, weights, sources, args.overrides),
                   args.workers)
    if not args.work.is_dir():
        return fail(f"--work {args.work} is not a directory (run the pilot first)")
    from pilot_p10_analysis import analyse_work

    return analyse_work(args.work, args.results, args.draws)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    sys.exit(main())
