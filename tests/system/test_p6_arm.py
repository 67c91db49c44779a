"""P6's confirmatory part, a fourth matched arm of the d = 3 programme (scripts/v2_arms.py): its
preset is P1's loops under the residual filter, its seeds are P1's (the p1 arm runs every seed
P6 reads), its blocks come beside p1's, its verdict comes from its runs, and the d = 2
programme, running now, plans and reports as it did before the arms became per setting.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import compose_cfg
from programme_checks import REPO, programme_modules, report_only_over_a_copy
from programme_checks import load_script as _script

from icl_stl.cli.common import load_app_config
from icl_stl.loop.admission import ADMITTED_FILTERS
from icl_stl.report.rules import ReportConfig

arms_mod, schedule, programme, parts, gate, report = programme_modules()
sys.path.insert(0, str(REPO / "tests" / "system"))
gate_first = importlib.import_module("test_gate_first")

# The commit before the arms became per setting: the d = 2 programme's code as it ran.
BEFORE = "3be3332b609d6312414577c0e6e5ef194b12c0c0"


def _app(preset: str):
    return load_app_config(compose_cfg("loop", f"experiment={preset}"), needs_loop=True)


def test_the_p6_preset_is_p1s_loops_under_the_residual_filter():
    """reproduce_v2/d3_p6: the d3 setting and P1's loops (lambda 0, each beside its oracle
    twin, the same seeds), the residual filter keeping half (the P6 pilot's filtered arm);
    nothing else differs from d3_p1."""
    p6, p1 = _app("reproduce_v2/d3_p6"), _app("reproduce_v2/d3_p1")
    pilot = _app("p6/pilot_residual")
    assert list(p6.members.real_fractions) == [0] and p6.members.labellers == ["model", "oracle"]
    assert (p6.loop.filter, p6.loop.filter_keep) == (pilot.loop.filter, pilot.loop.filter_keep)
    assert (p6.loop.filter, p6.loop.filter_keep) == ("residual", 0.5)
    assert p6.loop.filter in ADMITTED_FILTERS and p1.loop.filter == "none"
    assert (p6.task.d, p6.task.k, p6.task.noise_std) == (3, 8, 0.25)
    assert p6.members == p1.members and p6.seed == p1.seed == 21000
    for part in ("task", "data", "model", "train", "eval", "runtime"):
        assert getattr(p6, part) == getattr(p1, part), part
    assert dataclasses.replace(p6.loop, filter="none", filter_keep=1.0) == p1.loop


def test_only_the_second_setting_has_the_p6_arm():
    assert programme.SETTING_RULES["d3"].arms == ("p1", "p2", "p6", "lambda1")
    for setting in ("d2", "gpu_d20"):
        assert programme.SETTING_RULES[setting].arms == ("p1", "p2", "lambda1")
    assert set(arms_mod.COUNT_SETTING) == {"p1", "p2", "p6", "p9"}  # p9: the P9 setting's


def _new(setting: str, out: Path, *extra: str) -> tuple[dict, object]:
    args = _script().parse_args(["--out", str(out), "--setting", setting, *extra])
    return programme.new_programme(args), args


def test_the_d3_programme_runs_p1_on_every_seed_p6_reads_and_plans_p6_beside_p1(tmp_path):
    """The rules' counts (P6's from ReportConfig, never the preset), P6 paired with P1, its
    planned MDE; in the plan, the p1 arm covers P6's seeds and each p6 block runs beside the p1
    block of the same seeds; the d2 plan has no p6 block."""
    prog, args = _new("d3", tmp_path / "d3")
    arms, cfg = prog["arms"], ReportConfig()
    assert arms["p6"]["count"] == cfg.v2_p6_seeds == prog["report_settings"]["v2_p6_seeds"]
    assert arms["p6"]["paired_with"] == "p1" and arms["p6"]["filter"] == "residual"
    assert "paired_with" not in arms["p1"] and "filter" not in arms["p1"]
    assert prog["presets"]["p6"] == "reproduce_v2/d3_p6"
    assert prog["report_settings"]["v2_p1_seeds"] == arms["p1"]["count"] < arms["p6"]["count"]
    design = prog["design"]["P6"]
    assert design["seeds"] == arms["p6"]["count"] and design["margin"] == cfg.v2_p6_delta
    assert 0 < design["min_detectable_effect"] < 5
    plan = parts.plan_text(prog, args.out, args)
    blocks = re.findall(r"\b(p1|p2|p6|lambda1)-([\d_-]+) \(provisional\)", plan)
    seeds = {arm: set() for arm in ("p1", "p2", "p6", "lambda1")}
    for arm, name in blocks:
        lo, _, hi = name.partition("-")
        seeds[arm] |= set(range(int(lo), int(hi or lo) + 1))
    wanted = max(arms["p1"]["count"], arms["p6"]["count"])
    assert seeds["p1"] == seeds["p6"] == set(arms["p1"]["seeds"][:wanted])
    assert len(seeds["p2"]) == arms["p2"]["count"] and seeds["lambda1"] >= seeds["p1"]
    first = next(line for line in plan.splitlines() if "(provisional)" in line)
    p1_block = re.search(r"p1-([\d-]+) \(provisional\)", first).group(1)
    assert f"p6-{p1_block} (provisional)" in first  # a seed's two pairs run together
    loops = [line for line in plan.splitlines() if "(provisional)" in line]
    last_p6 = max(i for i, line in enumerate(loops) if "p6-" in line)
    assert all("p2-" not in line for line in loops[:last_p6])  # P1 and P6 first
    docs = " ".join((REPO / "docs/reproduce.md").read_text().split())  # the numbers it quotes
    hours, count = re.search(r"total about ([\d.]+) h in (\d+) parts", plan).groups()
    assert f"gives about {hours} hours in {count} parts at the pilot's speed" in docs
    counts = {"p1": arms["p1"]["count"], "p2": arms["p2"]["count"], "p6": 0}
    bare_args = _script().parse_args(["--out", str(tmp_path / "bare"), "--setting", "d3"])
    bare = parts.plan_text(programme.new_programme(bare_args, counts), bare_args.out, bare_args)
    hours, count = re.search(r"total about ([\d.]+) h in (\d+) parts", bare).groups()
    shown = " ".join(map(str, counts.values()))
    assert f"({hours} hours in {count} parts without P6, `--seed-counts {shown}`" in docs
    assert f"max(P1's count, P6's) = {wanted} seeds" in docs
    assert f"reads only its first {arms['p1']['count']} readable" in docs
    assert f"at {design['seeds']} seeds the mean interaction must lie " \
           f"{design['min_detectable_effect']:.3f} below" in docs
    d2, d2_args = _new("d2", tmp_path / "d2")
    assert set(d2["arms"]) == {"p1", "p2", "lambda1"} and "P6" not in d2["design"]
    assert not re.search(r"\bp6-", parts.plan_text(d2, d2_args.out, d2_args))


def _arms(listed: list[int], p1: int, p2: int, p6: int) -> dict:
    spec = lambda lam, n: {"lambda": lam, "seeds": listed, "count": n}  # noqa: E731
    return {"p1": spec(0.0, p1), "p2": spec(0.5, p2),
            "p6": {**spec(0.0, p6), "paired_with": "p1"}, "lambda1": spec(1.0, None)}


def test_the_gate_stage_gives_p1_every_seed_p6_reads_and_p6_a_spare_for_either_pair():
    """P1 reads 2 seeds and P6 4: the gate stage gates enough candidates for P6, the p1 arm
    runs P6's 4 seeds (P1's rule keeps its 2), p6's blocks follow p1's; a seed whose p1 pair
    failed to train is replaced for both rules, one whose p6 pair did for P6 (p1 runs the
    spare too); a miss before P6's last seed counts in p1's arm."""
    prog = {"arms": _arms(list(range(1, 11)), 2, 2, 4), "block_seeds": 2, "horizon": 3}
    state = {"blocks": [b.to_json() for b in gate.initial_blocks(prog)],
             "spares": {}, "parts": []}
    assert [b["seeds"] for b in state["blocks"]] == [[1, 2, 3, 4]]  # P6's count, not P1's
    found = {s: {"passed": s != 3, "gap_closed": 0.9} for s in (1, 2, 3, 4)}
    gate.update(prog, state, found, {})
    assert state["gate"]["arms"]["p6"]["decided"] is False  # 3 missed: P6 has 3 of 4
    assert state["gate"]["pending"] == [5]
    names = [schedule.Block.from_json(b).name for b in state["blocks"]]
    assert names == ["gate-1-4", "gate-5", "p1-1-2", "p2-1-2"]
    found[5] = {"passed": True, "gap_closed": 0.9}
    added = gate.update(prog, state, found, {})
    assert added == ["p1 loops for [4, 5] (passed the gate)",
                     "p6 loops for [1, 2, 4, 5] (passed the gate)"]
    assert state["gate"]["arms"]["p1"]["seeds"] == [1, 2]  # P1's rule: still its own 2
    assert state["gate"]["arms"]["p1"]["runs"] == [1, 2, 4, 5]
    names = [schedule.Block.from_json(b).name for b in state["blocks"]]
    assert names[-3:] == ["p1-4-5", "p6-1-2", "p6-4-5"]  # p1's seeds for P6 with p6's
    assert gate.counted_misses(prog, found, {}) == {"p1": [3], "p2": [], "p6": [3],
                                                    "lambda1": [3]}
    found.update({s: {"passed": True, "gap_closed": 0.9} for s in (6, 7)})
    added = gate.update(prog, state, found, {"p1": {2}})  # seed 2's p1 pair failed
    assert added == ["p1 loops for [6] (passed the gate)", "p6 loops for [6] (passed the gate)"]
    assert state["gate"]["arms"]["p1"]["seeds"] == [1, 2, 4]  # P1: a spare for seed 2
    assert state["gate"]["arms"]["p6"]["seeds"] == [1, 2, 4, 5, 6]  # P6: one too
    ran = {arm: {s for b in state["blocks"] if b["arm"] == arm for s in b["seeds"]}
           for arm in ("p1", "p6")}
    assert ran["p6"] == {1, 2, 4, 5, 6} and ran["p6"] <= ran["p1"]
    gate.update(prog, state, found, {"p1": {2}, "p6": {4}})  # and seed 4's p6 pair failed
    assert state["gate"]["arms"]["p6"]["seeds"] == [1, 2, 4, 5, 6, 7]
    assert state["gate"]["arms"]["p1"]["seeds"] == [1, 2, 4]  # P1 reads seed 4's p1 pair
    ran = {arm: {s for b in state["blocks"] if b["arm"] == arm for s in b["seeds"]}
           for arm in ("p1", "p6")}
    assert 7 in ran["p6"] and ran["p6"] <= ran["p1"]


def test_p6_is_judged_where_its_arm_runs_and_not_run_elsewhere():
    three = {"p1": {}, "p2": {}, "lambda1": {}}
    d2 = report.untested_verdicts({"setting": "d2", "arms": three})
    assert d2["6"]["verdict"] == "not run" and "d = 3 setting" in d2["6"]["why"]
    assert (REPO / d2["6"]["pilot"] / "pilot.json").exists()
    assert d2["3"]["verdict"] == "not testable"  # the rules' own, as before
    d3 = report.untested_verdicts({"setting": "d3", "arms": {**three, "p6": {}}})
    assert "6" not in d3 and "P1, P2 and P6" in d3["3"]["why"]
    smoke = report.untested_verdicts({"setting": "d3", "arms": three})  # --seed-counts 2 3 0
    assert smoke["6"]["verdict"] == "not run" and "left out" in smoke["6"]["why"]


def test_the_summary_tells_p1_from_p6_by_their_runs():
    """p1 and p6 share lambda = 0: each arm's seeds are its own runs', and the programme is
    finished only once p1 has every seed P6 reads through the horizon."""
    prog = {"setting": "d3", "presets": {}, "confirmatory": False, "overrides": [],
            "horizon": 1, "steps": 10, "arms": _arms([1, 2, 3], 1, 1, 2)}
    rec = lambda arm, seed, lam: {"seed": seed, "real_fraction": lam, "generation": 1,  # noqa
                                  "labeller": "model", "run": f"runs/{arm}/{arm}-{seed}"}
    records = [rec("p1", 1, 0.0), rec("p6", 1, 0.0), rec("p6", 2, 0.0), rec("p2", 1, 0.5),
               rec("lambda1", 1, 1.0), rec("lambda1", 2, 1.0)]
    summary = report.programme_summary(prog, records)
    assert summary["arms"]["p1"]["seeds_finished"] == [1]
    assert summary["arms"]["p6"]["seeds_finished"] == [1, 2]
    assert summary["arms"]["p1"]["seeds_needed"] == 2 and not summary["finished"]
    summary = report.programme_summary(prog, [*records, rec("p1", 2, 0.0)])
    assert summary["finished"]


def _probe(scripts: Path, out: Path) -> dict:
    done = subprocess.run([sys.executable, str(REPO / "tests" / "system" / "d2_plan_probe.py"),
                           str(scripts), str(REPO / "docs" / "results" / "cpu-v2"), str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


def test_the_committed_d2_programme_plans_as_before(tmp_path):
    """docs/results/cpu-v2's programme.json and state (parts.json), planned by the code before
    the arms became per setting (commit BEFORE) and by today's: the same resume check, plan,
    blocks and spares."""
    files = subprocess.run(["git", "ls-tree", "--name-only", BEFORE, "scripts/"], cwd=REPO,
                           capture_output=True, text=True)
    if files.returncode != 0:
        pytest.skip(f"commit {BEFORE[:12]} is not in this checkout's history")
    before = tmp_path / "before"
    (before / "scripts").mkdir(parents=True)
    for name in files.stdout.split():
        if re.search(r"scripts/(v2_\w+|reproduce_v2)\.py$", name):
            text = subprocess.run(["git", "show", f"{BEFORE}:{name}"], cwd=REPO, check=True,
                                  capture_output=True, text=True).stdout
            (before / name).write_text(text)
    for shared in ("conf", "docs"):  # its presets and pilots' sizing, as they are
        (before / shared).symlink_to(REPO / shared)
    then, now = _probe(before / "scripts", tmp_path / "a"), _probe(REPO / "scripts",
                                                                   tmp_path / "b")
    assert all(then["resumes"].values()) and then["design"]
    # the plan's total counted one part too few while a part was open (fixed in 80f3a26)
    listed = len(re.findall(r"^part \d+: ~", now["plan"], re.M))
    assert f" in {listed} parts " in now["plan"]
    then["plan"], now["plan"] = (re.sub(r" in \d+ parts ", " in N parts ", p["plan"])
                                 for p in (then, now))
    assert now == then
    assert "part " in now["plan"] and not re.search(r"\bp6-", now["plan"])


def _named(group: dict) -> set[int]:
    """The seeds a group's left-out list names (missed the gate or failed to train)."""
    return {int(m.group(1)) for line in group["left_out"]["loops"]
            if (m := re.match(r"seed (\d+),", line))}


