"""The loop's phase timers: disjoint, within the wall time, in timing.json; old files still read;
scripts/profile_part.py's rows add up to the wall time."""

from __future__ import annotations

import importlib.util
import json
import time
from pathlib import Path

import pytest
from conftest import compose_loop

from icl_stl.cli.loop import loop_from_config
from icl_stl.loop.timing import (
    ENTRY_PHASES,
    GENERATION_PHASES,
    RUN_PHASES,
    PhaseTimer,
    TimedSlot,
    add_entry_timing,
    process_age_s,
    read_timing,
    write_timing,
)

REPO = Path(__file__).resolve().parents[2]


def _profile_part():
    spec = importlib.util.spec_from_file_location("profile_part",
                                                  REPO / "scripts" / "profile_part.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_nested_phases_are_exclusive_and_sum_to_at_most_the_wall_time():
    timer = PhaseTimer()
    start = time.perf_counter()
    with timer.phase("training"):
        time.sleep(0.05)
        with timer.phase("checkpoints"):
            time.sleep(0.05)
    with timer.phase("training"):  # a phase entered twice adds up
        time.sleep(0.02)
    wall = time.perf_counter() - start
    s = timer.seconds
    assert s["checkpoints"] >= 0.05
    assert 0.07 <= s["training"] < 0.07 + 0.05  # the nested checkpoint is not training's
    assert s["training"] + s["checkpoints"] <= wall


def test_a_timed_slot_counts_its_saves_as_checkpoints(tmp_path):
    timer = PhaseTimer()
    with timer.phase("training"):
        TimedSlot(tmp_path, "train", timer).save({"x": 1})
    assert timer.seconds["checkpoints"] > 0
    assert (tmp_path / "train.pt").exists()


def test_process_age_is_the_time_since_this_process_started():
    age = process_age_s()
    if age is None:
        pytest.skip("no /proc here")
    assert 0 < age < 24 * 3600  # a test process younger than a day
    time.sleep(0.05)
    assert process_age_s() >= age


@pytest.fixture(scope="module")
def timed_run(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("timed")
    loop_from_config(compose_loop(tmp, "loop.generations=2", "members.real_fractions=[0,0.5]",
                                  "train.checkpoint_every=5"), tmp / "out", startup_s=1.5)
    return tmp / "out"


def test_timing_json_holds_every_phase_within_the_wall_time(timed_run):
    timing = json.loads((timed_run / "timing.json").read_text())
    gens = timing["generations"]
    assert [g["generation"] for g in gens] == [0, 1, 2]
    for g in gens:
        assert set(g["phases"]) <= set(GENERATION_PHASES)
        assert {"data", "training", "evaluation", "checkpoints"} <= set(g["phases"])
        assert all(v >= 0 for v in g["phases"].values())
        assert sum(g["phases"].values()) <= g["seconds"]
    assert "labelling" in gens[1]["phases"] and "labelling" not in gens[0]["phases"]
    run = timing["run"]
    assert set(run["phases"]) <= set(RUN_PHASES) and "setup" in run["phases"]
    assert sum(g["seconds"] for g in gens) + sum(run["phases"].values()) <= run["seconds"]
    entry = timing["entry"]
    assert set(entry) == {"seconds", *ENTRY_PHASES}
    assert entry["startup"] == 1.5
    assert run["seconds"] + entry["outputs"] <= entry["seconds"]


def test_a_resumed_run_times_its_loading_as_resume(timed_run, tmp_path):
    # The same command again: every generation loads (resume), none is trained.
    ck = timed_run.parent
    loop_from_config(compose_loop(ck, "loop.generations=2", "members.real_fractions=[0,0.5]",
                                  "train.checkpoint_every=5"), tmp_path / "again")
    timing = read_timing(tmp_path / "again" / "timing.json")
    assert timing["generations"] == []
    assert timing["run"]["phases"]["resume"] > 0
    assert "startup" not in timing["entry"]
    assert timing["earlier"] == []  # another directory: nothing earlier there


def test_a_run_resumed_in_its_directory_keeps_the_earlier_executions_times(tmp_path):
    write_timing(tmp_path, [{"generation": 0, "seconds": 5.0, "phases": {"training": 4.0}}],
                 {"seconds": 6.0, "phases": {"setup": 0.5}})
    add_entry_timing(tmp_path, {"seconds": 7.0, "outputs": 0.5})
    write_timing(tmp_path, [], {"seconds": 1.0, "phases": {"resume": 0.8}})
    timing = read_timing(tmp_path / "timing.json")
    assert timing["generations"] == [] and timing["entry"] == {}
    (earlier,) = timing["earlier"]
    assert earlier["generations"][0]["phases"] == {"training": 4.0}
    assert earlier["entry"]["seconds"] == 7.0
    rows = _profile_part().run_profile(tmp_path / "timing.json")
    assert rows["training"] == 4.0 and rows["resume"] == 0.8
    assert rows["_total"] == 7.0 + 1.0  # the first execution's entry, the second's run


def test_an_old_timing_file_is_still_read(tmp_path):
    (tmp_path / "timing.json").write_text(json.dumps(
        {"generations": [{"generation": 0, "seconds": 10.0, "trained_members": 2},
                         {"generation": 1, "seconds": 4.0, "trained_members": 2}]}))
    timing = read_timing(tmp_path / "timing.json")
    assert [g["phases"] for g in timing["generations"]] == [{}, {}]
    assert timing["run"]["seconds"] is None and timing["entry"] == {}
    rows = _profile_part().run_profile(tmp_path / "timing.json")
    assert rows["generations not broken down"] == 14.0
    assert rows["_total"] == 14.0
    assert "training" not in rows  # nothing invented for it


def test_the_profile_rows_add_up_to_the_wall_time(timed_run, tmp_path):
    module = _profile_part()
    out = tmp_path / "reproduce"
    (out / "collapse").mkdir(parents=True)
    (out / "collapse" / "timing.json").write_text((timed_run / "timing.json").read_text())
    entry_s = json.loads((timed_run / "timing.json").read_text())["entry"]["seconds"]
    (out / "timing.json").write_text(json.dumps({
        "invocations": [{"part": "collapse", "seconds": entry_s + 2.0, "startup_s": 3.0},
                        {"part": "decay", "seconds": 99.0, "startup_s": 1.0}],
        "reports": [{"seconds": 4.0, "runs": 1}]}))
    profile = module.part_profile(out, "collapse")
    rows = {r["row"]: r for r in profile["rows"]}
    assert profile["wall_s"] == pytest.approx(3.0 + entry_s + 2.0 + 4.0, abs=0.02)
    assert sum(r["seconds"] for r in profile["rows"]) == pytest.approx(profile["wall_s"],
                                                                         abs=0.05)
    assert sum(r["share"] for r in profile["rows"]) == pytest.approx(1.0, abs=1e-3)
    assert rows["imports and process start-up"]["seconds"] == 3.0  # not decay's
    assert rows["composing the part's configs"]["seconds"] == pytest.approx(2.0, abs=0.01)
    assert rows["report and figures"]["seconds"] == 4.0
    assert rows["training"]["seconds"] > 0
    assert "| training |" in module.markdown(profile)
    assert module.main([str(out), "--part", "pools"]) == 2  # no such invocation: one line
