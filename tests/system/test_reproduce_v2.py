"""scripts/reproduce_v2.py, the confirmatory reproduction: its presets are the rules' primary
groups on seeds no earlier run used, its parts fit their time and resume, it asks for spares
only when a seed already run is unreadable, and its report regenerates from a copy of runs/.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import compose_cfg
from programme_checks import (
    REPO,
    kill_once_written,
    report_only_over_a_copy,
    toy_command,
)
from programme_checks import load_script as _script

from icl_stl.cli.common import load_app_config
from icl_stl.cli.loop import members_from_config
from icl_stl.report.rules import ReportConfig
from icl_stl.report.simulate_v2 import Noise, draw, planned_mde
from icl_stl.report.stats import rates, t_quantile
from icl_stl.runs.provenance import cpu_label

sys.path.insert(0, str(REPO / "scripts"))
schedule = importlib.import_module("v2_schedule")
programme = importlib.import_module("v2_programme")
parts = importlib.import_module("v2_parts")
SIZING = json.loads((REPO / "docs/results/pilot-v2/sizing.json").read_text())


def arm(setting: str, loops: str):
    return load_app_config(compose_cfg("loop", f"experiment=reproduce_v2/{setting}_{loops}"),
                           needs_loop=True)


def test_the_d2_presets_are_the_rules_primary_groups():
    """docs/THEORY.md section 8.1: d = 2, k = 6, no noise, n = 10,000, tiny GPT-2, batch 64,
    6,000 steps per generation from scratch, G = 8, 30,000 test prompts; P1 at lambda = 0 on 10
    seeds, P2 at 0.5 on 20, each with 4 spares in ascending order and an oracle twin; the
    lambda = 1 loop of every such seed, model-labelled."""
    cfg = ReportConfig()
    pilot = load_app_config(compose_cfg("loop", "experiment=pilot/v2_d2"), needs_loop=True)
    seeds = {}
    for loops, lam, count in (("p1", 0.0, cfg.v2_p1_seeds), ("p2", 0.5, cfg.v2_p2_seeds),
                              ("lambda1", 1.0, None)):
        app = arm("d2", loops)
        assert (app.task.d, app.task.k, app.task.noise_std, app.data.n) == (2, 6, 0.0, 10_000)
        assert app.model == pilot.model and app.model.n_layer == 3
        assert app.train == pilot.train and (app.train.steps, app.train.batch_size) == (6000, 64)
        assert app.loop.init == "from_scratch" and app.loop.generations == cfg.v2_horizon == 8
        assert app.eval.n_prompts == 30_000 >= SIZING["test_prompts_needed"]
        members = members_from_config(app)
        assert {m.real_fraction for m in members} == {lam}
        seeds[loops] = list(app.members.seeds)
        assert seeds[loops] == sorted(set(seeds[loops]))
        if count is not None:
            assert len(seeds[loops]) == count + 4
            assert app.members.labellers == ["model", "oracle"]
        else:
            assert app.members.labellers is None and app.loop.labeller == "model"
    assert set(seeds["p1"]) | set(seeds["p2"]) <= set(seeds["lambda1"])


def test_the_d3_presets_are_the_second_setting():
    """Label noise at d = 3 (docs/THEORY.md section 8.7): d = 3, k = 8, noise
    0.25, n = 10,000, tiny GPT-2, from scratch, G = 8; its own seeds 21001-21030 (test set
    21000) in ascending order, each P1 and P2 loop beside its oracle twin, and every such
    seed's lambda = 1 loop."""
    seeds = {}
    for loops, lam in (("p1", 0.0), ("p2", 0.5), ("lambda1", 1.0)):
        app = arm("d3", loops)
        assert (app.task.d, app.task.k, app.task.noise_std, app.data.n) == (3, 8, 0.25, 10_000)
        assert app.model.n_layer == 3 and app.loop.init == "from_scratch"
        assert app.loop.generations == 8 and app.seed == 21000
        assert app.runtime.compile and app.runtime.fused_adam
        assert {m.real_fraction for m in members_from_config(app)} == {lam}
        seeds[loops] = list(app.members.seeds)
        assert seeds[loops] == list(range(21001, 21031))
        assert app.members.labellers == (None if loops == "lambda1" else ["model", "oracle"])
    assert set(seeds["p1"]) | set(seeds["p2"]) <= set(seeds["lambda1"])


FIXTURE = REPO / "tests" / "fixtures" / "programme_d2_compared.json"


