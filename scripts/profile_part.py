"""Where a reproduction part's wall time goes, from the timers its runs recorded.

The confirmatory reproduction (scripts/reproduce_v2.py; its --out holds state.json, its
--results a copy, parts.json): one part, by number, the latest finished one by default, with a
column per worker process and their mean (scripts/profile_part_v2.py says how the workers' time
is accounted). The command to run on a finished part N of the d2 programme:

    .venv/bin/python scripts/profile_part.py outputs/reproduce_v2/d2 --part N \
        --json docs/bench/profile-v2-part-N-cpu-<YYYY-MM-DD>.json

Its table goes to BENCHMARKS.md ("Where a reproduction part's time goes") and its training,
labelling and evaluation shares (the "both workers" column) to docs/usage.md ("Where the time
goes, and on a GPU"); tests/system/test_documented_timing.py ties both to that JSON. A part run
before scripts/v2_parts.py recorded its processes and times (`executions`, `started_at` in
state.json) is profiled from its generations' phases only, and the table says so: profile the
first part that finished with that code.

The exploratory reproduction (scripts/reproduce.py; its --out holds timing.json): one part by
name. Reads --out/timing.json (each invocation's seconds on a part, the process's start-up
before it, the report's seconds) and the timing.json of every run of the part (per generation:
training, labelling, evaluation, checkpoint writes; per run: set-up, baselines, resume,
outputs):

    .venv/bin/python scripts/profile_part.py outputs/reproduce --part collapse
    .venv/bin/python scripts/profile_part.py outputs/reproduce --part collapse --json p.json

Wall time = start-up and imports + the part's invocations + the last report. Every row is
measured, except the rows named "untimed", which are what is left between the timers
(bookkeeping, logging, progress bars): they are differences, never negative by construction
of nested timers, and reported so that the rows add up to the wall time.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from icl_stl.loop.timing import GENERATION_PHASES, RUN_PHASES, read_timing

# (row, what it holds), in the order a part spends them.
ROWS = (
    ("imports and process start-up", "interpreter, torch, Hydra: before the first part starts"),
    ("composing the part's configs", "Hydra compose of each preset and sweep point"),
    ("run set-up", "test sets, the Bayes predictions aside, S_0, learners (LoopRun)"),
    ("baselines", "the baselines' errors and the Bayes predictions on the test set"),
    ("resume", "loading generations a resumed run had already finished"),
    ("S_i assembly", "real parts and concatenation (labelling apart)"),
    ("labelling", "the learner's (or oracle's) labels and filters of synthetic prompts"),
    ("training", "optimizer steps (its checkpoint writes apart)"),
    ("evaluation", "test risk, calibration, risks on S_i, probe metrics"),
    ("checkpoint writes", "synthetic.pt, train.pt, model.pt, metrics.json"),
    ("run outputs", "summary.json and the run's figures"),
    ("entry bookkeeping (untimed)", "settings parsing, logger, locks"),
    ("loop bookkeeping (untimed)", "between the timers inside the loop"),
    ("generations not broken down", "generations timed before phases were recorded"),
    ("report and figures", "icl-stl-report over the finished parts, reference figure"),
)
PHASE_ROWS = {"data": "S_i assembly", "labelling": "labelling", "training": "training",
              "evaluation": "evaluation", "checkpoints": "checkpoint writes",
              "setup": "run set-up", "baselines": "baselines", "resume": "resume"}
assert set(PHASE_ROWS) == {*GENERATION_PHASES, *RUN_PHASES}


def run_profile(path: Path) -> dict[str, float]:
    """Seconds per row of one run's timing.json, every execution of it (rows it does not
    measure: absent)."""
    timing = read_timing(path)
    rows: dict[str, float] = {}
    for execution in [*timing["earlier"], timing]:
        for row, seconds in execution_profile(execution).items():
            rows[row] = rows.get(row, 0.0) + seconds
    return rows


def execution_profile(timing: dict) -> dict[str, float]:
    """Seconds per row of one execution's record (normalised by `read_timing`)."""
    rows: dict[str, float] = {}

    def add(row: str, seconds: float) -> None:
        rows[row] = rows.get(row, 0.0) + seconds

    generations = timing["generations"]
    timed = 0.0
    for gen in generations:
        if not gen["phases"]:  # an old timing.json: the generation's total only
            add("generations not broken down", gen["seconds"])
            timed += gen["seconds"]
        for phase, seconds in gen["phases"].items():
            add(PHASE_ROWS[phase], seconds)
            timed += seconds
    for phase, seconds in timing["run"]["phases"].items():
        add(PHASE_ROWS[phase], seconds)
        timed += seconds
    run_s = timing["run"]["seconds"]
    if run_s is None:  # an old file: only generations were timed
        run_s = sum(g["seconds"] for g in generations)
    add("loop bookkeeping (untimed)", max(0.0, run_s - timed))
    entry = timing["entry"]
    if "seconds" in entry:
        add("run outputs", entry.get("outputs", 0.0))
        add("entry bookkeeping (untimed)",
            max(0.0, entry["seconds"] - run_s - entry.get("outputs", 0.0)))
    rows["_total"] = entry.get("seconds", run_s)
    return rows


