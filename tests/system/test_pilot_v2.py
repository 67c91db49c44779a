"""scripts/pilot_v2.py and scripts/size_v2.py for more than one setting: the d = 2 pilot's
pilot.json regenerates as committed, the second setting's pilot (label noise at d = 3) trains
both arms in one ensemble on two processes, reads its gate and failures with the report's own
functions, takes its noise from the readable loops only, and is sized with its own floor."""

from __future__ import annotations

import importlib
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import compose_cfg

from icl_stl.cli.common import load_app_config
from icl_stl.report.agreement import json_differences

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "scripts"))
pilot_v2 = importlib.import_module("pilot_v2")
analysis = importlib.import_module("pilot_v2_analysis")
size_v2 = importlib.import_module("size_v2")


def app(preset: str):
    return load_app_config(compose_cfg("loop", f"experiment={preset}"), needs_loop=True)


def test_the_d2_pilot_json_regenerates_from_its_committed_runs():
    committed = REPO / "docs/results/pilot-v2/pilot.json"
    regenerated = analysis.analyse(REPO / "docs/results/pilot-v2")
    assert json_differences(json.loads(committed.read_text()),
                            json.loads(json.dumps(regenerated))) == []


def test_the_d3_pilot_json_regenerates_from_its_committed_runs():
    committed = REPO / "docs/results/pilot-v2-d3/pilot.json"
    regenerated = analysis.analyse(REPO / "docs/results/pilot-v2-d3", "d3")
    assert json_differences(json.loads(committed.read_text()),
                            json.loads(json.dumps(regenerated))) == []


def test_the_d3_sizing_and_calibration_regenerate_from_the_committed_pilot():
    assert size_v2.main(["--pilot", str(REPO / "docs/results/pilot-v2-d3"), "--check"]) == 0


def test_theory_section_8_7_quotes_the_d3_pilot_and_its_sizing():
    """docs/THEORY.md section 8.7, the pilot's README and docs/reproduce.md state the numbers
    of docs/results/pilot-v2-d3's pilot.json and sizing.json."""
    results = REPO / "docs/results/pilot-v2-d3"
    pilot = json.loads((results / "pilot.json").read_text())
    sizing = json.loads((results / "sizing.json").read_text())
    theory = " ".join((REPO / "docs/THEORY.md").read_text().split("### 8.7")[1].split())
    readme = " ".join((results / "README.md").read_text().split())
    usage = " ".join((REPO / "docs/reproduce.md").read_text().split())
    contrast = {lam: ", ".join(f"{c:.3f}" for c in pilot["lambdas"][lam]["contrast_mean_by_generation"])
                for lam in ("0", "0.5")}
    gates = [g["gap_closed"]["model"] for g in pilot["gate"]]
    gate = f"{100 * min(gates):.1f}-{100 * max(gates):.1f}% of the gap closed"
    for text in (theory, readme):
        assert contrast["0"] in text and contrast["0.5"] in text and gate in text
        assert f"sigma = {sizing['noise']['sigma']:.3f}" in text
        assert f"tau = {sizing['noise']['tau']:.3f}" in text
    assert f"delta_1 = {sizing['delta_1']:.2f}" in theory
    assert f"delta_2 = delta_1 / (2 (G − i_0)) = {sizing['delta_2']:.3f}" in theory
    assert f"Seeds: P1 {sizing['seeds_p1']}, P2 {sizing['seeds_p2']}." in theory
    stated = (f"δ₁ = {sizing['delta_1']:.2f}, δ₂ = {sizing['delta_2']:.3f} per generation, "
              f"{sizing['seeds_p1']} seeds for P1 and {sizing['seeds_p2']} for P2")
    assert stated in readme and stated in usage
    power = sizing["power_by_seeds"]
    assert f"{100 * power['10']['p2']:.1f}% at 10 seeds" in theory
    assert f"beta = {sizing['collapse_beta']:.3f}" in theory
    assert f"{sizing['test_prompts_needed']:,} make the test-set error" in theory
    for row in json.loads((results / "calibration.json").read_text()):
        assert f"| {row['truth']} | {row['seeds']} | {row['reads']} | {100 * row['rate']:.1f}% " in theory