def test_the_running_d2_programme_still_resumes():
    """A d2 programme resumes only when new_programme gives, on the keys in COMPARED, what its
    runs/programme.json stored when it started. The fixture is the programme started at
    rules_commit ce3b2b2 (outputs/reproduce_v2/d2/runs/programme.json), copied before the
    second setting was added: setting d2 must plan exactly that, design included."""
    stored = json.loads(FIXTURE.read_text())
    fresh = programme.new_programme(_script().parse_args(["--setting", "d2"]))
    for key in programme.COMPARED:
        now = programme.comparable(key, stored[key], fresh[key])
        assert json.dumps(now, sort_keys=True) == json.dumps(stored[key], sort_keys=True), key
    assert fresh["design"] == stored["design"]


def test_a_report_setting_added_later_does_not_stop_a_resume_but_a_changed_one_does():
    stored = {"v2_delta1": 0.48, "v2_p1_seeds": 10}
    assert programme.comparable("report_settings", stored,
                                {**stored, "v2_p9_seeds": 20}) == stored
    assert programme.comparable("report_settings", stored, {**stored, "v2_delta1": 0.5}) \
        != stored
    assert programme.comparable("report_settings", stored, {"v2_delta1": 0.48}) != stored
    assert programme.comparable("arms", {"a": 1}, {"a": 1, "b": 2}) == {"a": 1, "b": 2}


def _d3_sizing(tmp_path: Path, monkeypatch, **changes) -> Path:
    sizing = {"noise": {"sigma": 0.3, "tau": 0.05}, "delta_1": 0.41, "delta_2": 0.051,
              "horizon": 8, "seeds_p1": 6, "seeds_p2": 12, "test_prompts_needed": 20000,
              **changes}
    path = tmp_path / "sizing.json"
    path.write_text(json.dumps(sizing))
    monkeypatch.setitem(programme.SETTING_RULES, "d3",
                        programme.SETTING_RULES["d3"].__class__(path, from_sizing=True))
    return path


def test_the_d3_programme_takes_its_rules_and_noise_from_its_own_sizing(tmp_path, monkeypatch):
    path = _d3_sizing(tmp_path, monkeypatch)
    prog = programme.new_programme(_args(tmp_path / "out", "--setting", "d3"))
    rules = prog["report_settings"]
    assert (rules["v2_delta1"], rules["v2_delta2"], rules["v2_horizon"]) == (0.41, 0.051, 8)
    assert (rules["v2_p1_seeds"], rules["v2_p2_seeds"]) == (6, 12)
    assert prog["arms"]["p1"]["count"] == 6 and prog["arms"]["p2"]["count"] == 12
    assert prog["design"]["noise_source"] == str(path)
    assert prog["design"]["noise"] == {"sigma": 0.3, "tau": 0.05}
    assert prog["design"]["P1"]["margin"] == 0.41 and prog["design"]["P2"]["seeds"] == 12
    assert prog["presets"]["p2"] == "reproduce_v2/d3_p2" and prog["confirmatory"]
    d2 = programme.new_programme(_args(tmp_path / "d2"))  # d2 keeps its own rules
    assert d2["report_settings"]["v2_delta1"] == ReportConfig().v2_delta1
    assert d2["design"]["noise_source"] == "docs/results/pilot-v2/sizing.json"


def test_the_d3_programme_refuses_rules_it_cannot_run(tmp_path, monkeypatch):
    _d3_sizing(tmp_path, monkeypatch, seeds_p2=31)
    with pytest.raises(programme.ProgrammeError, match="rules read 31 seeds for P2, the "
                                                        "preset lists 30"):
        programme.new_programme(_args(tmp_path / "out", "--setting", "d3"))
    _d3_sizing(tmp_path, monkeypatch, seeds_p2=None)
    with pytest.raises(programme.ProgrammeError, match="seeds_p2 is None"):
        programme.new_programme(_args(tmp_path / "out", "--setting", "d3"))
    _d3_sizing(tmp_path, monkeypatch, horizon=6)
    with pytest.raises(programme.ProgrammeError, match="its sizing's horizon 6"):
        programme.new_programme(_args(tmp_path / "out", "--setting", "d3"))
    monkeypatch.setitem(programme.SETTING_RULES, "d3", programme.SETTING_RULES["d3"].__class__(
        tmp_path / "none.json", from_sizing=True))
    with pytest.raises(programme.ProgrammeError, match="^--setting d3: .*none.json does not "
                                                        "exist; run its pilot"):
        programme.new_programme(_args(tmp_path / "out", "--setting", "d3"))


