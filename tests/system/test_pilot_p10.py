"""scripts/pilot_p10.py: the P10 pilot's runs (one icl-stl-loop run per grid point, resumable)
and its analysis, whose pilot.json follows the records it reads (planted records built by the
report's test helpers, and a toy pilot through the real loop CLI)."""

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
pilot_p10 = importlib.import_module("pilot_p10")
analysis = importlib.import_module("pilot_p10_analysis")

from test_p10_real_weight import FRESH, GRID, REUSED, weighted, write_runs  # noqa: E402

from icl_stl.report.agreement import json_differences  # noqa: E402
from icl_stl.report.simulate_p5 import flat  # noqa: E402
from icl_stl.theory.real_weight import weighted_drift  # noqa: E402

SEEDS = range(4)
LAST = 3  # weighted()'s generations


def planted(tmp_path: Path, fresh=FRESH, seeds=SEEDS) -> tuple[Path, Path, dict]:
    runs = weighted(fresh, REUSED, seeds=seeds)
    write_runs(tmp_path, runs)  # tmp_path/runs/<source>-<w>/summary.json
    return tmp_path / "runs", tmp_path / "results", runs


def analyse(work: Path, results: Path) -> tuple[dict, dict]:
    assert pilot_p10.main(["analyse", "--work", str(work), "--results", str(results),
                           "--draws", "200"]) == 0
    sizing = results / "sizing.json"
    return (json.loads((results / "pilot.json").read_text()),
            json.loads(sizing.read_text()) if sizing.exists() else {})


def last_excess(runs: dict, source: str, arm: str) -> np.ndarray:
    """(seeds, grid) log bayes_excess at the last generation, straight from the records."""
    return np.array([[math.log(next(r["bayes_excess"] for r in runs[w, source]
                                    if r["seed"] == s and r["labeller"] == arm
                                    and r["generation"] == LAST)) for w in GRID]
                     for s in SEEDS])


def test_the_commands_are_the_presets_grid_one_run_each(tmp_path):
    weights, sources = pilot_p10.preset_grid([])
    assert weights == [0.25, 0.5, 0.618, 0.75, 1.0] and sources == ["fresh", "reuse"]
    cmds = pilot_p10.commands(tmp_path, weights, sources, ["runtime.threads=2", "x.y=1"])
    assert len(cmds) == 10 and "fresh_w0.618" in cmds and "reuse_w1" in cmds
    cmd = cmds["reuse_w0.25"]
    for item in ("experiment=p10/pilot_d2", "hydra.sweeper.params=null",
                 "loop.real_weight=0.25", "loop.real_source=reuse", "runtime.compile=true",
                 "runtime.fused_adam=true", "run.name=pilot_p10_reuse_w0.25",
                 f"run.checkpoint_root={tmp_path.resolve() / 'checkpoints'}",
                 f"hydra.run.dir={tmp_path.resolve() / 'reuse_w0.25'}", "x.y=1"):
        assert item in cmd
    assert "runtime.threads=2" in cmd and "runtime.threads=1" not in cmd  # later keys win


