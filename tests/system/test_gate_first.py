"""The gate-first stage of the confirmatory programme (scripts/v2_gate.py; on for d3): generation
0 of candidate seeds first, the loops of the first seeds that passed, every miss counted as a
run-through programme would count it, and the d = 2 programme untouched.
"""

from __future__ import annotations

import importlib
import importlib.util
import itertools
import json
import random
import re
import subprocess
import sys
from pathlib import Path

from programme_checks import REPO, TOY_LOOP, kill_once_written, report_only_over_a_copy
from programme_checks import load_script as _script

sys.path.insert(0, str(REPO / "scripts"))
schedule = importlib.import_module("v2_schedule")
programme = importlib.import_module("v2_programme")
parts = importlib.import_module("v2_parts")
gate = importlib.import_module("v2_gate")


def _arms(seeds: list[int], p1: int, p2: int) -> dict:
    return {"p1": {"lambda": 0.0, "seeds": seeds, "count": p1},
            "p2": {"lambda": 0.5, "seeds": seeds, "count": p2},
            "lambda1": {"lambda": 1.0, "seeds": seeds, "count": None}}


def test_an_arm_runs_the_first_count_seeds_that_passed():
    passed = {1: True, 2: False, 3: True, 4: False, 5: True, 6: True}
    sel = gate.arm_selection([1, 2, 3, 4, 5, 6, 7], 3, passed, set())
    assert (sel.chosen, sel.decided, sel.exhausted) == ([1, 3, 5], True, False)
    failed = gate.arm_selection([1, 2, 3, 4, 5, 6, 7], 3, passed, {3})  # 3 failed to train
    assert (failed.chosen, failed.target, failed.decided) == ([1, 3, 5, 6], 4, True)
    waiting = gate.arm_selection([1, 2, 3, 4, 5, 6, 7], 3, {1: True, 2: False, 4: True}, set())
    assert (waiting.chosen, waiting.decided) == ([1], False)  # 3 is still to be gated
    out = gate.arm_selection([1, 2, 3], 3, {1: True, 2: False, 3: True}, set())
    assert (out.chosen, out.decided, out.exhausted) == ([1, 3], True, True)


def test_a_gate_round_asks_only_for_the_seeds_still_missing():
    arms = _arms(list(range(1, 15)), 3, 5)
    first = gate.next_candidates(arms, {}, set(), gate.selections({"arms": arms}, {}, {}))
    assert first == [1, 2, 3, 4, 5]  # as many as the larger count, if every one passed
    passed = {1: True, 2: False, 3: True, 4: False, 5: False}
    sels = gate.selections({"arms": arms}, passed, {})
    assert sels["p1"].decided is False and sels["p2"].decided is False
    assert gate.next_candidates(arms, passed, set(), sels) == [6, 7, 8]  # 2 passed of 5
    assert gate.next_candidates(arms, passed, {6, 7}, sels) == [8]  # 6, 7 still being gated
    passed.update({6: True, 7: True, 8: True})
    sels = gate.selections({"arms": arms}, passed, {})
    assert sels["p1"].chosen == [1, 3, 6] and sels["p2"].chosen == [1, 3, 6, 7, 8]
    assert gate.next_candidates(arms, passed, set(), sels) == []
    # lists that differ: P2's seed 3 was gated before P1 needed its seed 2; P1's loop of seed 1
    # failed to train, so P1 needs 2 gated, although a seed of its list after 2 passed
    arms = {"p1": {"seeds": [1, 2, 3], "count": 1}, "p2": {"seeds": [3], "count": 1}}
    passed = {1: True, 3: True}
    sels = gate.selections({"arms": arms}, passed, {"p1": {1}})
    assert not sels["p1"].decided and gate.next_candidates(arms, passed, set(), sels) == [2]


def _run_through(listed: list[int], count: int, missed: set[int]) -> list[int]:
    """The seeds a programme without the gate stage runs in one arm (v2_schedule's spares)."""
    spec = {"seeds": listed, "count": count}
    requested: list[int] = []
    while new := schedule.spares_needed(spec, missed, requested):
        requested += new
    return listed[:count] + requested


def test_every_miss_is_counted_where_a_run_through_programme_would_have_run_it():
    """Against the programme without the stage, on random gate outcomes: each arm counts as
    misses exactly the seeds that programme would have run there and seen miss; the
    lambda = 1 arm those of either; and the loops run are those it would have read."""
    rng = random.Random(29)
    for _ in range(300):
        listed = list(range(1, rng.randint(3, 12)))
        counts = {"p1": rng.randint(1, len(listed)), "p2": rng.randint(1, len(listed))}
        arms = _arms(listed, counts["p1"], counts["p2"])
        found = {s: {"passed": rng.random() < 0.5, "gap_closed": 0.0} for s in listed}
        missed = {s for s, row in found.items() if not row["passed"]}
        counted = gate.counted_misses({"arms": arms}, found, {})
        ran = {arm: _run_through(listed, counts[arm], missed) for arm in counts}
        for arm, seeds in ran.items():
            assert counted[arm] == sorted(set(seeds) & missed), (arm, listed, counts, missed)
            chosen = gate.selections({"arms": arms}, {s: r["passed"] for s, r in found.items()},
                                     {})[arm].chosen
            assert chosen == [s for s in seeds if s not in missed]
        assert counted["lambda1"] == sorted(missed & (set(ran["p1"]) | set(ran["p2"])))


