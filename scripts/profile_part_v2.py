"""Where one part of the confirmatory reproduction (scripts/reproduce_v2.py) spends its wall
time, worker by worker (used by scripts/profile_part.py, which reads this layout when --out holds
a state.json).

A part runs its segments on W workers, one `icl-stl-loop` process at a time per worker, all
started by one reproduce_v2 process. Its wall time is that process's own clock: its start-up
and planning before the workers start (`before_s`), the workers' span (the runner's seconds),
and the report after a completed part (`report_s`), summed over the part's invocations (a
killed part is resumed by a later one). Each worker's column accounts for that whole wall time:
- the reproduce_v2 process's start-up and report (the worker does not exist yet, or is done);
- each of its processes: start-up before the run, the loop's timed phases (timing.json), what is
  left between the timers ("untimed"), the run's outputs;
- between its processes (untimed): process exits, the runner's timing merge, and any process
  that was stopped before it wrote its timing;
- idle at the part's end: from its last process's end until the other worker's.
The "both workers" column is the mean of the workers' seconds, so its share is the share of the
part's worker-time (W x wall time): the rows add up to the wall time in every column.

A results folder's copy of state.json (parts.json, written by the report with --results) is read
the same way. Parts run before scripts/v2_parts.py recorded their invocations' times and processes
(`started_at`, `executions`) get what their merged timing.json still holds: each generation's
phases; the rest of the runner's seconds is the row "not recorded", and start-up and report
are unknown (0, and said so).
"""

from __future__ import annotations

import json
from pathlib import Path

from profile_part import PHASE_ROWS, execution_profile

# (row, what it holds), in the order a part spends them.
ROWS = (
    ("programme start-up and planning", "reproduce_v2 before the workers start: imports, the "
     "arms' Hydra compose, state, the part's plan"),
    ("loop process start-up", "each icl-stl-loop process before its run: interpreter, torch, "
     "Hydra"),
    ("entry bookkeeping (untimed)", "settings parsing, logger, locks"),
    ("run set-up", "test sets, the Bayes predictions aside, S_0, learners (LoopRun)"),
    ("baselines", "the baselines' errors and the Bayes predictions on the test set"),
    ("resume", "loading generations a resumed run had already finished"),
    ("S_i assembly", "real parts and concatenation (labelling apart)"),
    ("labelling", "the learner's (or oracle's) labels and filters of synthetic prompts"),
    ("training", "optimizer steps (its checkpoint writes apart)"),
    ("evaluation", "test risk, calibration, risks on S_i, probe metrics"),
    ("checkpoint writes", "synthetic.pt, train.pt, model.pt, metrics.json"),
    ("run outputs", "summary.json and the run's figures"),
    ("loop bookkeeping (untimed)", "between the timers inside the loop"),
    ("between processes (untimed)", "process exits, the runner's timing merge, processes "
     "stopped before they wrote their timing"),
    ("idle at the part's end", "this worker done, waiting for the other(s)"),
    ("not recorded", "a part run before its processes were recorded: all but its generations' "
     "phases"),
    ("report and figures", "the report over everything finished, after the part"),
)
assert {PHASE_ROWS[p] for p in PHASE_ROWS} <= {name for name, _ in ROWS}


STATE_FILES = ("state.json", "parts.json")  # --out's, or its copy in a results folder


def state_file(out: Path) -> Path | None:
    return next((out / n for n in STATE_FILES if (out / n).exists()), None)


def load_part(out: Path, part: str | int | None) -> dict:
    path = state_file(out)
    state = json.loads(path.read_text())
    parts = state.get("parts", [])
    if part is None:
        finished = [p for p in parts if p["finished"]]
        if not finished:
            raise ValueError(f"{path}: no part has finished yet (--part N profiles an "
                             "unfinished one)")
        return finished[-1]
    try:
        index = int(part)
    except ValueError:
        raise ValueError(f"--part {part}: a part's number is needed (1 to {len(parts)})") from None
    if not 1 <= index <= len(parts):
        raise ValueError(f"--part {part}: {path} holds parts 1 to {len(parts)}")
    return parts[index - 1]


def _add(rows: dict[str, float], row: str, seconds: float) -> None:
    rows[row] = rows.get(row, 0.0) + seconds


def process_rows(timing: dict) -> tuple[dict[str, float], float]:
    """One icl-stl-loop process's rows (its timing.json record, as the loop wrote it) and the
    seconds they cover (start-up + the entry point's seconds)."""
    record = {"generations": [{"phases": {}, **g} for g in timing.get("generations", [])],
              "run": {"seconds": None, "phases": {}, **timing.get("run", {})},
              "entry": timing.get("entry", {})}  # as icl_stl.loop.timing.read_timing reads it
    rows = execution_profile(record)
    total = rows.pop("_total")
    startup = float(record["entry"].get("startup") or 0.0)
    rows["loop process start-up"] = startup
    return rows, total + startup