def test_a_programme_is_finished_when_its_lambda_1_loops_are_too():
    """The lambda = 1 arm has no count (a loop for each seed P1 or P2 ran): the programme is
    finished once both counts are through the horizon and so are those seeds' lambda = 1 loops."""
    report = importlib.import_module("v2_report")
    prog = {"arms": {"p1": {"lambda": 0.0, "count": 1, "seeds": [1, 2]},
                     "p2": {"lambda": 0.5, "count": 1, "seeds": [1, 2]},
                     "lambda1": {"lambda": 1.0, "count": None, "seeds": [1, 2]}},
            "setting": "d2", "presets": {}, "confirmatory": False, "overrides": [],
            "horizon": 3, "steps": 24}
    rec = lambda seed, lam: {"seed": seed, "real_fraction": lam, "generation": 3}  # noqa: E731
    records = [rec(1, 0.0), rec(2, 0.5), rec(1, 1.0)]
    assert not report.programme_summary(prog, records)["finished"]  # seed 2 at lambda 1 to go
    assert report.programme_summary(prog, [*records, rec(2, 1.0)])["finished"]


def test_every_setting_has_its_rules():
    assert set(programme.settings_available()) == set(programme.SETTING_RULES)


def _seeds_in(value, key: str = "") -> set[int]:
    """Every integer under a key naming a seed (seed, seeds, run_seed, ...) in a JSON/YAML tree,
    and the values of a swept `seed` (hydra.sweeper.params)."""
    found: set[int] = set()
    if isinstance(value, dict):
        for k, v in value.items():
            found |= _seeds_in(v, str(k))
    elif isinstance(value, list):
        for v in value:
            found |= _seeds_in(v, key)
    elif "seed" in key.lower() and isinstance(value, int) and not isinstance(value, bool):
        found.add(value)
    elif "seed" in key.lower() and isinstance(value, str):
        found |= {int(x) for x in re.findall(r"\d+", value)}
    return found


def test_the_seeds_are_fresh():
    """No committed result, preset or script (the programme's own aside) used a run seed or the
    test-set seed of the programme; the helpers' measurements of the day took 9100-9302."""
    used: set[int] = set()
    own = REPO / "docs" / "results" / "cpu-v2"  # the programme's own (interim) results
    for path in (REPO / "docs" / "results").rglob("*.json"):
        if own not in path.parents:
            used |= _seeds_in(json.loads(path.read_text()))
    for path in (REPO / "conf").rglob("*.yaml"):
        if "reproduce_v2" not in path.parts:
            used |= _seeds_in(yaml.safe_load(path.read_text()) or {})
    for path in (REPO / "scripts").glob("*.py"):
        if path.name != "reproduce_v2.py" and not path.name.startswith("v2_"):
            used |= {int(x) for x in re.findall(r"seed\w*\W{1,4}(\d{3,})", path.read_text())}
    used |= set(range(9100, 9303))
    assert {0, 1, 2, 3, 4, 9000, 9004} <= used  # the scan finds what earlier runs used
    ours, by_setting = set(), {}
    for setting in ("d2", "gpu_d20", "d3"):
        for loops in ("p1", "p2", "lambda1"):
            app = arm(setting, loops)
            ours |= set(app.members.seeds) | {app.seed}
            by_setting.setdefault(setting, set()).update({*app.members.seeds, app.seed})
            assert app.seed not in app.members.seeds  # the test set's own stream
    assert ours and not ours & used, sorted(ours & used)
    assert not by_setting["d3"] & by_setting["d2"]  # the second setting's seeds are its own


def test_the_gpu_preset_is_the_same_programme_at_garg_size():
    for loops in ("p1", "p2", "lambda1"):
        gpu, cpu = arm("gpu_d20", loops), arm("d2", loops)
        assert (gpu.task.d, gpu.task.k) == (20, 41)
        assert (gpu.model.n_layer, gpu.model.n_head, gpu.model.n_embd) == (12, 8, 256)
        assert gpu.members == cpu.members and gpu.seed == cpu.seed
        assert gpu.loop.init == "from_scratch" and gpu.loop.generations == 8
        assert gpu.eval.n_prompts == cpu.eval.n_prompts and gpu.train.batch_size == 64


