"""scripts/profile_part.py on a reproduce_v2 part: each worker's column and the workers' mean add
up to the part's wall time (its start-up, its runner's seconds, its report), a worker's wait
for the other is its own row, and what scripts/v2_parts.py records for it is additive (the
block's timing.json keeps its old form)."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import pytest

from icl_stl.loop.timing import add_entry_timing, write_timing

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "scripts"))
profile_part = importlib.import_module("profile_part")
profile_v2 = importlib.import_module("profile_part_v2")
parts = importlib.import_module("v2_parts")
schedule = importlib.import_module("v2_schedule")


def _timing(gens: list[int], training: float, startup: float, entry: float) -> dict:
    """A loop process's timing.json: each generation `training` s of training and 1 s of
    evaluation inside 2.5 s more of generation; run = generations + 1 s set-up; the entry
    point's seconds `entry` with 0.5 s of outputs."""
    rows = [{"generation": g, "seconds": training + 2.5, "trained_members": 2,
             "phases": {"training": training, "evaluation": 1.0}} for g in gens]
    run_s = sum(r["seconds"] for r in rows) + 1.0
    return {"generations": rows, "run": {"seconds": run_s, "phases": {"setup": 1.0}},
            "entry": {"seconds": entry, "outputs": 0.5, "startup": startup}}


def _part(**extra) -> dict:
    return {"index": 1, "workers": 2, "finished": True, "estimate_s": 90.0,
            "segments": [{"worker": 0, "block": "p1-1-2", "first": 0, "last": 1},
                         {"worker": 1, "block": "p2-1-2", "first": 0, "last": 0},
                         {"worker": 1, "block": "lambda1-1-2", "first": 0, "last": 0}],
            **extra}


def _write_state(out: Path, *part_list: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "state.json").write_text(json.dumps({"blocks": [], "parts": list(part_list)}))


def test_each_worker_accounts_for_the_parts_whole_wall_time(tmp_path):
    executions = [
        {"worker": 0, "block": "p1-1-2", "invocation": 1, "ended_at": 1095.0,
         "timing": _timing([0, 1], 30.0, 4.0, 80.0)},
        {"worker": 1, "block": "p2-1-2", "invocation": 1, "ended_at": 1050.0,
         "timing": _timing([0], 30.0, 4.0, 40.0)},
        {"worker": 1, "block": "lambda1-1-2", "invocation": 1, "ended_at": 1080.0,
         "timing": None},  # stopped before it wrote its timing
    ]
    _write_state(tmp_path, _part(
        invocations=[{"seconds": 100.0, "started_at": 1000.0, "ended_at": 1100.0,
                      "before_s": 6.0}], executions=executions, report_s=9.0))
    profile = profile_part.main([str(tmp_path), "--json", str(tmp_path / "p.json")])
    assert profile == 0
    profile = json.loads((tmp_path / "p.json").read_text())
    assert profile["layout"] == "reproduce_v2" and profile["recorded"] == "processes"
    assert profile["wall_s"] == 6.0 + 100.0 + 9.0
    rows = {r["row"]: r for r in profile["rows"]}
    for w in (0, 1):
        assert sum(r["workers"][w]["seconds"] for r in profile["rows"]) == pytest.approx(115.0)
        assert sum(r["workers"][w]["share"] for r in profile["rows"]) == pytest.approx(1.0)
    assert sum(r["seconds"] for r in profile["rows"]) == pytest.approx(115.0, abs=0.05)

    def worker(row: str, w: int) -> float:
        return rows[row]["workers"][w]["seconds"]

    assert worker("training", 0) == 60.0 and worker("training", 1) == 30.0
    assert rows["training"]["seconds"] == 45.0 and rows["training"]["share"] == 45.0 / 115
    assert worker("loop process start-up", 0) == 4.0
    assert worker("run set-up", 0) == 1.0 and worker("run outputs", 0) == 0.5
    assert worker("loop bookkeeping (untimed)", 0) == pytest.approx(2 * 1.5)  # 2.5 - 1 each
    # worker 0: one process of 4 + 80 s ended at 95 s; worker 1: 4 + 40 s, then one stopped
    assert worker("between processes (untimed)", 0) == pytest.approx(95 - 84)
    assert worker("between processes (untimed)", 1) == pytest.approx(80 - 44)
    assert worker("idle at the part's end", 0) == 5.0 and worker("idle at the part's end", 1) == 20
    assert worker("programme start-up and planning", 1) == 6.0
    assert worker("report and figures", 0) == 9.0 and worker("not recorded", 0) == 0.0
    assert profile["generations_trained"] == 3
    table = profile_part.markdown(profile)
    assert "| idle at the part's end | 5.0 | 4.3% | 20.0 | 17.4% | 10.9% |" in table
    assert table.splitlines()[-1].startswith("| **wall time** | **115.0** | 100% | **115.0**")