def _programme(tmp_path: Path, monkeypatch, *extra: str) -> tuple[dict, object]:
    sizing = {"noise": {"sigma": 0.3, "tau": 0.05}, "delta_1": 0.41, "delta_2": 0.051,
              "horizon": 8, "seeds_p1": 6, "seeds_p2": 12, "test_prompts_needed": 20000}
    path = tmp_path / "sizing.json"
    path.write_text(json.dumps(sizing))
    rules = programme.SETTING_RULES["d3"]
    assert rules.gate_first  # the second setting gates first
    monkeypatch.setitem(programme.SETTING_RULES, "d3", rules.__class__(path, True, True))
    monkeypatch.setattr(programme, "rules_state", lambda: ("abc123", []))
    args = _script().parse_args(["--out", str(tmp_path / "out"), "--setting", "d3", *extra])
    return programme.start_or_resume(args), args


def test_the_d3_programme_starts_with_its_gate_stage(tmp_path, monkeypatch):
    prog, args = _programme(tmp_path, monkeypatch)
    assert prog["gate_first"] is True
    state = json.loads((args.out / "state.json").read_text())
    made = [schedule.Block.from_json(b) for b in state["blocks"]]
    assert [b.name for b in made] == ["gate-21001-21006", "gate-21007-21012"]
    assert all(b.last_generation(prog["horizon"]) == 0 for b in made)
    cmd = _script().segment_command(prog, made[0], 0, args.out, 1)
    assert "experiment=reproduce_v2/d3_p1" in cmd and "loop.generations=0" in cmd
    assert "members.real_fractions=[0,0.5,1]" in cmd and "members.labellers=[model,oracle]" in cmd
    plan = parts.plan_text(prog, args.out, args).splitlines()
    assert plan[1].startswith("part 1:") and "gate-21001-21006 gen 0-0" in plan[1]
    assert "(provisional)" not in plan[1]  # the loops wait for the gate stage
    assert all(line.count(" gen ") == line.count(" (provisional) gen ") for line in plan[2:-2])
    assert "gate-first stage" in plan[-1]


def test_the_d2_programme_has_no_gate_stage(tmp_path, monkeypatch):
    monkeypatch.setattr(programme, "rules_state", lambda: ("abc123", []))
    args = _script().parse_args(["--out", str(tmp_path)])
    prog = programme.start_or_resume(args)
    assert "gate_first" not in prog and not programme.SETTING_RULES["d2"].gate_first
    assert not programme.SETTING_RULES["gpu_d20"].gate_first
    state = json.loads((tmp_path / "state.json").read_text())
    assert set(state) == {"blocks", "spares", "parts"}
    assert [b["arm"] for b in state["blocks"]] == ["p1", "p2", "p1", "p2", "p2", "p2",
                                                   "lambda1", "lambda1"]
    plan = parts.plan_text(prog, tmp_path, args)
    assert not re.search(r"\bgate-\d", plan) and "gate-first" not in plan
    assert "provisional" not in plan


def test_the_blocks_follow_the_gate_and_a_failed_seed_takes_the_next_that_passed(tmp_path):
    prog = {"arms": _arms(list(range(1, 11)), 2, 3), "block_seeds": 2, "horizon": 3}
    state = {"blocks": [b.to_json() for b in gate.initial_blocks(prog)],
             "spares": {"p1": [], "p2": []}, "parts": []}
    assert [b["seeds"] for b in state["blocks"]] == [[1, 2, 3]]
    found = {1: True, 2: False, 3: True}
    row = lambda ok: {"passed": ok, "gap_closed": 0.95 if ok else 0.85}  # noqa: E731
    added = gate.update(prog, state, {s: row(ok) for s, ok in found.items()}, {})
    assert added == ["gate: generation 0 of candidates [4]", "p1 loops for [1, 3] (passed "
                     "the gate)"]
    assert state["gate"]["pending"] == [4] and not state["gate"]["arms"]["p2"]["decided"]
    found.update({4: True})
    added = gate.update(prog, state, {s: row(ok) for s, ok in found.items()}, {})
    assert added == ["p2 loops for [1, 3, 4] (passed the gate)"]
    found.update({5: False, 6: True})  # 3's P1 loop failed to train: the next that passed
    added = gate.update(prog, state, {s: row(ok) for s, ok in found.items()}, {"p1": {3}})
    assert added == ["p1 loops for [4] (passed the gate)"] and state["spares"]["p1"] == [4]
    names = [schedule.Block.from_json(b).name for b in state["blocks"]]
    assert names == ["gate-1-3", "gate-4", "p1-1_3", "p2-1_3", "p2-4", "p1-4"]
    assert 2 not in {s for b in state["blocks"] if b["arm"] != "gate" for s in b["seeds"]}