def test_blocks_cut_seeds_evenly_in_order_and_interleave_p1_with_p2():
    assert schedule.chunks(list(range(10)), 4) == [(0, 1, 2, 3), (4, 5, 6), (7, 8, 9)]
    assert schedule.chunks(list(range(10)), 5) == [(0, 1, 2, 3, 4), (5, 6, 7, 8, 9)]
    arms = {"p1": {"seeds": [1, 2, 3, 4, 5, 6], "count": 4},
            "p2": {"seeds": [1, 2, 3, 4, 5, 6, 7, 8, 9, 10], "count": 6}}
    blocks = schedule.primary_blocks(arms, 2, workers=1)
    assert [b.name for b in blocks] == ["p1-1-2", "p2-1-2", "p1-3-4", "p2-3-4", "p2-5-6",
                                        "lambda1-1-3", "lambda1-4-6"]
    assert blocks[0].trained_members(0) == 2 and blocks[0].trained_members(1) == 4
    assert blocks[-1].trained_members(0) == blocks[-1].trained_members(3) == 3
    # one-member blocks (lambda = 1, a gate round): at most twice a matched block's seeds, and
    # one per worker at least, so that the last of a stage does not run alone
    assert schedule.primary_blocks(arms, 2, workers=2)[5:] == blocks[5:]
    assert [b.name for b in schedule.primary_blocks(arms, 3, workers=2)[-2:]] == [
        "lambda1-1-3", "lambda1-4-6"]  # at most 6 a block: one block, cut in two
    assert [b.name for b in schedule.primary_blocks(arms, 3, workers=1)[-1:]] == ["lambda1-1-6"]
    assert schedule.one_member_chunks([7, 8, 9], 5, workers=4) == [(7,), (8,), (9,)]
    assert schedule.one_member_chunks([], 5, workers=2) == []


def test_spares_replace_unreadable_seeds_one_for_one_in_order():
    spec = {"seeds": [1, 2, 3, 4, 5, 6], "count": 4}
    assert schedule.spares_needed(spec, set(), []) == []
    assert schedule.spares_needed(spec, {2}, []) == [5]
    assert schedule.spares_needed(spec, {2}, [5]) == []
    assert schedule.spares_needed(spec, {2, 5}, [5]) == [6]
    assert schedule.spares_needed(spec, {1, 2, 3}, []) == [5, 6]  # no more than listed


def test_parts_fit_their_time_on_the_least_loaded_worker():
    est = schedule.Estimator({4: 1.0, 8: 2.0}, steps=100)  # 100 s with 4 members, 200 with 8
    assert est.seconds(4) == 100 and est.seconds(6) == 150 and est.seconds(16) == 400
    blocks = [schedule.Block("p1", (1, 2, 3, 4), True), schedule.Block("p2", (1, 2, 3, 4), True)]
    segments = schedule.pack([(b, 0) for b in blocks], 8, 2, 650, est)
    assert [(s.worker, s.block.name, s.first, s.last) for s in segments] == [
        (0, "p1-1-4", 0, 2), (1, "p2-1-4", 0, 2)]  # 100 + 3 x 200 = 700 > 650
    assert schedule.makespan(segments, 2) == 500
    resumed = schedule.pack([(blocks[0], 4), (blocks[1], 8)], 8, 2, 650, est)
    assert [(s.block.name, s.first, s.last) for s in resumed] == [("p1-1-4", 4, 6),
                                                                  ("p2-1-4", 8, 8)]
    slow = schedule.pack([(blocks[0], 0)], 8, 2, 10, est)  # always at least one generation
    assert [(s.first, s.last) for s in slow] == [(0, 0)]
    est.measured = {8: [50.0, 70.0]}  # measured generations win, and scale the rest
    assert est.seconds(8) == 60 and est.seconds(16) == 120
    est_fast = schedule.Estimator({4: 1.0, 8: 2.0}, steps=100, speedup=2.0)
    assert est_fast.seconds(8) == 100