def recorded_profile(part: dict) -> tuple[list[dict[str, float]], int]:
    """Seconds per row for each worker, from the invocations' times and the processes' records;
    and the generations trained."""
    workers = [dict() for _ in range(part["workers"])]
    generations = 0
    for number, inv in enumerate(part["invocations"], start=1):
        runs = [e for e in part.get("executions", []) if e["invocation"] == number]
        for w, rows in enumerate(workers):
            _add(rows, "programme start-up and planning", inv.get("before_s", 0.0))
            mine = [e for e in runs if e["worker"] == w]
            covered = 0.0
            for e in mine:
                if e["timing"] is None:
                    continue
                seconds, total = process_rows(e["timing"])
                for row, s in seconds.items():
                    _add(rows, row, s)
                covered += total
                generations += len(e["timing"].get("generations", []))
            last = max((e["ended_at"] for e in mine), default=inv["started_at"])
            last = min(max(last, inv["started_at"]), inv["ended_at"])
            _add(rows, "between processes (untimed)",
                 max(0.0, last - inv["started_at"] - covered))
            _add(rows, "idle at the part's end", inv["ended_at"] - last)
    for rows in workers:
        _add(rows, "report and figures", part.get("report_s", 0.0))
    return workers, generations


def generations_profile(out: Path, part: dict) -> tuple[list[dict[str, float]], int]:
    """Seconds per row for each worker of a part recorded before its processes were: its
    segments' generations from each block's merged timing.json."""
    workers = [dict() for _ in range(part["workers"])]
    generations = 0
    runner_s = sum(i["seconds"] for i in part["invocations"])
    for seg in part["segments"]:
        rows = workers[seg["worker"]]
        paths = sorted((out / "runs").glob(f"*/{seg['block']}/timing.json"))
        done = json.loads(paths[0].read_text()).get("generations", []) if paths else []
        for gen in done:
            if not seg["first"] <= gen["generation"] <= seg["last"]:
                continue
            generations += 1
            phases = gen.get("phases", {})
            for phase, s in phases.items():
                _add(rows, PHASE_ROWS[phase], s)
            _add(rows, "loop bookkeeping (untimed)",
                 max(0.0, gen["seconds"] - sum(phases.values())))
    for rows in workers:
        _add(rows, "not recorded", max(0.0, runner_s - sum(rows.values())))
    return workers, generations


def part_profile(out: Path, part_arg: str | int | None) -> dict:
    part = load_part(out, part_arg)
    invocations = part["invocations"]
    if not invocations:
        raise ValueError(f"--part {part['index']}: no invocation of it has ended yet")
    exact = all("started_at" in i for i in invocations) and "executions" in part
    if exact:
        workers, generations = recorded_profile(part)
        wall = sum(i["seconds"] + i.get("before_s", 0.0) for i in invocations) + \
            part.get("report_s", 0.0)
    else:
        workers, generations = generations_profile(out, part)
        wall = sum(i["seconds"] for i in invocations)
    count = len(workers)
    table = []
    for name, holds in ROWS:
        per_worker = [w.get(name, 0.0) for w in workers]
        mean = sum(per_worker) / count
        table.append({"row": name, "holds": holds, "seconds": round(mean, 2),
                      "share": mean / wall if wall else 0.0,
                      "workers": [{"worker": w, "seconds": round(s, 2),
                                   "share": s / wall if wall else 0.0}
                                  for w, s in enumerate(per_worker)]})
    return {"layout": "reproduce_v2", "out": str(out), "part": part["index"],
            "recorded": "processes" if exact else "generations only",
            "finished": part["finished"], "workers": count, "wall_s": round(wall, 2),
            "runner_s": round(sum(i["seconds"] for i in invocations), 2),
            "before_s": round(sum(i.get("before_s", 0.0) for i in invocations), 2),
            "report_s": part.get("report_s"), "estimate_s": part.get("estimate_s"),
            "generations_trained": generations, "segments": part["segments"],
            "invocations": [{k: i.get(k) for k in ("seconds", "before_s", "started_at",
                                                    "ended_at", "completed", "command",
                                                    "machine")} for i in invocations],
            "rows": table}


def markdown(profile: dict) -> str:
    count = profile["workers"]
    head = "".join(f" worker {w} s | share |" for w in range(count))
    lines = [f"| where |{head} both workers | what it holds |",
             "| --- |" + " ---: | ---: |" * count + " ---: | --- |"]
    for r in profile["rows"]:
        cells = "".join(f" {w['seconds']:.1f} | {100 * w['share']:.1f}% |"
                        for w in r["workers"])
        lines.append(f"| {r['row']} |{cells} {100 * r['share']:.1f}% | {r['holds']} |")
    note = ("" if profile["recorded"] == "processes" else
            "; recorded before its processes were: start-up and report unknown")
    lines.append("| **wall time** |" + f" **{profile['wall_s']:.1f}** | 100% |" * count
                 + f" 100% | part {profile['part']}: {len(profile['segments'])} segment(s), "
                 f"{profile['generations_trained']} generation(s) trained{note} |")
    return "\n".join(lines)