def test_the_d3_pilot_is_the_second_setting_on_its_own_seeds():
    pilot, conf = app("pilot/v2_d3"), app("reproduce_v2/d3_p1")
    assert pilot.members.seeds == [9411, 9412, 9413, 9414, 9415, 9416] and pilot.seed == 9410
    assert pilot.members.real_fractions == [0, 0.5]
    assert pilot.members.labellers == ["model", "oracle"]
    assert pilot.loop.generations == 3 and pilot.loop.init == "from_scratch"
    assert pilot.eval.n_prompts == 2000
    assert pilot.runtime.compile and pilot.runtime.fused_adam
    # the confirmatory runs train the pilot's learner: same task, data, model and recipe
    assert pilot.task == conf.task and pilot.data == conf.data and pilot.model == conf.model
    assert pilot.train == conf.train and pilot.runtime == conf.runtime
    assert not set(pilot.members.seeds) & set(conf.members.seeds)


def test_run_splits_the_d3_seeds_over_two_processes_and_keeps_the_d2_commands(tmp_path):
    d3 = pilot_v2.commands(pilot_v2.PILOTS["pilot/v2_d3"], tmp_path)
    assert list(d3) == ["part1", "part2"]
    seeds = [next(a for a in cmd if a.startswith("members.seeds=")) for cmd in d3.values()]
    assert seeds == ["members.seeds=[9411,9412,9413]", "members.seeds=[9414,9415,9416]"]
    for part, cmd in d3.items():
        assert "experiment=pilot/v2_d3" in cmd and "runtime.threads=1" in cmd
        assert not any(a.startswith("loop.labeller=") for a in cmd)  # both arms in each
        assert f"hydra.run.dir={tmp_path / part}" in cmd
    d2 = pilot_v2.commands(pilot_v2.PILOTS["pilot/v2_d2"], tmp_path)
    assert d2["oracle"][1:] == ["experiment=pilot/v2_d2", "loop.labeller=oracle",
                                "runtime.threads=1", "run.name=pilot_v2_d2_oracle",
                                f"run.checkpoint_root={tmp_path / 'checkpoints'}",
                                f"hydra.run.dir={tmp_path / 'oracle'}"]


def test_the_pilot_is_found_from_its_results_folder():
    args = pilot_v2.parse_args(["analyse", "--results", str(REPO / "docs/results/pilot-v2-d3")])
    assert args.preset == "pilot/v2_d3" and args.work == Path("outputs/pilot_v2_d3")
    assert pilot_v2.parse_args(["analyse"]).preset == "pilot/v2_d2"
    with pytest.raises(SystemExit):
        pilot_v2.parse_args(["evaluate", "--preset", "pilot/v2_d3"])


ZERO, RIDGE = 1.0, 0.1
GENS = range(4)


def _record(seed, lam, g, labeller, excess, test_risk, train_risk):
    return {"seed": seed, "real_fraction": lam, "generation": g, "labeller": labeller,
            "n": 10000, "augment": 0, "regime": "from_scratch", "s0": f"s0-{seed}",
            "bayes_excess": excess, "bayes_excess_se": 0.1 * excess, "test_risk": test_risk,
            "ridge_risk": RIDGE, "zero_risk": ZERO, "train_risk": train_risk}


def fake_pilot(results: Path, rng: np.random.Generator) -> dict:
    """Two processes' summaries: seed 2 misses the gate (closes 83%), seed 3's lambda = 0 loop
    fails to train at generation 2 (training risk 10 x its twin's); the rest are readable."""
    parts = {"part1": [1, 2], "part2": [3, 4]}
    truth = {}
    for part, seeds in parts.items():
        records = []
        for seed in seeds:
            for lam in (0, 0.5):
                for g in GENS:
                    oracle = 0.03 * math.exp(rng.normal(0, 0.2))
                    drift = (1 + 0.4 * g) if lam == 0 else (1 + 0.2 * (g > 0))
                    model = oracle * drift * math.exp(rng.normal(0, 0.2)) if g else oracle
                    test = (0.25 if seed == 2 else 0.15) if g == 0 else 0.14
                    train = 10.0 if (seed, lam, g) == (3, 0, 2) else 0.1
                    truth[(seed, lam, g)] = (model, oracle)
                    records += [_record(seed, lam, g, "model", model, test, train),
                                _record(seed, lam, g, "oracle", oracle, test, 0.1)]
        positions = [1.0, 0.5, 0.3, 0.1, 0.05, 0.04, 0.03, 0.025]
        summary = {"generations": records, "members": [{"n": 10000}],
                   "ridge_alpha": 0.0625,
                   "baselines": {"zero": {"risk": ZERO, "per_position": [ZERO] * 8},
                                 "ridge": {"risk": RIDGE, "per_position": positions},
                                 "least_squares": {"risk": 0.3, "per_position": positions}},
                   "settings": {"eval_prompts": 2000,
                                "task": {"d": 3, "k": 8, "noise_std": 0.25},
                                "train": {"steps": 6000, "batch_size": 64}}}
        (results / "runs" / part).mkdir(parents=True)
        (results / "runs" / part / "summary.json").write_text(json.dumps(summary))
    return truth