def test_timed_generations_plan_the_other_sizes_erring_long():
    """Once a size is timed, a larger block is planned in proportion to its members and a
    smaller one as the smallest timed (the members' cost is linear on one CPU, far from it on
    another), not in the prior's shape (the uncompiled pilot's, nearly flat); between two
    timed sizes, linearly. After a gate-first stage's first round the loops' blocks are planned
    from the gate's times; a timed loop generation then takes over, and a gate block is
    planned from the gate's times throughout."""
    est = schedule.Estimator({4: 1.0, 8: 1.1}, steps=100)  # a flat prior: 100 s at 4, 110 at 8
    assert est.seconds(8) == pytest.approx(110)
    est.gate_measured = {4: [200.0, 200.0]}
    assert est.seconds(8) == 400 and est.seconds(4) == 200 and est.seconds(2) == 200
    gate = schedule.Block(schedule.GATE, (1, 2, 3, 4), False)
    assert est.block_seconds(gate, 0) == 200
    est.measured = {8: [240.0]}  # a loop generation wins over the gate's
    assert est.seconds(8) == 240 and est.seconds(10) == 300 and est.seconds(4) == 240
    assert est.block_seconds(gate, 0) == 200
    est.measured = {4: [150.0], 8: [240.0]}
    assert est.seconds(6) == 195 and est.seconds(2) == 150


def test_a_part_is_planned_for_the_machine_that_runs_it(tmp_path, monkeypatch):
    """Where this machine's timed generations are slower than the record's (a 10-member
    generation took 749 s on one CPU and 1,900 s on another), they plan its parts; where
    faster, the record's (erring long). merge_timing tags each generation it merges with the
    CPU, and the estimator reads the tag."""
    est = schedule.Estimator({4: 1.0}, steps=100)
    est.measured = {10: [700.0, 750.0, 800.0]}
    est.this_machine = schedule.Estimator({4: 1.0}, steps=100)
    assert est.seconds(10) == 750  # nothing timed here yet
    est.this_machine.measured = {10: [1900.0]}
    assert est.seconds(10) == 1900 and est.seconds(5) == 1900 and est.seconds(20) == 3800
    est.this_machine.measured = {10: [500.0]}
    assert est.seconds(10) == 750
    gate = schedule.Block(schedule.GATE, (1, 2, 3, 4), False)
    est.gate_measured, est.this_machine.gate_measured = {4: [200.0]}, {4: [300.0]}
    assert est.block_seconds(gate, 0) == 300

    monkeypatch.setattr(programme, "rules_state", lambda: ("abc123", []))
    args = _args(tmp_path)
    prog = programme.start_or_resume(args)
    state = programme.load_state(tmp_path)
    block = programme.blocks(prog, tmp_path, state)[0]
    run = programme.run_dir(tmp_path, block)
    run.mkdir(parents=True)
    row = {"seconds": 600.0, "trained_members": 10, "phases": {}}
    (run / "timing.all.json").write_text(json.dumps(
        {"generations": [{**row, "generation": 0, "machine": "another CPU"}]}))
    (run / "timing.json").write_text(json.dumps(
        {"generations": [{**row, "generation": 1, "seconds": 1900.0}]}))
    parts.merge_timing(tmp_path, block)
    merged = json.loads((run / "timing.json").read_text())["generations"]
    assert [r["machine"] for r in merged] == ["another CPU", cpu_label()]
    est = parts.estimator(prog, state, tmp_path, args)
    assert est.measured == {10: [600.0, 1900.0]} and est.this_machine.measured == {10: [1900.0]}
    assert est.seconds(10) == 1900 and "1 on this machine" in est.source()
    segments = schedule.pack([(block, 2)], 8, 1, 3600, est)
    assert [(s.first, s.last) for s in segments] == [(2, 2)]  # 2 x 1,900 s > an hour


def test_the_planned_mde_is_the_tests_own_at_the_pilots_noise():
    """By simulation through the report's functions; it agrees with the t-test formula
    (t_{1-alpha} + t_{power}) x se, se from sigma and tau, and detects with the stated power."""
    cfg = ReportConfig()
    noise = Noise(SIZING["noise"]["sigma"], SIZING["noise"]["tau"])
    design = planned_mde(noise, cfg, 10, 20, draws=4000)
    per_seed = math.sqrt(noise.tau ** 2 + noise.sigma ** 2 / cfg.v2_horizon)
    formula = (t_quantile(0.95, 9) + t_quantile(0.80, 9)) * per_seed / math.sqrt(10)
    assert design["P1"]["min_detectable_effect"] == pytest.approx(formula, rel=0.06)
    window = np.array(design["P2"]["window"], dtype=float)
    slope_sd = noise.sigma / math.sqrt(((window - window.mean()) ** 2).sum())
    tost = (t_quantile(0.95, 19) + t_quantile(0.90, 19)) * slope_sd / math.sqrt(20)
    assert design["P2"]["min_detectable_effect"] == pytest.approx(tost, rel=0.06)
    assert design["P2"]["min_detectable_effect"] <= cfg.v2_delta2  # 20 seeds resolve delta_2
    from icl_stl.report.predictions.p1_matched_collapse import p1_matched_core

    gens = np.arange(1, cfg.v2_horizon + 1)
    shift = cfg.v2_delta1 + design["P1"]["min_detectable_effect"]
    contrast = draw(lambda g: np.full(g.shape, shift), gens, 10, noise, 4000,
                    np.random.default_rng(7))
    power = rates(p1_matched_core(contrast, cfg)["code"])["confirmed"]
    assert 0.76 <= power <= 0.84


