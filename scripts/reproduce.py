"""The CPU reproduction: every prediction judged on learners that pass the training gate.

What `make reproduce` runs (`make reproduce PART=collapse` for one part). Eight parts, each a
preset of conf/experiment/reproduce/ run in-process through Hydra's compose API, then the
report over every finished part:

    collapse      P1, P2   lambda in {0, 0.1, 0.25, 0.5, 1} x 5 seeds, 6 generations (icl-stl-loop)
    stability     P3       twins (3 replaced prompts) and the chaos control, 2 n x 5 seeds
    decay         P4       6 n over 2 decades x 5 seeds
    augmentation  P5       5 m x 2 n x 5 seeds
    reference     -        the exactly solvable reference learner on the same grids
    filters       P6       lambda = 0 with a verifier (two qualities) or a confidence filter
    schedules     P7       lambda_i decaying linearly to a floor of 0.25, and to 0
    pools         P8       finite task pools of M = 2 and 16 tasks, one run per seed

A part of several presets (filters, schedules, pools) runs each in turn, and each point of a
preset's sweep grid (`hydra.sweeper.params`, as `icl-stl-loop -m` would) as its own run, in
--out/<part>/<preset>[/<point>].

    .venv/bin/python scripts/reproduce.py --plan                # member steps and minutes per part
    .venv/bin/python scripts/reproduce.py --part collapse       # one part (resumes if killed)
    .venv/bin/python scripts/reproduce.py                       # all parts, then the report
    .venv/bin/python scripts/reproduce.py --report-only --results docs/results/cpu

A killed part resumes from its checkpoints (under --out/checkpoints) with the same command. Each
invocation's wall time per part is appended to --out/timing.json; the report goes to --out and,
with --results, is copied there with runs.csv, timing.json and, under runs/, every file the
report read: `--report-only` with a copy of that runs/ as --out regenerates it. A README.md in
--results with the markers of scripts/results_table.py gets its results table rewritten from
the copied verdicts.json (docs/results/cpu/README.md; judged with `--rules v1`, as that folder
was).
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import shutil
import sys
import time
from pathlib import Path

from hydra import compose, initialize_config_dir

from icl_stl.cli.common import CONFIG_DIR, load_app_config
from icl_stl.cli.loop import loop_from_config
from icl_stl.cli.probe import probe_from_config
from icl_stl.loop.timing import process_age_s
from icl_stl.persistence import atomic_write_json

# part -> (primary config, preset or presets, runner)
PARTS = {
    "collapse": ("loop", "reproduce/collapse", loop_from_config),
    "stability": ("probe", "reproduce/stability", probe_from_config),
    "decay": ("probe", "reproduce/decay", probe_from_config),
    "augmentation": ("loop", "reproduce/augmentation", loop_from_config),
    "reference": ("loop", "reproduce/reference", loop_from_config),
    "filters": ("loop", ("reproduce/filters_verifier", "reproduce/filters_weak_verifier",
                         "reproduce/filters_confidence"), loop_from_config),
    "schedules": ("loop", ("reproduce/schedules_floor", "reproduce/schedules_zero"),
                  loop_from_config),
    "pools": ("loop", ("reproduce/pools_below", "reproduce/pools_above"), loop_from_config),
}
# Measured on the 2-core development CPU (docs/bench/sizes-batch64-cpu-2026-12-03.json): an
# ensemble of 50 tiny GPT-2s at d = 2, k = 6, batch 64 trains 82 member steps/s on 2 threads.
MEMBER_STEPS_PER_S = 82.0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", choices=[*PARTS, "all"], default="all")
    parser.add_argument("--out", type=Path, default=Path("outputs/reproduce"),
                        help="runs, checkpoints and the report (default: outputs/reproduce)")
    parser.add_argument("--results", type=Path, default=None,
                        help="also copy the report, runs.csv and timing here "
                             "(e.g. docs/results/cpu)")
    parser.add_argument("--plan", action="store_true",
                        help="print each part's member steps and estimated minutes; run nothing")
    parser.add_argument("--rate", type=float, default=MEMBER_STEPS_PER_S,
                        help="member steps per second for --plan (default: %(default)s)")
    parser.add_argument("--report-only", action="store_true",
                        help="write the report over the finished parts; train nothing")
    parser.add_argument("--rules", choices=("v2", "v1"), default="v2",
                        help="the report's rules: v2 (matched controls, the default) or v1 (the "
                             "exploratory reproduction's, docs/results/cpu)")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="a Hydra override for every part (repeatable)")
    return parser.parse_args(argv)


def presets_of(part: str) -> tuple[str, ...]:
    preset = PARTS[part][1]
    return (preset,) if isinstance(preset, str) else tuple(preset)


def compose_part(part: str, out: Path, overrides: list[str], preset: str | None = None):
    """The part's config (its first preset, or `preset`), without a sweep grid."""
    return compose_preset(PARTS[part][0], preset or presets_of(part)[0], out, overrides)