def test_the_second_setting_reads_its_noise_from_the_readable_loops(tmp_path):
    truth = fake_pilot(tmp_path, np.random.default_rng(0))
    pilot = analysis.analyse(tmp_path, "d3")
    gate = {(g["seed"], g["lambda"]): g for g in pilot["gate"]}
    assert len(gate) == 8 and pilot["gate_passed"] == {"loops": 8, "reached": 6, "readable": 5}
    assert not gate[(2, 0.0)]["reached"] and gate[(2, 0.0)]["gap_closed"]["model"] == \
        pytest.approx((ZERO - 0.25) / (ZERO - RIDGE))
    assert gate[(3, 0.0)]["reached"] and gate[(3, 0.0)]["failures"][0]["generation"] == 2
    rows = pilot["lambdas"]
    assert rows["0"]["seeds_read"] == [1, 4] and rows["0.5"]["seeds_read"] == [1, 3, 4]
    for lam, row in rows.items():
        read = row["seeds_read"]
        contrast = [[math.log(truth[(s, float(lam), g)][0] / truth[(s, float(lam), g)][1])
                     for g in GENS if g] for s in read]
        assert np.allclose(row["contrast"], contrast)
        assert row["sigma"] > 0 and len(row["gap_closed"]["model"]) == 4  # every seed shown
        assert row["all_seeds"]["sigma"] != row["sigma"]
    assert pilot["setting"]["name"] == "d3" and pilot["setting"]["ridge_alpha"] == 0.0625
    assert min(pilot["risk_per_position"]["bayes"]) > 0


def test_the_second_setting_is_sized_with_its_own_floor(tmp_path):
    fake_pilot(tmp_path, np.random.default_rng(1))
    pilot = analysis.analyse(tmp_path, "d3")
    sizing, cfg = size_v2.size(pilot)
    assert size_v2.MIN_SEEDS == {"d2": 10, "d3": 6}
    assert sizing["setting"] == "d3" and sizing["seeds_floor"] == 6
    need = sizing["seeds_for_power"]
    for rule in ("p1", "p2"):
        counted = sizing[f"seeds_{rule}"]
        assert counted is None if need[rule] is None else counted == max(6, need[rule])
    assert sizing["readable_share"] == 5 / 8
    listed = sizing["seeds_to_list"]["p1"]
    if listed is not None:  # at least the count readable in 95% of draws, not in fewer seeds
        tail = lambda n: sum(math.comb(n, r) * (5 / 8) ** r * (3 / 8) ** (n - r)  # noqa: E731
                             for r in range(sizing["seeds_p1"], n + 1))
        assert tail(listed) >= 0.95 > tail(listed - 1)
    assert size_v2.seeds_to_list(6, 1.0) == 6 and size_v2.seeds_to_list(6, 0.5) > 12
    assert isinstance(sizing["truths_separated"], bool)
    if sizing["planned_mde"] is not None:
        assert sizing["planned_mde"]["P1"]["seeds"] == sizing["seeds_p1"]
        assert sizing["planned_mde"]["P1"]["margin"] == sizing["delta_1"] == cfg.v2_delta1


def test_a_pilot_with_too_few_readable_seeds_cannot_size_the_rules(tmp_path):
    fake_pilot(tmp_path, np.random.default_rng(2))
    pilot = analysis.analyse(tmp_path, "d3")
    del pilot["lambdas"]["0"]["sigma"]
    with pytest.raises(SystemExit, match="lambda 0: fewer than 2 readable"):
        size_v2.size(pilot)
