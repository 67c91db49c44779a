"""P9's confirmatory part, the P9 setting of the programme (`--setting p9`, scripts/v2_p9.py):
two matched arms, `p1` (replace at lambda = 0 beside its oracle twin, P9's control) and `p9`
(accumulation with S_0 kept beside its own twin), paired as d3's p6 is with p1; the d = 2
recipe at horizon 12 on fresh seeds; its plan, its spares, its report, and a toy run end to end.
The d = 2 and d = 3 programmes keep their plans (tests/system/test_p6_arm.py,
test_reproduce_v2.py) and give P9 "not run", saying where it runs.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import math
import re
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import compose_cfg
from programme_checks import REPO, SCRIPT, TOY, programme_modules, report_only_over_a_copy
from programme_checks import load_script as _script

from icl_stl.cli.common import load_app_config
from icl_stl.report.rules import ReportConfig

arms_mod, schedule, programme, parts, gate, report = programme_modules()
sys.path.insert(0, str(REPO / "tests" / "report"))
p9_mod = importlib.import_module("v2_p9")

SEEDS = list(range(22001, 22027))
PARTS = ("task", "data", "model", "train", "eval", "runtime")


def _app(preset: str):
    return load_app_config(compose_cfg("loop", f"experiment={preset}"), needs_loop=True)


def test_the_p9_presets_are_the_d2_recipe_at_horizon_12_on_fresh_seeds():
    """p9_p1 is d2_p1 at G = 12 on seeds 22001-22026 (test set 22000); p9_p9 is p9_p1 with
    accumulation (S_0 kept) and nothing else changed."""
    p1, p9, d2 = (_app(f"reproduce_v2/{name}") for name in ("p9_p1", "p9_p9", "d2_p1"))
    assert p1.loop.generations == p9.loop.generations == ReportConfig().v2_p9_horizon == 12
    assert dataclasses.replace(p1.loop, generations=d2.loop.generations) == d2.loop
    assert (p9.loop.synthetic, p1.loop.synthetic) == ("accumulate_s0", "replace")
    assert dataclasses.replace(p9.loop, synthetic="replace") == p1.loop
    for part in PARTS:
        assert getattr(p1, part) == getattr(p9, part) == getattr(d2, part), part
    assert p1.members == p9.members and list(p1.members.seeds) == SEEDS
    assert list(p1.members.real_fractions) == [0] and p1.members.labellers == ["model", "oracle"]
    assert p1.seed == p9.seed == 22000
    others = {s for name in ("d2_p1", "d2_p2", "d2_lambda1", "d3_p1", "d3_p2", "d3_lambda1")
              for s in _app(f"reproduce_v2/{name}").members.seeds}
    assert not others & {22000, *SEEDS}


def test_the_gpu_preset_is_the_same_p9_programme_at_the_gpu_size():
    """gpu_d20_p9_{p1,p9}: the GPU setting's recipe at G = 12 on seeds 24001-24026; p9/gpu is
    its accumulating arm (no pilot seed left)."""
    p1, p9, gpu = (_app(f"reproduce_v2/{name}") for name in ("gpu_d20_p9_p1", "gpu_d20_p9_p9",
                                                              "gpu_d20_p1"))
    assert dataclasses.replace(p1.loop, generations=gpu.loop.generations) == gpu.loop
    assert dataclasses.replace(p9.loop, synthetic="replace") == p1.loop
    assert p1.loop.generations == 12 and p9.loop.synthetic == "accumulate_s0"
    for part in PARTS:
        assert getattr(p1, part) == getattr(p9, part) == getattr(gpu, part), part
    assert list(p9.members.seeds) == list(range(24001, 24027)) and p9.seed == 24000
    assert p9.members == p1.members
    alone = _app("p9/gpu")
    assert alone.members == p9.members and alone.loop == p9.loop and alone.seed == p9.seed
    for part in PARTS:
        assert getattr(alone, part) == getattr(p9, part), part


def test_the_p9_setting_has_p1_and_p9_paired_and_no_p2_or_lambda1():
    for setting in ("p9", "gpu_d20_p9"):
        rules = programme.SETTING_RULES[setting]
        assert rules.arms == ("p1", "p9") and rules.gate_first and not rules.from_sizing
        assert setting in programme.settings_available()
    assert arms_mod.PAIRED["p9"] == "p1" and arms_mod.COUNT_SETTING["p9"] == "v2_p9_seeds"
    assert _script().seed_count_arms("p9") == ("p1", "p9")
    assert _script().seed_count_arms("d3") == ("p1", "p2", "p6")


def _new(setting: str, out: Path, *extra: str) -> tuple[dict, object]:
    args = _script().parse_args(["--out", str(out), "--setting", setting, *extra])
    return programme.new_programme(args), args


def _plan_seeds(plan: str) -> dict[str, set[int]]:
    seeds: dict[str, set[int]] = {}
    for arm, name in re.findall(r"\b(p1|p2|p9|lambda1)-([\d_-]+) \(provisional\)", plan):
        lo, _, hi = name.partition("-")
        seeds.setdefault(arm, set()).update(range(int(lo), int(hi or lo) + 1))
    return seeds


def test_the_p9_plan_pairs_p9_with_p1_on_the_rules_count_at_horizon_12(tmp_path):
    """The rules' count (ReportConfig.v2_p9_seeds, never the preset's list), P9 paired with
    P1, G = 12; the plan runs p1 and p9 on the same first seeds side by side and quotes an
    honest time (the d = 2 programme's measured rate); the count follows the rule setting."""
    prog, args = _new("p9", tmp_path / "p9")
    arms, cfg = prog["arms"], ReportConfig()
    assert set(arms) == {"p1", "p9"} and prog["gate_first"] and prog["confirmatory"]
    assert arms["p9"]["count"] == cfg.v2_p9_seeds == prog["report_settings"]["v2_p9_seeds"]
    assert arms["p9"]["paired_with"] == "p1" and arms["p9"]["synthetic"] == "accumulate_s0"
    assert "paired_with" not in arms["p1"] and "synthetic" not in arms["p1"]
    assert arms["p1"]["count"] == cfg.v2_p1_seeds and arms["p1"]["seeds"] == SEEDS
    assert (prog["horizon"], prog["steps"]) == (12, 6000)
    plan = parts.plan_text(prog, args.out, args)
    assert "41 member steps/s" in plan
    hours, count = re.search(r"total about ([\d.]+) h in (\d+) parts", plan).groups()
    docs = " ".join((REPO / "docs/reproduce.md").read_text().split())
    assert f"`--setting p9 --plan` gives about {hours} hours in {count} parts" in docs
    seeds = _plan_seeds(plan)
    assert set(seeds) == {"p1", "p9"}
    assert seeds["p1"] == seeds["p9"] == set(SEEDS[:cfg.v2_p9_seeds])
    first = next(line for line in plan.splitlines() if "(provisional)" in line)
    block = re.search(r"p1-([\d-]+) \(provisional\)", first).group(1)
    assert f"p9-{block} (provisional)" in first  # a seed's two pairs run together
    gates = re.findall(r"gate-(\d+)-(\d+)", plan)
    assert {s for lo, hi in gates for s in range(int(lo), int(hi) + 1)} == set(
        SEEDS[:cfg.v2_p9_seeds])
    hours, count = re.search(r"total about ([\d.]+) h in (\d+) parts", plan).groups()
    docs = " ".join((REPO / "docs/reproduce.md").read_text().split())
    assert f"`--setting p9 --plan` gives about {hours} hours in {count} parts" in docs
    assert f"the first {cfg.v2_p9_seeds} readable seeds" in docs
    wider, _ = _new("p9", tmp_path / "wider", "--report-set", "v2_p9_seeds=24")
    assert wider["arms"]["p9"]["count"] == 24 and not wider["confirmatory"]
    assert _plan_seeds(parts.plan_text(wider, args.out, args))["p1"] == set(SEEDS[:24])


def test_the_plans_rate_is_the_slowest_measured_d2_block():
    """v2_p9.CPU_MEMBER_STEPS_PER_S against the committed d = 2 programme's generations of 10
    members (one-thread workers, two at once): the median of the slowest block, so that a part
    sized by it fits its hour on every CPU that has run the programme. The blocks ran on two
    machines; a faster one only makes the plan's estimate long."""
    medians = []
    for path in (REPO / "docs/results/cpu-v2/runs/p1").glob("*/timing.json"):
        seconds = [float(row["seconds"]) for row in json.loads(path.read_text())["generations"]
                   if row["trained_members"] == 10 and not row.get("resumed")]
        if seconds:
            medians.append(statistics.median(seconds))
    if not medians:
        pytest.skip("no timed generation of 10 members in docs/results/cpu-v2")
    rate = 10 * 6000 / max(medians)
    assert abs(rate - p9_mod.CPU_MEMBER_STEPS_PER_S) < 1.5, rate


def _arms(listed: list[int], p1: int, p9: int) -> dict:
    spec = lambda n: {"lambda": 0.0, "seeds": listed, "count": n}  # noqa: E731
    return {"p1": spec(p1), "p9": {**spec(p9), "paired_with": "p1"}}


def test_a_seed_with_either_pair_unreadable_is_replaced_for_p9_and_p1_runs_the_spare():
    """P1 reads 2 seeds, P9 4: the gate gates 4, p1 runs P9's seeds with p9's blocks beside
    its own; seed 2's p1 pair failing to train, or seed 4's p9 pair, gives P9 the next spare,
    which p1 runs too; no lambda = 1 block."""
    prog = {"arms": _arms(list(range(1, 9)), 2, 4), "block_seeds": 2, "horizon": 3}
    state = {"blocks": [b.to_json() for b in gate.initial_blocks(prog)],
             "spares": {}, "parts": []}
    assert [b["seeds"] for b in state["blocks"]] == [[1, 2, 3, 4]]
    found = {s: {"passed": True, "gap_closed": 0.95} for s in range(1, 9)}
    gate.update(prog, state, found, {})
    names = [schedule.Block.from_json(b).name for b in state["blocks"]]
    assert names == ["gate-1-4", "p1-1-2", "p9-1-2", "p1-3-4", "p9-3-4"]
    assert gate.update(prog, state, found, {"p1": {2}}) == [
        "p1 loops for [5] (passed the gate)", "p9 loops for [5] (passed the gate)"]
    assert state["gate"]["arms"]["p9"]["seeds"] == [1, 2, 3, 4, 5]
    gate.update(prog, state, found, {"p1": {2}, "p9": {4}})
    assert state["gate"]["arms"]["p9"]["seeds"] == [1, 2, 3, 4, 5, 6]
    assert state["gate"]["arms"]["p1"]["seeds"] == [1, 2, 3]  # P1's own: a spare for seed 2
    ran = {arm: {s for b in state["blocks"] if b["arm"] == arm for s in b["seeds"]}
           for arm in ("p1", "p9")}
    assert ran["p9"] == set(range(1, 7)) and ran["p9"] <= ran["p1"]
    assert all(b["arm"] != schedule.SECONDARY for b in state["blocks"])
    assert gate.provisional_blocks(prog, state, [schedule.Block.from_json(b)
                                                 for b in state["blocks"]]) == []
    assert gate.counted_misses(prog, {**found, 3: {"passed": False, "gap_closed": 0.1}},
                               {}) == {"p1": [3], "p9": [3]}


def test_p9_is_judged_where_its_arm_runs_and_not_run_elsewhere():
    three = {"p1": {}, "p2": {}, "lambda1": {}}
    for prog in ({"setting": "d2", "arms": three},
                 {"setting": "d3", "arms": {**three, "p6": {}}},
                 {"setting": "gpu_d20", "arms": three}):
        out = report.untested_verdicts(prog)
        assert out["9"]["verdict"] == "not run" and "--setting p9" in out["9"]["why"]
    p9 = report.untested_verdicts({"setting": "p9", "arms": {"p1": {}, "p9": {}}})
    assert "9" not in p9 and "1" not in p9
    assert p9["2"]["verdict"] == "not run" and "lambda = 0 only" in p9["2"]["why"]
    assert p9["6"]["verdict"] == "not run" and "d = 3 setting" in p9["6"]["why"]
    assert p9["3"]["verdict"] == "not testable"  # the rules' own, as in the d = 2 programme
    gpu = report.untested_verdicts({"setting": "gpu_d20_p9", "arms": {"p1": {}, "p9": {}}})
    assert gpu["3"]["verdict"] == "not run" and gpu["2"]["verdict"] == "not run"
    smoke = report.untested_verdicts({"setting": "p9", "arms": {"p1": {}}})
    assert smoke["9"]["verdict"] == "not run" and "left out" in smoke["9"]["why"]


def test_p9s_design_is_its_pilots_noise_or_a_note(tmp_path, monkeypatch):
    cfg = ReportConfig()
    design = p9_mod.p9_design(cfg, 8, {"sigma": 0.05, "tau": 0.02}, "test", draws=1000)
    assert design["window"] == list(range(6, 13)) and design["margin"] == cfg.v2_delta2
    assert 0 < design["min_detectable_effect"] < 5
    assert 0 < design["below_delta_1"]["min_detectable_effect"] < 5
    noisier = p9_mod.p9_design(cfg, 8, {"sigma": 0.2, "tau": 0.02}, "test", draws=1000)
    assert noisier["min_detectable_effect"] > design["min_detectable_effect"]
    monkeypatch.setattr(p9_mod, "REPO", tmp_path)
    missing = p9_mod.planned(cfg, 20)
    assert missing["seeds"] == 20 and "does not exist yet" in missing["not_planned"]
    sizing = tmp_path / p9_mod.P9_SIZING
    sizing.parent.mkdir(parents=True)
    sizing.write_text(json.dumps({"controls": {"replace_twin": {"noise": None,
                                                                "not_sized": "too few"}}}))
    assert "too few" in p9_mod.planned(cfg, 20)["not_planned"]
    sizing.write_text(json.dumps({"controls": {"replace_twin": {
        "noise": {"sigma": 0.05, "tau": 0.02}}}}))
    found = p9_mod.planned(cfg, 8)
    assert found["noise_source"] == p9_mod.P9_SIZING and found["min_detectable_effect"] < 5


def test_the_report_reads_p9_from_the_p9_programmes_runs(tmp_path):
    """A planted P9 programme (runs/p1/ and runs/p9/ as the programme writes them): P9 is
    judged against the p1 arm's oracle twins, its design sits beside its verdict, P1's verdict
    is labelled a by-product, P2 is "not run" and the report says why."""
    from test_p9_accumulation import bounded, settings
    from test_rules_v2 import matched, wobble, write

    seeds = list(range(8))
    prog, _ = _new("p9", tmp_path / "out", "--seed-counts", "4", "8",
                   "--set", f"members.seeds=[{','.join(map(str, seeds))}]")
    runs = tmp_path / "planted" / "runs"
    (runs).mkdir(parents=True)
    (runs / programme.PROGRAMME).write_text(json.dumps({**prog, "rules_commit": "abc"}))
    replace = matched(lambda lam, s, g: 0.8 + wobble(s, g, 0.02), lams=(0.0,), seeds=seeds,
                      generations=12)  # above delta_1 = 0.48: P1 confirmed
    accumulate = matched(bounded, lams=(0.0,), seeds=seeds, generations=12)
    for r in accumulate:
        r["synthetic"] = "accumulate_s0"
    write(tmp_path / "planted", replace, "p1/p1-0-7", settings("replace"))
    write(tmp_path / "planted", accumulate, "p9/p9-0-7", settings("accumulate_s0"))
    report.write(runs, tmp_path / "report", None, figures=False)
    verdicts = json.loads((tmp_path / "report" / "verdicts.json").read_text())
    p9, p1 = verdicts["verdicts"]["9"], verdicts["verdicts"]["1"]
    assert p9["verdict"] == "confirmed", p9.get("numbers")
    assert p9["seeds"] == 8 and p9["design"] == prog["design"]["P9"]
    (group,) = p9["groups"]
    assert "accumulate_s0" in group["group"] and group["counted"]
    assert "not_planned" in p9["design"] or p9["design"]["seeds"] == 8
    assert p1["by_product"] == p9_mod.BY_PRODUCT and p1["verdict"] == "confirmed"
    assert verdicts["verdicts"]["2"]["verdict"] == "not run"
    assert verdicts["programme"]["arms"]["p1"]["seeds_needed"] == 8
    assert verdicts["programme"]["finished"]
    text = (tmp_path / "report" / "REPORT.md").read_text()
    assert "| P9 |" in text and "P1's verdict here is a by-product" in text


# Gate and failure checks all but off; P9's window moved to fit the toy horizon of 3.
TOY_REPORT = ["gate_tolerance=100.0", "failure_gap=0.0", "failure_train_ratio=1e9",
              "v2_p9_window_share=1.0", "v2_p9_min_window=2"]


def test_a_toy_p9_programme_runs_both_arms_and_reports_p9(tmp_path):
    """Three toy seeds, all through the gate; P1 reads 2, P9 3: the p1 arm runs all 3 beside
    p9's loops; the accumulating loops' generation 0 is the gate run's (P1's preset) to the
    last digit; P9 is read from its runs (a toy loop is far from ridge, so it is left out as
    failed to train, however many that is), and the report regenerates from a copy of runs/.
    """
    out = tmp_path / "out"
    cmd = [sys.executable, str(SCRIPT), "--setting", "p9", "--out", str(out), "--seed-counts",
           "2", "3", "--block-seeds", "3", "--part-minutes", "600", "--progress-every", "5",
           "--no-figures", "--parts", "20", *(a for o in TOY for a in ("--set", o)),
           *(a for o in TOY_REPORT for a in ("--report-set", o))]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=1500)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    state = json.loads((out / "state.json").read_text())
    names = [schedule.Block.from_json(b).name for b in state["blocks"]]
    assert names == ["gate-1-2", "gate-3", "p1-1-3", "p9-1-3"]  # the gate: one block a worker
    verdicts = json.loads((out / "verdicts.json").read_text())
    summary = verdicts["programme"]
    assert summary["finished"] and summary["arms"]["p1"]["seeds_needed"] == 3
    assert summary["arms"]["p1"]["seeds_run"] == summary["arms"]["p9"]["seeds_run"] == [1, 2, 3]
    agreement = summary["gate_stage"]["generation_0_agreement"]
    assert agreement == {"loops": 2 * 2 * 3, "max_abs_difference": 0.0}
    p9 = verdicts["verdicts"]["9"]
    assert p9["verdict"] in (*p9["can_get"], "not tested") and p9["design"]["seeds"] == 3
    (group,) = [g for g in p9["groups"] if g["counted"]]
    assert "accumulate_s0" in group["group"]
    assert group["n_seeds"] + group["left_out"]["training_failures"] == 3
    assert verdicts["verdicts"]["1"]["by_product"] == p9_mod.BY_PRODUCT
    assert verdicts["verdicts"]["2"]["verdict"] == "not run"
    summaries = [json.loads(p.read_text()) for p in (out / "runs").rglob("summary.json")]
    synthetic = {s["settings"]["loop"]["synthetic"] for s in summaries}
    assert synthetic == {"replace", "accumulate_s0"}
    assert all(math.isfinite(r["test_risk"]) for s in summaries for r in s["generations"])
    report_only_over_a_copy(out, tmp_path)