def test_pilot_json_follows_the_records(tmp_path):
    work, results, runs = planted(tmp_path)
    pilot, sizing = analyse(work, results)
    assert sorted(p.name for p in (results / "runs").iterdir()) == sorted(
        f"{s}-{w:g}" for w, s in runs)
    assert pilot["gate_passed"] == {"loops": 40, "reached": 40, "readable": 40}
    assert pilot["seeds_read"] == list(SEEDS) and pilot["generation_read"] == LAST
    for source in ("fresh", "reuse"):
        for arm in ("model", "oracle"):
            y = last_excess(runs, source, arm)
            row = pilot["sources"][source][arm]
            assert np.allclose(row["log_excess"], y)
            assert np.allclose(row["curvature_per_seed"], [np.polyfit(GRID, ys, 2)[0]
                                                          for ys in y])
            assert np.allclose(row["high_end_per_seed"], y[:, -1] - y[:, 1:-1].mean(1))
    assert pilot["testable"] is True and pilot["sources"]["fresh"]["model"]["dip_seen"]
    assert pilot["sources"]["reuse"]["model"]["high_end"] < 0  # falls to w = 1
    assert pilot["direction"]["estimate"] > 0
    ref = pilot["reference"]
    assert ref["fresh"]["error_in_units_of_d_wvar_over_n"][2] == pytest.approx(
        weighted_drift(LAST, 1, 1, 0.5, 0.618, 1.0, "fresh")[-1])
    assert ref["reuse"]["optimal_weight"] == 1.0
    assert ref["fresh"]["optimal_weight"] == pytest.approx(0.618, abs=0.02)
    assert pilot["kappa"]["fresh"]["model"] == pytest.approx(1.0, abs=0.1)  # planted at 1
    assert 0 < pilot["noise"]["model"]["sigma"] < 0.1 and pilot["noise"]["model"]["dof"] == 24
    assert sizing["sigma"] == pilot["noise"]["model"]["sigma"]
    assert sizing["seed_counts"] == [5, 10, 20, 40]
    assert sizing["interior_optimum_confirmed"]["reference_fresh_kappa_1"]["40"] > 0.9
    assert sizing["interior_optimum_confirmed"]["flat"]["40"] < 0.1
    readme = (results / "README.md").read_text()
    assert "| fresh-0.618 |" in readme and "| reuse-1 |" in readme


def test_a_changed_record_changes_the_curvature_by_its_share(tmp_path):
    work, results, runs = planted(tmp_path)
    before, _ = analyse(work, results)
    path = work / "fresh-0.618" / "summary.json"
    summary = json.loads(path.read_text())
    for r in summary["generations"]:
        if (r["seed"], r["labeller"], r["generation"]) == (0, "model", LAST):
            r["bayes_excess"] *= 2.0
    path.write_text(json.dumps(summary))
    after, _ = analyse(work, results)
    design = np.stack([np.ones_like(GRID), GRID, GRID ** 2], axis=1)
    share = np.linalg.pinv(design)[2, 2]  # the weight of point 0.618 in the curvature
    b, a = (np.array(p["sources"]["fresh"]["model"]["curvature_per_seed"]) for p in (before,
                                                                                      after))
    assert a[0] - b[0] == pytest.approx(share * math.log(2.0))
    assert np.allclose(a[1:], b[1:])
    assert after["sources"]["fresh"]["oracle"] == before["sources"]["fresh"]["oracle"]


def test_a_flat_fresh_curve_is_not_testable(tmp_path):
    work, results, _ = planted(tmp_path, fresh=flat())
    pilot, _ = analyse(work, results)
    assert pilot["testable"] is False and not pilot["sources"]["fresh"]["model"]["dip_seen"]


def test_a_loop_that_misses_the_gate_leaves_its_seed_out(tmp_path):
    work, results, _ = planted(tmp_path)
    path = work / "reuse-0.5" / "summary.json"
    summary = json.loads(path.read_text())
    for r in summary["generations"]:
        if (r["seed"], r["generation"]) == (2, 0):
            r["test_risk"] = 0.5  # closes (1 - 0.5) / (1 - 0.1) = 56% of the gap
    path.write_text(json.dumps(summary))
    pilot, _ = analyse(work, results)
    gate = [g for g in pilot["gate"] if not g["reached"]]
    assert [(g["source"], g["weight"], g["seed"]) for g in gate] == [("reuse", 0.5, 2)]
    assert gate[0]["gap_closed"]["model"] == pytest.approx(0.5 / 0.9)
    assert pilot["seeds_read"] == [0, 1, 3] and pilot["left_out"]["seeds_left_out"] == [2]
    assert "2" in pilot["excess_at_last_generation"]["fresh"]["model"]  # still shown