def test_the_latest_finished_part_by_default_and_one_line_errors(tmp_path, capsys):
    inv = {"seconds": 10.0, "started_at": 0.0, "ended_at": 10.0, "before_s": 0.0}
    unfinished = {**_part(invocations=[inv], executions=[]), "index": 2, "finished": False}
    _write_state(tmp_path, _part(invocations=[inv], executions=[]), unfinished)
    assert profile_v2.part_profile(tmp_path, None)["part"] == 1
    assert profile_v2.part_profile(tmp_path, "2")["finished"] is False
    assert profile_part.main([str(tmp_path), "--part", "3"]) == 2
    assert "holds parts 1 to 2" in capsys.readouterr().err
    _write_state(tmp_path / "none", unfinished)
    assert profile_part.main([str(tmp_path / "none")]) == 2
    assert "no part has finished yet" in capsys.readouterr().err
    (tmp_path / "v1").mkdir()
    (tmp_path / "v1" / "timing.json").write_text("{}")
    assert profile_part.main([str(tmp_path / "v1")]) == 2  # reproduce.py's: --part needed
    assert "--part" in capsys.readouterr().err
    assert profile_part.main([str(tmp_path / "nothing")]) == 2
    (tmp_path / "results").mkdir()  # a results folder's copy of state.json
    (tmp_path / "results" / "parts.json").write_text((tmp_path / "state.json").read_text())
    assert profile_part.main([str(tmp_path / "results")]) == 0


def test_a_part_recorded_before_its_processes_were_is_profiled_from_its_generations(tmp_path):
    """Parts run before v2_parts recorded times (no started_at, no executions): the generations'
    phases of the part's own segments, the rest of the runner's time `not recorded`."""
    run = tmp_path / "runs" / "p1" / "p1-1-2"
    run.mkdir(parents=True)
    merged = _timing([0, 1, 2], 30.0, 0.0, 0.0)["generations"]  # generation 2: a later part
    (run / "timing.json").write_text(json.dumps({"generations": merged}))
    _write_state(tmp_path, _part(invocations=[{"seconds": 100.0, "completed": True}]))
    profile = profile_v2.part_profile(tmp_path, 1)
    assert profile["recorded"] == "generations only" and profile["wall_s"] == 100.0
    rows = {r["row"]: r["workers"] for r in profile["rows"]}
    assert rows["training"][0]["seconds"] == 60.0 and rows["training"][1]["seconds"] == 0.0
    assert rows["not recorded"][0]["seconds"] == pytest.approx(100 - 2 * 32.5)
    assert rows["not recorded"][1]["seconds"] == 100.0
    assert profile["generations_trained"] == 2
    assert "start-up and report unknown" in profile_part.markdown(profile)


def test_v2_parts_records_processes_times_and_report_additively(tmp_path, monkeypatch):
    monkeypatch.setattr(parts, "_clock", {"previous_end": None, "closed": None})
    out = tmp_path / "out"
    block = schedule.Block("p1", (1, 2), True)
    run = out / "runs" / "p1" / block.name
    _write_state(out, {**_part(invocations=[]), "finished": False})
    write_timing(run, _timing([0, 1], 3.0, 0.0, 0.0)["generations"],
                 {"seconds": 12.0, "phases": {"setup": 1.0}})
    add_entry_timing(run, {"seconds": 13.0, "outputs": 0.5, "startup": 2.0})
    parts.merge_timing(out, block)
    assert set(json.loads((run / "timing.json").read_text())) == {"generations"}  # as before
    parts.merge_timing(out, block)  # a process stopped before it wrote a timing.json
    state = json.loads((out / "state.json").read_text())
    first, second = state["parts"][0]["executions"]
    assert (first["worker"], first["block"], first["invocation"]) == (0, block.name, 1)
    assert first["timing"]["entry"]["startup"] == 2.0 and second["timing"] is None
    monkeypatch.setattr(parts, "machine", lambda: {})
    parts.close_part(out, 1, 20.0, True, "cmd")
    parts.record_report(tmp_path / "elsewhere")  # another programme's: nothing recorded there
    parts.record_report(out)
    part = json.loads((out / "state.json").read_text())["parts"][0]
    (inv,) = part["invocations"]
    assert inv["ended_at"] - inv["started_at"] == pytest.approx(20.0, abs=0.01)
    assert inv["before_s"] >= 0 and 0 <= part["report_s"] < 5
    assert inv["seconds"] == 20.0 and part["finished"] is True  # the existing keys: unchanged
    profile = profile_v2.part_profile(out, 1)
    for w in (0, 1):
        assert sum(r["workers"][w]["seconds"] for r in profile["rows"]) == pytest.approx(
            profile["wall_s"], abs=0.05)
