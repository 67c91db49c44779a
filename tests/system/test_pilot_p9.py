"""scripts/pilot_p9.py: the run step's commands, estimate and refusals, and `analyse` over planted
arms whose numbers are known (the records, the log contrasts, the noise, the twin's trend, the
contrasts between arms, the reference learner's curves, the power by control)."""

from __future__ import annotations

import importlib
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "scripts"))
sys.path.insert(0, str(REPO / "tests" / "report"))
pilot_p9 = importlib.import_module("pilot_p9")

from test_rules_v2 import record  # noqa: E402

from icl_stl.persistence import atomic_write_json  # noqa: E402
from icl_stl.report.agreement import json_differences  # noqa: E402
from icl_stl.theory.accumulation import (  # noqa: E402
    accumulation_drift,
    oracle_twin_drift,
    reference_contrast,
)

SEEDS = (1, 2, 3, 4)
# log(E_model / E_oracle) by arm: seeds differ by an offset and a wobble; replace collapses
CONTRAST = {"accumulate_s0": lambda s, g: 0.02 * s + 0.03 * math.sin(1.3 * s + 2.1 * g),
            "replace": lambda s, g: 0.2 * g + 0.03 * math.cos(0.7 * s + 1.9 * g)}
TWIN_SLOPE = {"accumulate_s0": -0.1, "replace": 0.0}


def twin(arm: str, s: int, g: int) -> float:
    return 0.03 * math.exp(TWIN_SLOPE[arm] * g + 0.05 * math.sin(s + 0.5 * g))


def plant(results: Path, generations: int, missed_seed: int | None = None) -> dict:
    """Each arm's summary.json under results/runs/<arm>/; generation 0 shared by both arms and
    both labellers. `missed_seed`'s generation 0 closes only 80% of the gap (not readable)."""
    truth = {}
    for arm, contrast in CONTRAST.items():
        records = []
        for s in SEEDS:
            for g in range(generations + 1):
                oracle = twin(arm, s, g) if g else twin("replace", s, 0)
                model = oracle * math.exp(contrast(s, g)) if g else oracle
                truth[arm, s, g] = (model, oracle)
                gate = {"test_risk": 0.1 + 0.2 * 0.9} if (s, g) == (missed_seed, 0) else {}
                records += [record(s, 0.0, g, lab, e, synthetic=arm, **gate)
                            for lab, e in (("model", model), ("oracle", oracle))]
        atomic_write_json(results / "runs" / arm / "summary.json", {
            "members": [], "generations": records, "ridge_alpha": 0.0,
            "baselines": {"ridge": {"risk": 0.1}, "zero": {"risk": 1.0}},
            "code": {"git_commit": "abc1234", "git_dirty": False},
            "settings": {"task": {"d": 2, "k": 6}, "train": {"steps": 100, "batch_size": 64},
                         "loop": {"synthetic": arm, "init": "from_scratch",
                                  "real_fraction": 0.0}, "eval_prompts": 100, "seed": 9}})
    return truth


def two_way(x: np.ndarray) -> tuple[float, float]:
    """sigma and tau by least squares on generation and seed dummies (not the code's formula)."""
    s, g = x.shape
    design = np.zeros((s * g, s + g - 1))
    for i in range(s):
        for j in range(g):
            design[i * g + j, j] = 1.0
            if i:
                design[i * g + j, g + i - 1] = 1.0
    fit, resid, *_ = np.linalg.lstsq(design, x.ravel(), rcond=None)
    sigma2 = float(resid[0]) / ((s - 1) * (g - 1))
    return math.sqrt(sigma2), math.sqrt(max(x.mean(1).var(ddof=1) - sigma2 / g, 0.0))


def analyse(tmp: Path, *extra: str) -> tuple[int, dict, dict]:
    code = pilot_p9.main(["analyse", "--work", str(tmp / "none"), "--results", str(tmp),
                          "--draws", "400", *extra])
    read = lambda name: json.loads((tmp / name).read_text())  # noqa: E731
    return code, read("pilot.json"), read("sizing.json")