def test_the_noise_is_the_additive_models_residual():
    level = np.array([[0.0], [0.4], [-0.2]])
    y = np.array([0.3, 0.0, -0.1, 0.0, 0.5]) + level
    exact = analysis.noise([y, y + 1.0])
    assert exact["sigma"] == pytest.approx(0.0, abs=1e-12) and exact["dof"] == 16
    assert exact["tau"] == pytest.approx(level.std(ddof=1))
    y[1, 2] += 0.3
    assert analysis.noise([y])["sigma"] > 0.05


@pytest.mark.parametrize("make", [False, True])
def test_a_missing_or_empty_work_dir_is_one_line_and_exit_2(tmp_path, capsys, make):
    work = tmp_path / "work"
    if make:
        work.mkdir()
    assert pilot_p10.main(["analyse", "--work", str(work), "--results",
                           str(tmp_path / "res")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(work) in err


def test_runs_without_a_real_weight_are_one_line_and_exit_2(tmp_path, capsys):
    work, results, runs = planted(tmp_path, seeds=range(2))
    for path in work.glob("*/summary.json"):
        summary = json.loads(path.read_text())
        for r in summary["generations"]:
            del r["real_weight"]
        path.write_text(json.dumps(summary))
    assert pilot_p10.main(["analyse", "--work", str(work), "--results", str(results)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no loop with a real weight" in err


TOY = ["members.seeds=[9601]", "train.steps=20", "train.warmup_steps=5", "loop.steps=20",
       "loop.generations=1", "data.n=100", "eval.n_prompts=100", "eval.batch_size=100",
       "loop.label_batch_size=100", "train.log_every=10", "train.checkpoint_every=10",
       "runtime.compile=false", "runtime.fused_adam=false"]


def test_a_toy_pilot_through_the_loop_cli_runs_resumes_and_analyses(tmp_path, capsys):
    work, results = tmp_path / "work", tmp_path / "results"
    args = ["run", "--work", str(work), "--weights", "0.5,1", "--sources", "fresh", *TOY]
    assert pilot_p10.main(args) == 0
    for name in ("fresh_w0.5", "fresh_w1"):
        assert (work / name / "summary.json").exists() and (work / name / "done.json").exists()
        assert (work / "logs" / f"{name}.log").exists()
    capsys.readouterr()
    assert pilot_p10.main(args) == 0  # finished: skipped, nothing retrained
    assert capsys.readouterr().out.count("finished earlier, skipped") == 2
    pilot, sizing = analyse(work, results)
    assert pilot["gate_passed"]["loops"] == 2 and pilot["testable"] is None
    assert "no grid of >= 4 weights" in pilot["not_read"] and sizing == {}
    table = pilot["excess_at_last_generation"]["fresh"]["model"]["9601"]
    recorded = json.loads((work / "fresh_w1" / "summary.json").read_text())["generations"]
    assert table["1"] == next(r["bayes_excess"] for r in recorded
                              if r["generation"] == 1 and r["labeller"] == "model")
    readme = (results / "README.md").read_text()
    done = json.loads((work / "fresh_w0.5" / "done.json").read_text())
    assert f"| fresh_w0.5 | {done['wall_s']:.0f} |" in readme and done["machine"]["cpu"] in readme


def test_the_committed_pilot_regenerates_from_its_records():
    """docs/results/pilot-p10/pilot.json is what the analysis reads from the runs committed
    beside it, and the figure the README shows is there."""
    results = REPO / "docs/results/pilot-p10"
    committed = json.loads((results / "pilot.json").read_text())
    regenerated = json.loads(json.dumps(analysis.analyse(results)))
    assert json_differences(committed, regenerated) == [] and set(regenerated) == set(committed)
    assert committed["testable"] is False  # the stated outcome THEORY.md 8.8 rests on
    assert (results / "figures" / "real_weight.png").exists()