def _args(tmp_path: Path, *extra: str) -> argparse.Namespace:
    return _script().parse_args(["--out", str(tmp_path), *extra])


def test_a_confirmatory_start_needs_the_rules_committed(tmp_path, monkeypatch):
    monkeypatch.setattr(programme, "rules_state", lambda: ("abc123", ["docs/THEORY.md"]))
    with pytest.raises(programme.ProgrammeError, match="rules must be committed.*THEORY"):
        programme.start_or_resume(_args(tmp_path))
    assert not (tmp_path / "runs").exists()
    monkeypatch.setattr(programme, "rules_state", lambda: ("abc123", []))
    prog = programme.start_or_resume(_args(tmp_path))
    assert prog["rules_commit"] == "abc123" and prog["confirmatory"]
    stored = json.loads((tmp_path / "runs" / "programme.json").read_text())
    assert stored["arms"]["p1"]["count"] == 10 and stored["design"]["P1"]["seeds"] == 10
    assert len(json.loads((tmp_path / "state.json").read_text())["blocks"]) == 8
    with pytest.raises(programme.ProgrammeError, match="^block_seeds: "):
        programme.start_or_resume(_args(tmp_path, "--block-seeds", "4"))


def test_update_blocks_adds_spares_and_their_lambda_1_loops(tmp_path, monkeypatch):
    prog = {"arms": {"p1": {"lambda": 0.0, "seeds": [1, 2, 3, 4], "count": 2},
                     "p2": {"lambda": 0.5, "seeds": [1, 2, 3, 4], "count": 2},
                     "lambda1": {"lambda": 1.0, "seeds": [1, 2, 3, 4], "count": None}},
            "block_seeds": 2}
    state = {"blocks": [b.to_json() for b in schedule.primary_blocks(prog["arms"], 2, 1)],
             "spares": {"p1": [], "p2": []}, "parts": []}
    # seed 2's P1 loop missed the gate, its P2 loop failed to train
    monkeypatch.setattr(programme, "unreadable_state", lambda runs, prog: {"p1": {2}, "p2": {2}})
    added = programme.update_blocks(prog, state, tmp_path)
    assert state["spares"] == {"p1": [3], "p2": [3]} and len(added) == 3
    names = [schedule.Block.from_json(b).name for b in state["blocks"]]
    assert names[-3:] == ["p1-3", "p2-3", "lambda1-3"]
    assert programme.update_blocks(prog, state, tmp_path) == []  # nothing new: nothing added


def test_a_block_recorded_in_runs_is_finished_without_its_checkpoints(tmp_path):
    """A new machine keeps runs/ and state.json (committed) but not checkpoints/: the generations
    a run's summary.json records for every member are finished, and only those."""
    prog = {"setting": "d2", "horizon": 3}
    block = schedule.Block("p1", (1, 2), True)
    summary = programme.run_dir(tmp_path, block) / "summary.json"
    assert programme.next_generation(prog, tmp_path, block) == 0
    summary.parent.mkdir(parents=True)
    records = [{"generation": g, "member": m} for g in (0, 1) for m in range(4)]
    records += [{"generation": 2, "member": m} for m in range(3)]  # member 3 missing
    summary.write_text(json.dumps({"members": [{}] * 4, "generations": records}))
    assert programme.finished_generations(prog, tmp_path, block) == {0, 1}
    gen = tmp_path / "checkpoints" / programme.run_name(prog, block) / "gen_002"
    gen.mkdir(parents=True)
    (gen / "metrics.json").write_text("{}")
    assert programme.next_generation(prog, tmp_path, block) == 3


