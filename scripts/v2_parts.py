"""The confirmatory reproduction's parts: open, time, close and plan them (used by
scripts/reproduce_v2.py; the programme's record is v2_programme's, the cutting v2_schedule's).

What a part records for its profile (scripts/profile_part.py), in state.json's part record,
beside the keys the schedule reads (all optional: parts recorded before them have none):
- each invocation: `started_at`, `ended_at` (epoch seconds of the part's runner) and
  `before_s` (the reproduce_v2 process's seconds before the runner started: imports, the arms'
  Hydra compose, the plan; in a process that ran an earlier part, from the end of that part's
  report);
- `executions`: one per `icl-stl-loop` process that ran a segment: its worker, block,
  invocation, `ended_at`, and its run's timing.json record (generations with their phases, the
  run's, the entry point's with its start-up) when the process wrote one (`timing`: null when
  it was stopped before);
- `report_s`: the seconds from the part's end to its process's next step, which is the report
  over everything finished (a completed part in a process that went on; else absent).
"""

from __future__ import annotations

import datetime
import json
import threading
import time
from pathlib import Path

import v2_schedule as schedule
from v2_programme import (
    PRIOR_STEP_SECONDS,
    SETTING_RULES,
    _git,
    atomic_write,
    blocks,
    finished_generations,
    first_unfinished,
    load_state,
    pending,
    pending_order,
    run_dir,
    run_name,
    save_state,
    update_blocks,
)

from icl_stl.runs.provenance import cpu_label


def estimator(prog: dict, state: dict, out: Path, args) -> schedule.Estimator:
    """Seconds per generation: this programme's timed generations (every block's timing.json)
    where there are any; until then the pilot-calibrated prior, or an assumed rate
    (--member-steps-per-s: the step's time proportional to the members)."""
    rate = getattr(args, "member_steps_per_s", None)
    measured = None if rate else getattr(SETTING_RULES.get(prog.get("setting")),
                                         "member_steps_per_s", None)  # P9's: the d2 one
    rate = rate or measured
    prior = {1: 1.0 / rate} if rate else PRIOR_STEP_SECONDS
    label = (f"an assumed {rate:g} member steps/s per worker" if rate else
             "the CPU pilot's seconds per generation")
    if measured:
        label += " (the d = 2 programme's measured rate, scripts/v2_p9.py)"
    est = schedule.Estimator(prior, prog["later_steps"], args.speedup, prior_label=label)
    est.this_machine = schedule.Estimator(prior, prog["later_steps"], args.speedup)
    here = cpu_label()
    for block in blocks(prog, out, state):
        path = run_dir(out, block) / "timing.json"
        if not path.exists():
            continue
        for row in json.loads(path.read_text()).get("generations", []):
            if row.get("resumed"):
                continue
            for one in (est, est.this_machine) if row.get("machine") == here else (est,):
                table = one.gate_measured if block.arm == schedule.GATE else one.measured
                table.setdefault(int(row["trained_members"]), []).append(float(row["seconds"]))
    return est


def mid_generation(prog: dict, out: Path, block: schedule.Block) -> set[int]:
    """Generations of the block with a mid-training resume point (a killed invocation's)."""
    ckpt = out / "checkpoints" / run_name(prog, block)
    return {int(p.parent.name[4:]) for p in ckpt.glob("gen_*/train*.pt")}


def merge_timing(out: Path, block: schedule.Block, resumed: set[int] = frozenset()) -> None:
    """Keep every generation's wall time in the block's timing.json (the loop writes only the
    generations of its latest invocation there, and none when it is killed). A generation
    resumed from a mid-training checkpoint is marked `resumed` and left out of the estimates:
    its time is only the part after the kill. The process's own record goes to the part's
    `executions` first (for the profile)."""
    path = run_dir(out, block) / "timing.json"
    keep = path.parent / "timing.all.json"
    merged = json.loads(keep.read_text()) if keep.exists() else {"generations": []}
    written = json.loads(path.read_text()) if path.exists() else {}
    try:
        record_execution(out, block, written if "run" in written else None)
    except (OSError, ValueError, KeyError, TypeError) as err:  # the profile's loss, not the run's
        print(f"[reproduce_v2] {block.name}: its process's timing was not recorded ({err!r})",
              flush=True)
    latest, here = written.get("generations", []), cpu_label()
    seen = {(r["generation"], round(r["seconds"], 6)) for r in merged["generations"]}
    for row in latest:
        if (row["generation"], round(row["seconds"], 6)) not in seen:
            merged["generations"] = [r for r in merged["generations"]
                                     if r["generation"] != row["generation"]]
            merged["generations"].append({**row, "machine": here,
                                          **({"resumed": True}
                                             if row["generation"] in resumed else {})})
    merged["generations"].sort(key=lambda r: r["generation"])
    atomic_write(keep, merged)
    atomic_write(path, merged)