SEEDS = [1, 2, 3, 4, 5, 6, 7, 8]
# A wrapper that gives the d3 setting a toy sizing (its arms, gate stage included, unchanged).
WRAPPER = """
import json, sys
sys.path.insert(0, {scripts!r})
import v2_settings
v2_settings.SETTING_RULES["d3"] = __import__("dataclasses").replace(
    v2_settings.SETTING_RULES["d3"], sizing=__import__("pathlib").Path({sizing!r}))
import reproduce_v2
sys.exit(reproduce_v2.main(json.loads({argv!r})))
"""


def _gaps(tmp_path: Path) -> dict[int, float]:
    """Generation 0's gap closed per toy seed, from one ensemble of P1's preset (the gate runs
    and the loops give the same: a member's numbers do not depend on its ensemble)."""
    from icl_stl.training.gate import gap_closed

    subprocess.run([sys.executable, "-m", "icl_stl.cli.loop", "experiment=reproduce_v2/d3_p1",
                    *TOY_LOOP, "loop.generations=0", f"members.seeds=[{','.join(map(str, SEEDS))}]",
                    "runtime.threads=1", "run.name=pre", f"run.checkpoint_root={tmp_path}/ck",
                    f"hydra.run.dir={tmp_path}/pre"], cwd=REPO, check=True, capture_output=True)
    records = json.loads((tmp_path / "pre" / "summary.json").read_text())["generations"]
    return {r["seed"]: gap_closed(r["test_risk"], r["ridge_risk"], r["zero_risk"])
            for r in records if r["labeller"] == "model"}


def _command(tmp_path: Path, seeds: list[int], tolerance: float, *extra: str,
             counts: tuple[str, ...] = ("2", "3", "0"), generations: int = 1) -> list[str]:
    """The toy d3 programme: P1 reads 2 seeds, P2 3, and P6's arm is left out (count 0) unless
    `counts` gives it some (tests/system/test_p6_arm.py)."""
    sizing = tmp_path / "sizing.json"
    sizing.write_text(json.dumps({"noise": {"sigma": 0.3, "tau": 0.05}, "delta_1": 0.41,
                                  "delta_2": 0.051, "horizon": 8, "seeds_p1": 2,
                                  "seeds_p2": 3}))
    argv = ["--setting", "d3", "--out", str(tmp_path / "out"), "--seed-counts", *counts,
            "--block-seeds", "3", "--part-minutes", "600", "--progress-every", "1",
            "--no-figures", *(a for o in [*TOY_LOOP, f"loop.generations={generations}",
                                          f"members.seeds=[{','.join(map(str, seeds))}]"]
                              for a in ("--set", o)),
            *(a for o in (f"gate_tolerance={tolerance!r}", "failure_gap=0.0",
                          "failure_train_ratio=1e9") for a in ("--report-set", o)), *extra]
    code = WRAPPER.format(scripts=str(REPO / "scripts"), sizing=str(sizing),
                          argv=json.dumps(argv))
    return [sys.executable, "-c", code]