def test_analyse_follows_the_records(tmp_path):
    truth = plant(tmp_path, 8, missed_seed=4)
    code, pilot, sizing = analyse(tmp_path)
    assert code == 0
    s0, rep = pilot["arms"]["accumulate_s0"], pilot["arms"]["replace"]
    assert s0["seeds_read"] == [1, 2, 3] and s0["generations"] == list(range(9))
    assert [lp["readable"] for lp in s0["loops"]] == [True, True, True, False]
    for arm, part in pilot["arms"].items():
        for s in SEEDS:  # every loop shown, the unreadable one too
            model, oracle = zip(*(truth[arm, s, g] for g in range(9)))
            assert part["bayes_excess"]["model"][str(s)] == pytest.approx(model, rel=1e-12)
            assert part["bayes_excess"]["oracle"][str(s)] == pytest.approx(oracle, rel=1e-12)
            assert part["log_contrast"][str(s)] == pytest.approx(
                [CONTRAST[arm](s, g) if g else 0.0 for g in range(9)], abs=1e-12)
        # the noise of the readable seeds' contrast over generations 1..8
        x = np.array([[CONTRAST[arm](s, g) for g in range(1, 9)] for s in (1, 2, 3)])
        sigma, tau = two_way(x)
        assert part["noise"]["log_contrast"]["sigma"] == pytest.approx(sigma, rel=1e-9)
        assert part["noise"]["log_contrast"]["tau"] == pytest.approx(tau, rel=1e-9, abs=1e-12)
        assert part["noise"]["log_contrast"]["sigma_dof"] == 14
        # the reference learner beside
        assert part["reference_learner"]["log_contrast"] == pytest.approx(
            reference_contrast(8, arm).tolist())
        assert part["reference_learner"]["twin_drift"] == pytest.approx(
            oracle_twin_drift(8, arm).tolist())
    # the twin's own trend over P9's window (from i_0 = 6, at least 3 generations: 6-8)
    trend = s0["oracle_twin_trend"]
    assert trend["generations"] == [6, 7, 8] and trend["over"] == "P9's window"
    per_seed = [np.polyfit([6, 7, 8], [math.log(truth["accumulate_s0", s, g][1])
                                       for g in (6, 7, 8)], 1)[0] for s in (1, 2, 3)]
    assert trend["per_seed"] == pytest.approx(per_seed, rel=1e-9)
    assert trend["keeps_improving"] is True and trend["interval"][1] < 0
    assert trend["reference_learner"] == pytest.approx(  # its twin falls as 1 / (i + 1)
        np.polyfit([6, 7, 8], -np.log([7.0, 8.0, 9.0]), 1)[0])
    assert rep["oracle_twin_trend"]["keeps_improving"] is False
    assert pilot["control"]["twin_trend"] == trend
    # arms against each other, seed-paired
    pair = pilot["between_arms"]["accumulate_s0 vs replace"]
    assert pair["seeds"] == [1, 2, 3] and "volume_matched vs accumulate_s0" not in \
        pilot["between_arms"]
    assert pair["log_ratio_model"][1] == pytest.approx(
        [math.log(truth["accumulate_s0", 2, g][0] / truth["replace", 2, g][0])
         for g in range(9)], rel=1e-9, abs=1e-12)
    assert pair["reference_learner"]["log_ratio_model"] == pytest.approx(
        np.log(accumulation_drift(8, "accumulate_s0") / np.arange(1, 10)).tolist())
    # the loop against the replace arm's oracle twin (real volume n): model over oracle
    against = np.array([[math.log(truth["accumulate_s0", s, g][0] / truth["replace", s, g][1])
                         for g in range(9)] for s in (1, 2, 3)])
    np.testing.assert_allclose(pair["log_ratio_against_twin"], against, rtol=1e-9, atol=1e-12)
    sigma, tau = two_way(against[:, 1:])
    assert pair["noise_log_ratio_against_twin"]["sigma"] == pytest.approx(sigma, rel=1e-9)
    assert pair["reference_learner"]["log_ratio_against_twin"] == pytest.approx(
        np.log(accumulation_drift(8, "accumulate_s0")).tolist())
    # sizing: every control the proposal considers, at its own noise
    assert set(sizing["controls"]) == {"oracle_twin", "replace_arm", "own_window",
                                       "replace_twin"}
    assert sizing["controls"]["replace_twin"]["noise"] == pair["noise_log_ratio_against_twin"]
    assert sizing["seed_counts"] == [5, 10, 15, 20, 25, 30] and sizing["horizon"] == 12
    # the replace-twin control is also sized at the rule's margins (false-confirm rates)
    margins = sizing["controls"]["replace_twin"]["truths"]
    assert margins["slope_plus_delta_2"]["values"][6:9] == pytest.approx([0.0, 0.06, 0.12])
    assert margins["flat_at_delta_1"]["values"] == pytest.approx([0.48] * 13)
    # and at sigma's one-sided 90% upper bound (chi-square, (S - 1)(G - 1) = 14 dof)
    from scipy import stats
    measured = sizing["controls"]["replace_twin"]["noise"]
    assert sizing["sensitivity"]["sigma_upper_90"] == pytest.approx(
        measured["sigma"] * math.sqrt(14 / stats.chi2.ppf(0.10, 14)), rel=1e-9)
    assert set(sizing["sensitivity"]["rates_by_seeds"]) == {"5", "10", "15", "20", "25", "30"}
    twin_row = sizing["controls"]["oracle_twin"]
    assert twin_row["noise"] == s0["noise"]["log_contrast"]
    assert "did not reach" in twin_row["truths"]["pilot_mean"]["not_sized"]  # G = 8 < 12
    for control in sizing["controls"].values():
        for row in control["truths"].values():
            for rates in row.get("rates_by_seeds", {}).values():
                assert sum(rates.values()) == pytest.approx(1.0)
    # at this small noise the rule refutes the reference learner's twin contrast (it keeps
    # rising) and confirms its bounded drift
    twin_rates = twin_row["truths"]
    assert twin_rates["reference_learner"]["rates_by_seeds"]["20"]["refuted"] > 0.9
    assert twin_rates["bounded"]["rates_by_seeds"]["20"]["confirmed"] > 0.9
    text = (tmp_path / "README.md").read_text()
    assert "| accumulate_s0 | abc1234 |" in text
    assert (tmp_path / "figures" / "arms.png").stat().st_size > 10_000
    assert "![each arm beside its oracle twin](figures/arms.png)" in text