def compose_preset(primary: str, preset: str, out: Path, overrides: list[str],
                   with_hydra: bool = False):
    with initialize_config_dir(version_base="1.3", config_dir=CONFIG_DIR):
        return compose(primary, overrides=[f"experiment={preset}",
                                           f"run.checkpoint_root={out / 'checkpoints'}",
                                           *overrides], return_hydra_config=with_hydra)


def sweep_points(primary: str, preset: str, out: Path, overrides: list[str]) -> list[list[str]]:
    """The preset's sweep grid (`hydra.sweeper.params`, comma-separated values as the basic
    sweeper reads them) as override lists, one per point; [[]] without a grid. A key also set
    by --set is fixed at that value, not swept."""
    cfg = compose_preset(primary, preset, out, overrides, with_hydra=True)
    params = dict(cfg.hydra.sweeper.get("params") or {})
    fixed = {o.split("=", 1)[0].lstrip("+~") for o in overrides}
    axes = [[f"{key}={value.strip()}" for value in str(values).split(",")]
            for key, values in params.items() if key not in fixed]
    return [list(point) for point in itertools.product(*axes)] if axes else [[]]


def part_jobs(part: str, out: Path, overrides: list[str]) -> list[tuple[Path, object]]:
    """(run directory, config) of every run of a part: one per preset and sweep point. A part
    of one preset without a grid runs in out/<part>, as it always has."""
    primary = PARTS[part][0]
    presets = presets_of(part)
    jobs = []
    for preset in presets:
        for point in sweep_points(primary, preset, out, overrides):
            run_dir = out / part
            if len(presets) > 1:
                run_dir = run_dir / preset.removeprefix(f"reproduce/{part}_")
            if point:
                run_dir = run_dir / "-".join(o.replace("=", "") for o in point)
            jobs.append((run_dir, compose_preset(primary, preset, out, [*overrides, *point])))
    return jobs


def planned_member_steps(part: str, cfg) -> dict:
    """Training steps summed over members: generation 0 (shared where the design shares it)
    and the later generations."""
    app = load_app_config(cfg, needs_loop=True)
    loop, train = app.loop, app.train
    later_steps = loop.steps if loop.steps is not None else train.steps
    if loop.learner != "transformer":
        return {"generation_0": 0, "later": 0, "total": 0}
    if part in ("stability", "decay"):
        probe = cfg.probe
        per_n_seed = 1
        if probe.kind == "stability":
            per_n_seed += len(probe.replaced_indices) + (probe.chaos_control != "none")
        loops = len(probe.ns) * len(probe.seeds) * per_n_seed
        gen0, members = loops, loops
    else:
        m = cfg.members
        seeds, ns = len(m.seeds or [0]), len(m.ns or [0])
        members = seeds * ns * len(m.real_fractions or [0]) * len(m.augments or [0])
        gen0 = seeds * ns if loop.share_generation_0 else members
    first, later = gen0 * train.steps, members * loop.generations * later_steps
    return {"generation_0": first, "later": later, "total": first + later}


def run_part(part: str, out: Path, overrides: list[str], startup_s: float | None = None) -> float:
    """Run one part; its wall time is recorded even when it is interrupted (Ctrl-C, SIGTERM),
    so a part finished over several invocations reports the time all of them took."""
    start = time.perf_counter()
    _, _, runner = PARTS[part]
    completed = False
    try:
        for run_dir, cfg in part_jobs(part, out, overrides):
            runner(cfg, run_dir)
        completed = True
    finally:
        record_timing(out, part, time.perf_counter() - start, overrides, completed, startup_s)
    return time.perf_counter() - start


def machine() -> dict:
    import torch

    from icl_stl.runs.provenance import machine as where

    return {**where(), "threads": torch.get_num_threads()}


def record_timing(out: Path, part: str, seconds: float, overrides: list[str],
                  completed: bool, startup_s: float | None = None) -> None:
    """Append an invocation's seconds on a part (and, for the first part of an invocation, the
    process's start-up and imports before it: `startup_s`)."""
    path = out / "timing.json"
    timing = json.loads(path.read_text()) if path.exists() else {"invocations": []}
    timing["invocations"].append({"part": part, "seconds": round(seconds, 1),
                                  "completed": completed, "startup_s": startup_s,
                                  "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
                                  "command": " ".join(sys.argv), "overrides": overrides,
                                  "machine": machine()})
    totals: dict[str, float] = {}
    for inv in timing["invocations"]:
        totals[inv["part"]] = totals.get(inv["part"], 0.0) + inv["seconds"]
    timing["seconds_per_part"] = totals
    atomic_write_json(path, timing)