def machine() -> dict:
    """Where an invocation ran (`provenance.machine`: the CPU's model name among it; a compiled
    kernel's rounding may differ between CPUs) and the code's commit."""
    from icl_stl.runs.provenance import machine as where

    return {**where(), "commit": _git("rev-parse", "HEAD")}


def open_part(prog: dict, state: dict, out: Path, args) -> dict | None:
    """The unfinished part (resumed as it was planned), else a new part of what is left."""
    record_report(out, state)
    if state["parts"] and not state["parts"][-1]["finished"]:
        return state["parts"][-1]
    for line in update_blocks(prog, state, out):
        print(f"[reproduce_v2] added: {line}", flush=True)
    est = estimator(prog, state, out, args)
    segments = schedule.pack(pending(prog, out, blocks(prog, out, state)), prog["horizon"],
                             args.workers, 60 * args.part_minutes, est)
    save_state(out, state)
    if not segments:
        return None
    part = {"index": len(state["parts"]) + 1, "workers": args.workers,
            "segments": [s.to_json() for s in segments],
            "estimate_s": schedule.makespan(segments, args.workers),
            "estimate_source": est.source(), "created": _now(), "finished": False,
            "invocations": []}
    if prog.get("gate_first"):
        import v2_gate

        part["stage"] = v2_gate.stage_of(part["segments"])
    state["parts"].append(part)
    save_state(out, state)
    return part


# Within one reproduce_v2 process: when its previous part's report ended (epoch seconds), and
# which part was closed last (its report's seconds are recorded at the process's next step).
_clock = {"previous_end": None, "closed": None}
_state_lock = threading.Lock()  # the workers' threads record their executions one at a time


def record_execution(out: Path, block: schedule.Block, timing: dict | None) -> None:
    """Add one `icl-stl-loop` process's record to the unfinished part that runs `block` (its
    run's timing.json as the loop wrote it, before the merge; None when it wrote none)."""
    with _state_lock:
        state = load_state(out)
        part = state["parts"][-1] if state["parts"] else None
        if part is None or part["finished"]:
            return
        worker = next((s["worker"] for s in part["segments"] if s["block"] == block.name), None)
        if worker is None:
            return
        row = {"worker": worker, "block": block.name,
               "invocation": len(part["invocations"]) + 1, "ended_at": round(time.time(), 3),
               "timing": None if timing is None else
               {k: v for k, v in timing.items() if k != "earlier"}}
        part.setdefault("executions", []).append(row)
        save_state(out, state)


def _process_started_at() -> float:
    from icl_stl.loop.timing import process_age_s

    age = process_age_s()
    return time.time() - (age or 0.0)


def record_report(out: Path, state: dict | None = None) -> None:
    """The seconds since this process closed its last part (the report over everything
    finished, which reproduce_v2 writes after a completed part), into that part's record."""
    closed = _clock["closed"]
    if closed is None or closed[0] != Path(out).resolve():
        return
    _clock["closed"] = None
    _, index, ended_at = closed
    now = time.time()
    state = state if state is not None else load_state(out)
    state["parts"][index - 1]["report_s"] = round(now - ended_at, 2)
    _clock["previous_end"] = now
    save_state(out, state)


def close_part(out: Path, index: int, seconds: float, completed: bool, command: str) -> None:
    state = load_state(out)
    part = state["parts"][index - 1]
    ended_at = time.time()
    started_at = ended_at - seconds
    since = _clock["previous_end"] or _process_started_at()
    part["invocations"].append({"seconds": round(seconds, 1), "completed": completed,
                                "finished": _now(), "command": command, "machine": machine(),
                                "started_at": round(started_at, 3),
                                "ended_at": round(ended_at, 3),
                                "before_s": round(max(0.0, started_at - since), 2)})
    _clock["closed"] = (Path(out).resolve(), index, ended_at) if completed else None
    part["wall_s"] = round(sum(i["seconds"] for i in part["invocations"]), 1)
    part["finished"] = completed
    save_state(out, state)


def _now() -> str:
    return datetime.datetime.now().isoformat(timespec="seconds")


def _left(prog, out, made, est) -> tuple[float, int]:
    """(seconds of training left over all unfinished blocks, summed; generations left)."""
    total, gens = 0.0, 0
    for block, first in pending(prog, out, made):
        for g in range(first, block.last_generation(prog["horizon"]) + 1):
            total += est.block_seconds(block, g)
            gens += 1
    return total, gens