def part_profile(out: Path, part: str) -> dict:
    """Seconds and shares of wall time per row for one part of a reproduction's output."""
    top = json.loads((out / "timing.json").read_text())
    invocations = [i for i in top.get("invocations", []) if i["part"] == part]
    if not invocations:
        raise ValueError(f"--part {part}: no invocation of it in {out / 'timing.json'}")
    files = sorted((out / part).rglob("timing.json"))
    rows: dict[str, float] = {}
    for f in files:
        for row, seconds in run_profile(f).items():
            rows[row] = rows.get(row, 0.0) + seconds
    runs_s = rows.pop("_total", 0.0)
    part_s = sum(i["seconds"] for i in invocations)
    rows["composing the part's configs"] = max(0.0, part_s - runs_s)
    rows["imports and process start-up"] = sum(i.get("startup_s") or 0.0 for i in invocations)
    reports = top.get("reports", [])
    rows["report and figures"] = reports[-1]["seconds"] if reports else 0.0
    wall = sum(rows.values())
    table = [{"row": name, "holds": holds, "seconds": round(rows.get(name, 0.0), 2),
              "share": rows.get(name, 0.0) / wall if wall else 0.0} for name, holds in ROWS]
    return {"part": part, "wall_s": round(wall, 2), "part_s": part_s, "runs": len(files),
            "generations_trained": sum(len(e["generations"]) for f in files
                                       for t in [read_timing(f)] for e in [*t["earlier"], t]),
            "invocations": [{k: i.get(k) for k in ("seconds", "startup_s", "command",
                                                    "finished", "overrides", "machine")}
                            for i in invocations],
            "rows": table}


def markdown(profile: dict) -> str:
    if profile.get("layout") == "reproduce_v2":
        return _v2().markdown(profile)
    lines = ["| where | seconds | share of wall time | what it holds |",
             "| --- | ---: | ---: | --- |"]
    for r in profile["rows"]:
        lines.append(f"| {r['row']} | {r['seconds']:.1f} | {100 * r['share']:.1f}% | "
                     f"{r['holds']} |")
    lines.append(f"| **wall time** | **{profile['wall_s']:.1f}** | 100% | {profile['runs']} "
                 f"run(s), {profile['generations_trained']} generation(s) trained |")
    return "\n".join(lines)


def _v2():
    """scripts/profile_part_v2.py (imported late: it reads this module's rows)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import profile_part_v2

    return profile_part_v2


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, nargs="?", default=Path("outputs/reproduce_v2/d2"),
                        help="scripts/reproduce_v2.py's --out (default %(default)s), or "
                             "scripts/reproduce.py's")
    parser.add_argument("--part", default=None,
                        help="reproduce_v2: the part's number (default: the latest finished "
                             "part); reproduce.py: the part's name (e.g. collapse)")
    parser.add_argument("--json", type=Path, default=None, help="also write the profile here")
    args = parser.parse_args(argv)
    try:
        if _v2().state_file(args.out) is not None:
            profile = _v2().part_profile(args.out, args.part)
        elif (args.out / "timing.json").exists():
            if args.part is None:
                raise ValueError("--part: scripts/reproduce.py's output needs the part's name "
                                 "(e.g. --part collapse)")
            profile = part_profile(args.out, args.part)
        else:
            raise ValueError(f"{args.out}: neither state.json (scripts/reproduce_v2.py --out; "
                             "parts.json in its --results) nor timing.json "
                             "(scripts/reproduce.py --out) is there")
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(markdown(profile))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(profile, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