def record_report_timing(out: Path, seconds: float, runs: list[str]) -> None:
    """The report's and its figures' seconds, beside the parts' (scripts/profile_part.py)."""
    path = out / "timing.json"
    timing = json.loads(path.read_text()) if path.exists() else {"invocations": []}
    timing.setdefault("reports", []).append({"seconds": round(seconds, 2), "runs": len(runs),
                                             "finished": time.strftime("%Y-%m-%d %H:%M:%S")})
    atomic_write_json(path, timing)


def finished_runs(out: Path) -> list[Path]:
    """Every run directory of a part under `out` that holds a summary.json, part by part: what
    the report reads (a results folder's runs/ has the same layout)."""
    return [path.parent for p in PARTS for path in sorted((out / p).rglob("summary.json"))]


def copy_runs(out: Path, runs: list[Path], dest: Path) -> None:
    """Each run's files (`collect.RUN_FILES`: every file the report reads, its config and
    timing) into dest at the run's place under `out`, so that the report regenerates from
    dest alone."""
    from icl_stl.report.collect import RUN_FILES

    for run_dir in runs:
        target = dest / run_dir.relative_to(out)
        target.mkdir(parents=True, exist_ok=True)
        for name in RUN_FILES:
            if (run_dir / name).exists():
                shutil.copy2(run_dir / name, target / name)


def write_results(out: Path, results: Path | None, rules: str = "v2") -> None:
    from icl_stl.report.reference_figure import plot_reference
    from icl_stl.report.report import write_report
    from icl_stl.report.rules import ReportConfig

    finished = finished_runs(out)
    if not finished:
        print("[reproduce] no finished part to report on")
        return
    start = time.perf_counter()
    report = write_report(finished, out, ReportConfig(rules=rules))
    if (out / "reference" / "summary.json").exists() and (out / "collapse" / "summary.json").exists():
        plot_reference(out / "collapse" / "summary.json", out / "reference" / "summary.json",
                       out / "figures" / "reference.png")
    record_report_timing(out, time.perf_counter() - start, [p.name for p in finished])
    print(f"[reproduce] report: {report.path}")
    print(f"[reproduce] verdicts: "
          f"{json.dumps({f'P{k}': v for k, v in report.verdicts.items()})}")
    if results is None:
        return
    results.mkdir(parents=True, exist_ok=True)
    for name in ("REPORT.md", "verdicts.json", "runs.csv", "timing.json"):
        if (out / name).exists():
            shutil.copy2(out / name, results / name)
    shutil.copytree(out / "figures", results / "figures", dirs_exist_ok=True)
    copy_runs(out, finished, results / "runs")
    print(f"[reproduce] copied to {results}")
    if (results / "README.md").exists():
        refresh_results_readme(results)


def refresh_results_readme(results: Path) -> None:
    """The results table in results/README.md (docs/results/cpu/README.md: the exploratory
    reproduction), rewritten from the verdicts.json just copied there; never the repository's
    README, whose table is the confirmatory programme's (scripts/reproduce_v2.py)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import results_table

    try:
        written = results_table.refresh_readme(results / "README.md", results)
    except (KeyError, ValueError) as err:  # verdicts the table's readings were not written for
        print(f"[reproduce] {results / 'README.md'}: results table left as it was: {err}")
        return
    if written:
        print(f"[reproduce] results table rewritten in {results / 'README.md'}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    parts = list(PARTS) if args.part == "all" else [args.part]
    if args.plan:
        total = 0.0
        for part in parts:
            steps = {"generation_0": 0, "later": 0, "total": 0}
            for _, cfg in part_jobs(part, args.out, args.overrides):
                for key, value in planned_member_steps(part, cfg).items():
                    steps[key] += value
            minutes = steps["total"] / args.rate / 60
            total += minutes
            print(f"{part:13s} member steps: generation 0 {steps['generation_0']:>8,}, later "
                  f"{steps['later']:>8,}; about {minutes:.0f} min at {args.rate:g}/s")
        print(f"{'total':13s} about {total:.0f} min of training (labelling and evaluation extra)")
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    startup = process_age_s()  # imports and start-up: counted once, with the first part
    if not args.report_only:
        for part in parts:
            print(f"[reproduce] {part} ...", flush=True)
            try:
                seconds = run_part(part, args.out, args.overrides, startup)
                startup = None
            except KeyboardInterrupt:  # Ctrl-C or SIGTERM: training saved a checkpoint
                print(f"[reproduce] {part} interrupted; the same command resumes it", flush=True)
                return 130
            print(f"[reproduce] {part} done in {seconds / 60:.1f} min", flush=True)
    write_results(args.out, args.results, args.rules)
    return 0


if __name__ == "__main__":
    sys.exit(main())