def finished_now(prog: dict, out: Path) -> dict[str, set[int]]:
    """Every block's finished generations (to tell which a part finished since it started)."""
    return {b.name: finished_generations(prog, out, b) for b in blocks(prog, out)}


def progress_line(prog: dict, part: dict, out: Path, est: schedule.Estimator, started: float,
                  before: dict[str, set[int]]) -> str:
    """Generations done, and the time left at the pace of the generations this invocation
    finished (the wall time to the last of them, against their estimate on the busiest
    worker), else at the estimate. `started`: the invocation's start (time.time())."""
    made = {b.name: b for b in blocks(prog, out)}
    done, total, left, now_done, last = 0, 0, {}, {}, started
    for seg in part["segments"]:
        block, w = made[seg["block"]], seg["worker"]
        finished = finished_generations(prog, out, block)
        for g in range(seg["first"], seg["last"] + 1):
            total += 1
            cost = est.block_seconds(block, g)
            if g not in finished:
                left[w] = left.get(w, 0.0) + cost
                continue
            done += 1
            if g not in before.get(block.name, set()):
                now_done[w] = now_done.get(w, 0.0) + cost
                metrics = out / "checkpoints" / run_name(prog, block) / f"gen_{g:03d}"
                last = max(last, (metrics / "metrics.json").stat().st_mtime)
    pace = (last - started) / max(now_done.values()) if now_done else 1.0
    basis = f"at this part's pace, {pace:.2g} x the estimate" if now_done else "estimated"
    later = []
    if prog.get("gate_first"):  # the loops the gate stage has still to make, if all passed
        import v2_gate

        later = v2_gate.provisional_blocks(prog, load_state(out), list(made.values()))
    all_left, _ = _left(prog, out, list(made.values()) + later, est)
    elapsed = datetime.datetime.now().timestamp() - started
    return (f"[part {part['index']} {datetime.datetime.now():%H:%M}] {done} of {total} "
            f"generations done, {elapsed / 60:.0f} min elapsed, about "
            f"{pace * max(left.values(), default=0.0) / 60:.0f} min left in this part; the "
            f"programme about {pace * all_left / part['workers'] / 3600:.1f} h left ({basis})")


def plan_text(prog: dict, out: Path, args) -> str:
    """The parts that remain, simulated with today's estimates (spares are added only when
    the rules need them, so they are not in it)."""
    record_report(out)
    state = load_state(out)
    made = blocks(prog, out, state)
    est = estimator(prog, state, out, args)
    provisional = []
    if prog.get("gate_first"):  # the loops the gate stage has not made yet, if all passed
        import v2_gate

        provisional = v2_gate.provisional_blocks(prog, state, made)
        made = made + provisional
    progress = {b.name: first_unfinished(prog, out, b) for b in made}
    lines = [f"programme {prog['setting']} in {out}: rules_commit {prog.get('rules_commit')}; "
             f"estimates from {est.source()}; parts of at most {args.part_minutes:g} min on "
             f"{args.workers} workers"]
    unfinished = [p for p in state["parts"] if not p["finished"]]
    if unfinished:
        lines.append(f"part {unfinished[-1]['index']} is unfinished: the next invocation "
                     "resumes it")
    first = index = len(state["parts"]) + (0 if unfinished else 1)
    total = 0.0
    while True:
        todo = [(b, progress[b.name]) for b in pending_order(made)
                if progress[b.name] <= b.last_generation(prog["horizon"])]
        gate = [row for row in todo if row[0].arm == schedule.GATE]
        todo = gate if provisional and gate else todo  # the loops wait for the gate stage
        segments = schedule.pack(todo, prog["horizon"], args.workers, 60 * args.part_minutes,
                                 est)
        if not segments:
            break
        span = schedule.makespan(segments, args.workers)
        total += span
        lines.append(f"part {index}: ~{span / 60:.0f} min: " + ", ".join(
            f"{s.block.name}{' (provisional)' if s.block in provisional else ''} gen "
            f"{s.first}-{s.last}" for s in segments))
        for s in segments:
            progress[s.block.name] = s.last + 1
        index += 1
    lines.append(f"total about {total / 3600:.1f} h in {index - first} parts (spares, if the "
                 "gate needs them, come after)")
    if provisional:
        lines.append("gate-first stage: the loops' blocks marked provisional are made once "
                     "the gate stage has decided their seeds (planned as if every candidate "
                     "passed; further gate rounds, for the candidates that miss, come after)")
    return "\n".join(lines)