def test_a_toy_programme_resumes_after_a_kill_and_its_report_regenerates(tmp_path):
    out = tmp_path / "out"
    text = kill_once_written(toy_command(out), out / "checkpoints", "*/gen_001/metrics.json", 300)
    assert "interrupted; the same command resumes it" in text
    state = json.loads((out / "state.json").read_text())
    assert [p["finished"] for p in state["parts"]] == [False]
    plan = subprocess.run(toy_command(out, "--plan"), cwd=REPO, capture_output=True, text=True)
    assert "part 1 is unfinished" in plan.stdout, plan.stdout + plan.stderr
    listed = re.findall(r"^part \d+: ~", plan.stdout, re.M)  # the open part counts too
    assert f"in {len(listed)} parts" in plan.stdout and listed
    done = subprocess.run(toy_command(out, "--parts", "5"), cwd=REPO, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "part 1:" in done.stdout and "(resumed)" in done.stdout
    assert "every loop of the programme has finished" in done.stdout
    state = json.loads((out / "state.json").read_text())
    assert state["parts"][0]["finished"] and len(state["parts"][0]["invocations"]) == 2
    made = [schedule.Block.from_json(b) for b in state["blocks"]]
    # the lambda = 1 loops train one member a seed: one block for each of the two workers
    assert [b.name for b in made[:4]] == ["p1-1-2", "p2-1-2", "lambda1-1", "lambda1-2"]
    for block in made[4:]:  # spares: the one listed, only after a seed read was unreadable
        assert block.seeds == (3,), block.name
    assert {str(p.parent.relative_to(out / "runs")) for p in (out / "runs").rglob(
        "summary.json")} == {f"{b.arm}/{b.name}" for b in made}
    for block in made:
        path = out / "runs" / block.arm / block.name
        gens = {r["generation"] for r in json.loads((path / "summary.json").read_text())[
            "generations"]}
        assert gens == {0, 1, 2, 3}, block.name
        timing = json.loads((path / "timing.json").read_text())["generations"]
        assert {r["generation"] for r in timing} >= {2, 3}, block.name  # after the kill
    verdicts = json.loads((out / "verdicts.json").read_text())
    assert verdicts["rules_commit"] == json.loads(
        (out / "runs" / "programme.json").read_text())["rules_commit"]
    assert verdicts["programme"]["confirmatory"] is False
    assert verdicts["verdicts"]["1"]["design"]["seeds"] == 2
    for number in ("3", "4", "5", "10"):  # stated not testable by the rules: never run, never judged
        assert verdicts["verdicts"][number]["verdict"] == "not testable"
        assert (REPO / verdicts["verdicts"][number]["pilot"] / "pilot.json").exists()
    assert "## Predictions not run" in (out / "REPORT.md").read_text()
    assert verdicts["programme"]["finished"] is True  # every arm's seeds through generation 3
    assert "Interim report" not in (out / "REPORT.md").read_text()
    regenerated = report_only_over_a_copy(out, tmp_path)
    assert regenerated["rules_commit"] == verdicts["rules_commit"]
    profile = subprocess.run([sys.executable, str(REPO / "scripts" / "profile_part.py"),
                              str(out), "--part", "1", "--json", str(tmp_path / "p.json")],
                             cwd=REPO, capture_output=True, text=True)
    assert profile.returncode == 0, profile.stderr
    profile = json.loads((tmp_path / "p.json").read_text())
    assert profile["recorded"] == "processes" and profile["report_s"] is not None
    for w in range(profile["workers"]):  # each worker's rows add up to the part's wall time
        assert sum(r["workers"][w]["seconds"] for r in profile["rows"]) == pytest.approx(
            profile["wall_s"], abs=0.1)
    rows = {r["row"]: r["seconds"] for r in profile["rows"]}
    assert rows["training"] > 0 and rows["loop process start-up"] > 0


def _plan(out: Path, *extra: str) -> tuple[dict, str]:
    args = _script().parse_args(["--out", str(out), *extra])
    prog = programme.new_programme(args)
    return prog, parts.plan_text(prog, out, args)


def test_the_documented_plan_and_design_numbers_regenerate(tmp_path):
    """The parts, hours and minimum detectable effects that README.md and
    docs/results/cpu-v2/README.md quote come out of the programme's own plan."""
    docs = " ".join((REPO / "docs/results/cpu-v2/README.md").read_text().split())
    readme = " ".join((REPO / "README.md").read_text().split())
    prog, plan = _plan(tmp_path / "a")
    hours, parts = re.search(r"total about ([\d.]+) h in (\d+) parts", plan).groups()
    minutes = [int(m) for m in re.findall(r"^part \d+: ~(\d+) min", plan, re.M)]
    assert f"{parts} parts of {min(minutes)}-{max(minutes)} minutes, about {hours} hours" in docs
    assert f"about {hours} hours at the pilot's speed" in readme
    _, fast = _plan(tmp_path / "b", "--speedup", "1.5")
    hours, parts = re.search(r"total about ([\d.]+) h in (\d+) parts", fast).groups()
    assert f"`--speedup 1.5`, {parts} parts, about {hours} hours" in docs
    _, gpu = _plan(tmp_path / "c", "--setting", "gpu_d20", "--workers", "1", "--block-seeds",
                   "20", "--member-steps-per-s", "832", "--part-minutes", "600")
    hours = re.search(r"total about ([\d.]+) h", gpu).group(1)
    reproduce = " ".join((REPO / "docs/reproduce.md").read_text().split())
    assert f"about {hours} hours on one H100" in docs and f"expected {hours} H100 hours" in reproduce
    design = prog["design"]
    assert f"σ = {design['noise']['sigma']:.3f}, τ = {design['noise']['tau']:.3f}" in docs
    for value in (design["P1"]["min_detectable_effect"], design["P2"]["min_detectable_effect"],
                  design["P2"]["below_delta_1"]["min_detectable_effect"]):
        assert f"| {value:.3f}" in docs, value


THEORY = """# T

## 8. Design
intro

### 8.1 Rules
- P1: delta_1 = 0.48

### 8.2 Pilot
numbers
"""


def test_the_rules_guard_reads_sections_so_new_rules_can_be_added():
    """A section added after rules_commit (another setting's rules) is allowed; any change to a
    section in force when the programme started, or its removal, is named."""
    added = THEORY + "\n### 8.7 The second setting\n- delta_1 = 0.40\n"
    assert programme.changed_sections(THEORY, added) == []
    inserted = THEORY.replace("### 8.2 Pilot", "### 8.1b Extra\ntext\n\n### 8.2 Pilot")
    assert programme.changed_sections(THEORY, inserted) == []
    assert programme.changed_sections(THEORY, THEORY.replace("0.48", "0.50")) == ["### 8.1 Rules"]
    assert programme.changed_sections(THEORY, THEORY.replace("### 8.2 Pilot", "### 8.2 Pilots")) \
        == ["### 8.2 Pilot"]


def test_a_resume_refuses_a_changed_rules_section(tmp_path, monkeypatch):
    monkeypatch.setattr(programme, "rules_state", lambda: ("abc123", []))
    programme.start_or_resume(_args(tmp_path))
    real_git = programme._git
    current = (programme.REPO / "docs" / "THEORY.md").read_text()
    monkeypatch.setattr(programme, "_git", lambda *a: current if a[0] == "show" else real_git(*a))
    assert programme.start_or_resume(_args(tmp_path))["rules_commit"] == "abc123"
    edited = current.replace("delta_1 = 0.48", "delta_1 = 0.47", 1)
    assert edited != current
    monkeypatch.setattr(programme, "_git", lambda *a: edited if a[0] == "show" else real_git(*a))
    with pytest.raises(programme.ProgrammeError, match=r"^docs/THEORY.md section '### 8.1"):
        programme.start_or_resume(_args(tmp_path))


def test_the_report_is_interim_until_every_arm_has_its_seeds_through_the_horizon():
    report = importlib.import_module("v2_report")
    prog = {"setting": "d2", "presets": {}, "confirmatory": True, "overrides": [], "horizon": 2,
            "steps": 10, "arms": {"p1": {"lambda": 0.0, "count": 2, "seeds": [1, 2, 3]}}}
    rows = [{"seed": s, "real_fraction": 0.0, "labeller": lab, "generation": g}
            for s in (1, 2) for lab in ("model", "oracle") for g in range(2)]
    summary = report.programme_summary(prog, rows)
    assert summary["finished"] is False and summary["arms"]["p1"]["seeds_finished"] == []
    rows += [{"seed": 1, "real_fraction": 0.0, "labeller": "model", "generation": 2},
             {"seed": 2, "real_fraction": 0.0, "labeller": "oracle", "generation": 2}]
    assert report.programme_summary(prog, rows)["finished"] is False  # seed 2's loop is not
    rows.append({"seed": 2, "real_fraction": 0.0, "labeller": "model", "generation": 2})
    summary = report.programme_summary(prog, rows)
    assert summary["finished"] is True and summary["arms"]["p1"]["seeds_finished"] == [1, 2]