def test_a_pilot_with_no_readable_loop_draws_no_figure(tmp_path):
    plant(tmp_path, 3)
    (tmp_path / "figures").mkdir()
    (tmp_path / "figures" / "arms.png").write_bytes(b"an earlier figure")
    for path in (tmp_path / "runs").glob("*/summary.json"):
        summary = json.loads(path.read_text())
        for r in summary["generations"]:
            if r["generation"] == 0:
                r["test_risk"] = 0.1 + 0.2 * 0.9  # every loop misses the gate
        path.write_text(json.dumps(summary))
    code, pilot, _ = analyse(tmp_path)
    assert code == 0 and all(not p["seeds_read"] for p in pilot["arms"].values())
    assert not (tmp_path / "figures" / "arms.png").exists()
    assert "arms.png" not in (tmp_path / "README.md").read_text()


def test_a_pilot_at_the_rules_horizon_is_sized_at_its_own_curve(tmp_path):
    plant(tmp_path, 12)
    _, pilot, sizing = analyse(tmp_path)
    assert pilot["arms"]["accumulate_s0"]["oracle_twin_trend"]["generations"] == \
        list(range(6, 13))  # P9's window
    row = sizing["controls"]["oracle_twin"]["truths"]["pilot_mean"]
    assert row["values"] == pytest.approx(pilot["arms"]["accumulate_s0"]["log_contrast_mean"])
    # the planted contrast is flat and low: confirmed bounded at 20 seeds
    assert row["rates_by_seeds"]["20"]["confirmed"] > 0.9