def check_toy_programme(out: Path, listed: list[int], counts: dict[str, int]) -> None:
    """What a finished toy d3 programme with its p6 arm must show (the toy test below)."""
    state = json.loads((out / "state.json").read_text())
    made = [schedule.Block.from_json(b) for b in state["blocks"]]
    seeds = "-".join(map(str, (listed[0], listed[-1])))
    # the gate round and the lambda = 1 loops train one member per seed: cut in two for the
    # two workers (3 seeds: 2 + 1)
    halves = [schedule.Block("x", part, False).name[2:] for part in (listed[:2], listed[2:])]
    assert len(listed) == 3 and [b.name for b in made[:7]] == [
        *(f"gate-{h}" for h in halves), f"p1-{seeds}", f"p6-{seeds}",
        f"p2-{listed[0]}-{listed[counts['p2'] - 1]}", *(f"lambda1-{h}" for h in halves)]
    assert all(set(b.seeds) <= set(listed) for b in made[7:])  # spares, as the rules need them
    verdicts = json.loads((out / "verdicts.json").read_text())
    p6, p1 = verdicts["verdicts"]["6"], verdicts["verdicts"]["1"]
    assert p6["verdict"] != "not run" and p6["rules_version"] == "v2"
    assert p6["verdict"] in (*p6["can_get"], "not tested") and p6["design"]["seeds"] == counts[
        "p6"]
    (filtered,) = [g for g in p6["groups"] if g["counted"]]
    assert "filter=residual" in filtered["group"]
    (unfiltered,) = [g for g in p1["groups"] if g["counted"]]  # the filtered one: not P1's
    assert "filter" not in unfiltered["group"]
    readable_p1 = [s for s in listed if s not in _named(unfiltered)]
    readable_p6 = [s for s in listed if s not in _named(filtered)]
    assert unfiltered["n_seeds"] == min(counts["p1"], len(readable_p1))
    assert unfiltered["left_out"]["beyond_count"] == readable_p1[counts["p1"]:]
    both = [s for s in readable_p6 if s in readable_p1]  # all four loops readable
    assert filtered["n_seeds"] == min(counts["p6"], len(both))
    summary = verdicts["programme"]
    assert summary["arms"]["p1"]["seeds_needed"] == counts["p6"] > counts["p1"]
    assert summary["arms"]["p1"]["seeds_run"] == summary["arms"]["p6"]["seeds_run"] == listed
    assert summary["finished"]
    agreement = summary["gate_stage"]["generation_0_agreement"]  # p6's generation 0 is p1's
    p2_seeds = summary["arms"]["p2"]["seeds_run"]
    assert agreement["loops"] == 2 * (2 * len(listed) + len(p2_seeds)) + len(listed)
    assert agreement["max_abs_difference"] == 0.0
    text = (out / "REPORT.md").read_text()
    assert "| P6 |" in text and "P6's from its own pilot's noise" in text


def test_a_toy_d3_programme_with_its_p6_arm_judges_p6_from_its_runs(tmp_path):
    """Three toy seeds, all through the gate; P1 reads 2, P2 2, P6 3: the p1 arm runs all 3,
    P1 reads at most its first 2 readable, P6 pairs each filtered loop with the same seed's
    p1 loop and judges from those runs (a toy d = 3 loop is rarely readable: P6 reads the
    seeds whose four loops are, however many that is); a p6 loop's generation 0 is the gate
    run's; the report regenerates from a copy of runs/."""
    out = tmp_path / "out"
    cmd = gate_first._command(tmp_path, [1, 2, 3], 100.0, "--parts", "20",
                              counts=("2", "2", "3"), generations=3)
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=1500)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    check_toy_programme(out, [1, 2, 3], {"p1": 2, "p2": 2, "p6": 3})
    report_only_over_a_copy(out, tmp_path)