def test_a_toy_gate_first_programme_skips_a_seed_that_missed_and_counts_it(tmp_path):
    """Four toy seeds a < b < c < d, the first with the lowest gap closed, and the threshold
    between it and the others: a misses. P1 reads 2 seeds, P2 3. a's loops never run, yet P1
    and P2 list it as a loop that missed, and `ridge_gate` counts its model and oracle arms in
    both and its lambda = 1 loop; killed in the gate stage, the programme resumes; the loops'
    generation 0 is the gate runs'; the report regenerates from a copy of runs/."""
    gaps = _gaps(tmp_path)
    a, b, c, d = next(t for t in itertools.combinations(SEEDS, 4)
                      if gaps[t[0]] < min(gaps[s] for s in t[1:]))
    tolerance = 1.0 - (gaps[a] + min(gaps[s] for s in (b, c, d))) / 2  # passes: >= 1 - tol
    out = tmp_path / "out"
    text = kill_once_written(_command(tmp_path, [a, b, c, d], tolerance),
                             out / "checkpoints", "v2-d3-gate-*/gen_000/train*.pt", 600)
    assert "stage: gate" in text, text
    done = subprocess.run(_command(tmp_path, [a, b, c, d], tolerance, "--parts", "20"), cwd=REPO,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "(resumed)" in done.stdout and "every loop of the programme has finished" in done.stdout
    state = json.loads((out / "state.json").read_text())
    stages = [p["stage"] for p in state["parts"]]
    assert stages[:2] == ["gate", "gate and loops"], stages  # P1 starts while P2's gate runs
    assert len(state["parts"][0]["invocations"]) == 2 and state["parts"][0]["finished"]
    # the first round's three candidates in two blocks, one per worker; then d alone
    assert [seg["block"] for seg in state["parts"][0]["segments"]] == [
        schedule.Block("gate", seeds, True).name for seeds in ((a, b), (c,))]
    assert state["parts"][1]["segments"][0]["block"] == f"gate-{d}"
    record = state["gate"]["candidates"]
    assert {s: r["passed"] for s, r in record.items()} == {
        str(a): False, str(b): True, str(c): True, str(d): True}
    made = [schedule.Block.from_json(b) for b in state["blocks"]]
    loops = {arm: [s for blk in made if blk.arm == arm for s in blk.seeds]
             for arm in ("p1", "p2", "lambda1")}
    assert loops["p1"][:2] == [b, c] and loops["p2"][:3] == [b, c, d]  # the first that passed
    assert a not in {s for blk in made if blk.arm != "gate" for s in blk.seeds}
    verdicts = json.loads((out / "verdicts.json").read_text())
    stage = verdicts["programme"]["gate_stage"]
    assert stage["counted_misses"] == {"p1": [a], "p2": [a], "lambda1": [a]}
    for number, lam in (("1", 0), ("2", 0.5)):
        left_out = verdicts["verdicts"][number]["groups"][0]["left_out"]
        assert left_out["missed_gate"] == 1
        assert f"seed {a}, λ={lam:g}, n=64: gate missed" in left_out["loops"][0]
    ridge = verdicts["ridge_gate"]
    assert ridge["loops_missed"] == 5  # a's P1 and P2 loops (both arms) and lambda = 1 loop
    assert ridge["loops"] == 5 + 2 * (len(loops["p1"]) + len(loops["p2"])) + len(
        loops["lambda1"]) and ridge["loops_reached"] == ridge["loops"] - 5
    agreement = stage["generation_0_agreement"]
    assert agreement["loops"] >= 2 * (2 + 3) + 3 and agreement["max_abs_difference"] == 0.0
    assert len(stage["blocks"]) == 3 and all(b["seconds"] > 0 for b in stage["blocks"])
    assert "## The gate-first stage" in (out / "REPORT.md").read_text()
    report_only_over_a_copy(out, tmp_path)


def _trainings(rng: random.Random, counts: dict[str, int], p: float) -> tuple[int, int]:
    """Member trainings (a generation of one member) with the gate first and without, for one
    draw of gate outcomes at pass rate p: a matched loop trains 17 (generation 0, then 8
    generations of both arms), a lambda = 1 loop 9, a gate candidate 1."""
    listed = list(range(1, 400))
    outcome = {s: rng.random() < p for s in listed}
    arms = _arms(listed, counts["p1"], counts["p2"])
    passed: dict[int, bool] = {}
    while new := gate.next_candidates(arms, passed, set(), gate.selections(
            {"arms": arms}, passed, {})):
        passed.update({s: outcome[s] for s in new})
    chosen = {arm: sel.chosen for arm, sel in gate.selections({"arms": arms}, passed,
                                                               {}).items()}
    first = len(passed) + 17 * sum(map(len, chosen.values())) + 9 * len(
        set(chosen["p1"]) | set(chosen["p2"]))
    missed = {s for s, ok in outcome.items() if not ok}
    ran = {arm: _run_through(listed, counts[arm], missed) for arm in counts}
    through = 17 * sum(map(len, ran.values())) + 9 * len(set(ran["p1"]) | set(ran["p2"]))
    return first, through


def test_the_documented_saving_is_the_stages_own_at_a_pass_rate_of_a_half():
    """docs/reproduce.md's estimate (86c against 45c trainings: about 48% less; 47% with P2's
    count twice P1's), against the stage's own rounds on random gate outcomes."""
    text = " ".join((REPO / "docs/reproduce.md").read_text().split())
    assert "86c trainings" in text and "= 45c: about 48% less" in text and "P1's, 47%)" in text
    assert round(100 * (1 - 45 / 86)) == 48 and round(100 * (1 - 73 / 138)) == 47
    rng = random.Random(7)
    for counts, documented in (({"p1": 6, "p2": 6}, 48), ({"p1": 6, "p2": 12}, 47)):
        draws = [_trainings(rng, counts, 0.5) for _ in range(400)]
        saving = 1 - sum(f for f, _ in draws) / sum(t for _, t in draws)
        assert abs(100 * saving - documented) < 1.5, (counts, saving)