@pytest.mark.parametrize("damage, says", [
    (lambda tmp: None, "no arm's summary.json"),
    (lambda tmp: (tmp / "runs" / "replace").mkdir(parents=True)
     or (tmp / "runs" / "replace" / "summary.json").write_text("{"), "not a loop's summary"),
    (lambda tmp: plant(tmp, 2) and (tmp / "runs" / "replace").rename(tmp / "runs" / "other"),
     "not the folder's"),
])
def test_bad_input_to_analyse_is_one_line_and_exit_2(tmp_path, capsys, damage, says):
    (tmp_path / "runs").mkdir()
    damage(tmp_path)
    assert pilot_p9.main(["analyse", "--work", str(tmp_path / "none"), "--results",
                          str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert says in err and "\n" not in err and not (tmp_path / "pilot.json").exists()


def test_the_run_step_prints_its_commands_and_its_estimate(tmp_path, capsys):
    from conftest import compose_cfg

    from icl_stl.cli.common import load_app_config

    assert pilot_p9.main(["run", "--work", str(tmp_path), "--dry-run"]) == 0
    out = capsys.readouterr().out
    app = load_app_config(compose_cfg("loop", "experiment=p9/cpu_pilot"), needs_loop=True)
    steps = len(app.members.seeds) * app.train.steps * (1 + 2 * app.loop.generations)
    commands = [line for line in out.splitlines() if "icl-stl-loop" in line]
    assert [c.split(": ")[0] for c in commands] == [f"[pilot_p9] {a}" for a in pilot_p9.ORDER]
    for arm in pilot_p9.ORDER:
        assert f"[pilot_p9] {arm}: {steps:,} member steps to train" in out
        cmd = pilot_p9.command(arm, pilot_p9.parse_args(["run", "--work", str(tmp_path)]))
        for part in (f"loop.synthetic={arm}", "runtime.compile=true", "runtime.fused_adam=true",
                     "runtime.threads=1", f"hydra.run.dir={tmp_path / arm}",
                     f"run.checkpoint_root={tmp_path / 'checkpoints'}"):
            assert part in cmd
    assert pilot_p9.main(["run", "--work", str(tmp_path), "--dry-run", "--generations", "12",
                          "--arms", "accumulate_s0"]) == 0
    longer = len(app.members.seeds) * app.train.steps * (1 + 2 * 12)
    assert f"{longer:,} member steps" in capsys.readouterr().out


@pytest.mark.parametrize("argv, says", [
    (["--arms", "accumulate_s0,bogus"], "--arms"),
    (["--arms", "replace,replace"], "--arms"),
    (["--generations", "0"], "--generations"),
    (["loop.generations=12"], "loop.generations"),
    (["train.stepz=3"], "train.stepz"),
    (["loop.real_fraction=0.5"], "loop.real_fraction"),
])
def test_bad_input_to_run_is_one_line_and_exit_2(tmp_path, capsys, argv, says):
    assert pilot_p9.main(["run", "--work", str(tmp_path), "--dry-run", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert says in err and "\n" not in err


def test_generations_below_a_finished_arm_are_refused(tmp_path, capsys):
    plant(tmp_path, 8)  # the planted summaries stand for finished runs in the work folder
    work = tmp_path / "runs"
    assert pilot_p9.main(["run", "--work", str(work), "--dry-run", "--generations", "6",
                          "--arms", "replace"]) == 2
    assert "below the 8 generations" in capsys.readouterr().err
    assert pilot_p9.main(["run", "--work", str(work), "--dry-run", "--generations", "8",
                          "--arms", "replace,accumulate_s0"]) == 0
    assert capsys.readouterr().out.count("not started again") == 2
    # extended to 12: only generations 9-12 of every loop and its twin are left to train
    assert pilot_p9.main(["run", "--work", str(work), "--dry-run", "--generations", "12",
                          "--arms", "replace"]) == 0
    app = pilot_p9.compose("replace", pilot_p9.parse_args(["run", "--work", str(work)]))
    left = len(app.members.seeds) * 2 * (12 - 8) * app.train.steps
    assert f"[pilot_p9] replace: {left:,} member steps to train" in capsys.readouterr().out


TOY = ["train.steps=10", "train.warmup_steps=2", "train.log_every=5", "train.checkpoint_every=5",
       "data.n=16", "eval.n_prompts=64", "eval.batch_size=64", "loop.label_batch_size=16",
       "members.seeds=[1]", "runtime.compile=false", "runtime.fused_adam=false"]


def test_the_real_loop_runs_extends_refuses_and_is_analysed(tmp_path, capsys):
    """Two arms at toy size through icl-stl-loop itself: one generation, then extended to two
    (generations 0-1 loaded, not retrained), a changed setting refused by the loop, and the
    analysis reading the records as the loop wrote them."""
    work, results = tmp_path / "work", tmp_path / "results"
    run = lambda *a: pilot_p9.main(["run", "--work", str(work), "--arms",  # noqa: E731
                                    "accumulate_s0,replace", *a])
    assert run("--generations", "1", *TOY) == 0
    first = json.loads((work / "replace" / "summary.json").read_text())["generations"]
    assert run("--generations", "2", *TOY) == 0
    log = (work / "accumulate_s0" / "loop.log").read_text()
    assert "generation 1 already finished" in log
    later = json.loads((work / "replace" / "summary.json").read_text())["generations"]
    assert {r["generation"] for r in later} == {0, 1, 2}
    assert [r for r in later if r["generation"] < 2] == first  # loaded, not retrained
    assert run("--generations", "3", *TOY[1:], "train.steps=12") == 2  # refused by the loop
    assert "train.steps: 10 in the checkpoint, 12 now" in (work / "replace.log").read_text()
    calls = json.loads((work / "invocations.json").read_text())
    assert sorted((c["arm"], c["generations"], c["returncode"]) for c in calls[-2:]) == [
        ("accumulate_s0", 3, 2), ("replace", 3, 2)]
    capsys.readouterr()
    assert pilot_p9.main(["analyse", "--work", str(work), "--results", str(results),
                          "--draws", "100"]) == 0
    pilot = json.loads((results / "pilot.json").read_text())
    for arm in ("accumulate_s0", "replace"):
        records = json.loads((results / "runs" / arm / "summary.json").read_text())["generations"]
        assert records == json.loads((work / arm / "summary.json").read_text())["generations"]
        for lab in ("model", "oracle"):
            mine = sorted((r["generation"], r["bayes_excess"]) for r in records
                          if r["labeller"] == lab)
            assert pilot["arms"][arm]["bayes_excess"][lab]["1"] == [e for _, e in mine]
    twin = pilot["arms"]["accumulate_s0"]["oracle_twin_trend"]
    assert twin["generations"] == [1, 2] and "shorter than P9's window" in twin["over"]
    assert pilot["arms"]["accumulate_s0"]["train_size"] == [16, 32, 48]
    assert pilot["arms"]["replace"]["train_size"] == [16, 16, 16]
    readme = (results / "README.md").read_text()
    assert "scripts/pilot_p9.py run --work" in readme and "| replace |" in readme


def test_the_committed_pilot_regenerates_from_its_records():
    """docs/results/pilot-p9/pilot.json is what the analysis reads from the runs committed
    beside it, and the control the rule reads is there."""
    analysis = importlib.import_module("pilot_p9_analysis")
    results = Path(__file__).resolve().parents[2] / "docs/results/pilot-p9"
    committed = json.loads((results / "pilot.json").read_text())
    regenerated = json.loads(json.dumps(analysis.public(analysis.analyse(results)),
                                        default=float))
    assert json_differences(committed, regenerated) == []
    assert set(regenerated) == set(committed)
    assert "noise_log_ratio_against_twin" in committed["between_arms"]["accumulate_s0 vs replace"]
    assert (results / "figures" / "arms.png").exists()
