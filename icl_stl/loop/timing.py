"""Where a loop's wall time goes: per-phase timers cheap enough to leave on.

Each phase is timed with `time.perf_counter` around whole calls (a few timer reads per
generation, never per step). Phases nest: a checkpoint written inside training counts as a
checkpoint write, not as training, so a generation's phases are disjoint and sum to at most its
wall time (the rest is bookkeeping: logging, progress bars, fault points).

timing.json (written by `LoopRun` beside summary.json; entry points add their own part):

    {"generations": [{"generation": 1, "seconds": 61.2, "trained_members": 4,
                      "phases": {"data": 0.1, "labelling": 2.3, "training": 55.0,
                                 "evaluation": 3.1, "checkpoints": 0.4}}, ...],
     "run": {"seconds": 130.0, "phases": {"setup": 0.8, "baselines": 0.2, "resume": 0.0}},
     "entry": {"seconds": 131.5, "outputs": 0.9, "startup": 2.1},
     "earlier": [{"generations": [...], "run": {...}, "entry": {...}}, ...]}

"generations" are those this execution trained (none when it only loaded finished ones); a run
resumed in the same directory keeps each earlier execution's record under "earlier", so a run
finished over several invocations is profiled whole. Files written before the phases were
recorded hold only "generations" without "phases"; `read_timing` reads both.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from icl_stl.persistence import CheckpointSlot, atomic_write_json, read_json

# A generation's phases, in the order a generation runs them.
GENERATION_PHASES = ("data", "labelling", "training", "evaluation", "checkpoints")
# Once per run: building the test sets and learners, the baselines' errors, and loading the
# generations a resumed run had already finished.
RUN_PHASES = ("setup", "baselines", "resume")
# Measured by the entry point (cli/loop.py) around the run: summary.json and its figures, and
# the process's age when the run started (imports and start-up; only for icl-stl-loop itself).
ENTRY_PHASES = ("outputs", "startup")


class PhaseTimer:
    """Exclusive seconds per named phase: time spent in a nested phase is its own, not its
    parent's, so the phases never count a second twice."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._open: list[list[float]] = []  # per open phase: [start, seconds of its children]

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        frame = [time.perf_counter(), 0.0]
        self._open.append(frame)
        try:
            yield
        finally:
            self._open.pop()
            elapsed = time.perf_counter() - frame[0]
            self.seconds[name] = self.seconds.get(name, 0.0) + elapsed - frame[1]
            if self._open:
                self._open[-1][1] += elapsed

    def record(self) -> dict[str, float]:
        return {name: round(s, 4) for name, s in self.seconds.items()}


class TimedSlot(CheckpointSlot):
    """A checkpoint slot whose writes count as the timer's "checkpoints" phase (the engine's
    mid-training saves, which would otherwise count as training)."""

    def __init__(self, directory: Path, name: str, timer: PhaseTimer) -> None:
        super().__init__(directory, name)
        self.timer = timer

    def save(self, state: dict) -> Path:
        with self.timer.phase("checkpoints"):
            return super().save(state)


def process_age_s() -> float | None:
    """Seconds since this process started (interpreter start-up and imports included), from
    /proc on Linux; None where /proc is not there."""
    try:
        stat = Path("/proc/self/stat").read_text()
        uptime = float(Path("/proc/uptime").read_text().split()[0])
    except OSError:
        return None
    import os

    # Field 22 (starttime, in clock ticks after boot); the command name before it may hold
    # spaces, so count from its closing parenthesis.
    start_ticks = int(stat.rsplit(")", 1)[1].split()[19])
    return max(0.0, uptime - start_ticks / os.sysconf("SC_CLK_TCK"))


def _normalised(data: dict) -> dict:
    return {"generations": [{"phases": {}, **g} for g in data.get("generations", [])],
            "run": {"seconds": None, "phases": {}, **data.get("run", {})},
            "entry": data.get("entry", {})}


def read_timing(path: Path) -> dict:
    """A run's timing.json in the current layout, whatever version wrote it: old files (only
    per-generation seconds) gain empty phase records, so that nothing is invented for them;
    "earlier" lists the earlier executions' records, normalised the same way."""
    data = read_json(path)
    return {**_normalised(data), "earlier": [_normalised(e) for e in data.get("earlier", [])]}


def write_timing(run_dir: Path, generations: list[dict], run: dict) -> None:
    """The loop's part of timing.json (an entry point's part, if any, is added after); what an
    earlier execution in the same directory wrote moves to "earlier"."""
    path = Path(run_dir) / "timing.json"
    earlier = []
    if path.exists():
        try:
            previous = read_json(path)
        except (OSError, ValueError):  # a damaged file: its times are lost, not the run
            previous = {}
        earlier = [*previous.pop("earlier", []), previous] if previous else []
    atomic_write_json(path, {"generations": generations, "run": run,
                             **({"earlier": earlier} if earlier else {})})


def add_entry_timing(run_dir: Path, entry: dict) -> None:
    """Add the entry point's seconds to a run's timing.json (none there: nothing to add to)."""
    path = Path(run_dir) / "timing.json"
    if not path.exists():
        return
    data = read_json(path)
    data["entry"] = {**data.get("entry", {}), **{k: round(v, 4) if isinstance(v, float) else v
                                                 for k, v in entry.items()}}
    atomic_write_json(path, data)
