"""scripts/pilot_p6.py: `run` screens every listed seed's generation 0, continues the first gated
seeds in all three arms (one process per arm and seed, one thread each, the compiled engine),
skips finished runs when started again; `analyse` reads the records with the report's own
functions, and its numbers follow them."""

from __future__ import annotations

import importlib
import json
import shutil
import stat
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "scripts"))
pilot_p6 = importlib.import_module("pilot_p6")

# A stand-in for icl-stl-loop: writes (or extends) the run's summary.json with one record per
# labeller and generation, generation 0 closing 95% of the gap for odd seeds and 80% for even
# ones, and logs its arguments.
STUB = """#!{python}
import json, sys
from pathlib import Path
args = dict(a.split("=", 1) for a in sys.argv[1:])
seed = int(args["members.seeds"].strip("[]"))
run_dir = Path(args["hydra.run.dir"])
run_dir.mkdir(parents=True, exist_ok=True)
with open(run_dir.parents[1] / "calls.jsonl", "a") as log:
    log.write(json.dumps(sys.argv[1:]) + "\\n")
closed = 0.95 if seed % 2 else 0.80
records = [{{"seed": seed, "real_fraction": 0, "n": 100, "augment": 0, "generation": g,
            "member": m, "labeller": lab, "regime": "from_scratch", "test_risk":
            1.0 - closed * 0.9, "ridge_risk": 0.1, "zero_risk": 1.0, "bayes_excess": 0.05,
            "train_risk": 0.5}}
           for g in range(int(args["loop.generations"]) + 1)
           for m, lab in enumerate(("model", "oracle"))]
(run_dir / "summary.json").write_text(json.dumps(
    {{"members": [{{"seed": seed}}, {{"seed": seed, "labeller": "oracle"}}],
     "generations": records}}))
"""


def _stub(tmp_path: Path, monkeypatch) -> Path:
    stub = tmp_path / "loop_stub"
    stub.write_text(STUB.format(python=sys.executable))
    stub.chmod(stub.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setattr(pilot_p6, "LOOP", stub)
    return tmp_path / "work"


def _calls(work: Path) -> list[dict]:
    path = work / "calls.jsonl"
    lines = path.read_text().splitlines() if path.exists() else []
    return [dict(a.split("=", 1) for a in json.loads(line)) for line in lines]


def test_run_screens_then_continues_the_first_gated_seeds_and_resumes(tmp_path, monkeypatch):
    work = _stub(tmp_path, monkeypatch)
    seeds = pilot_p6.preset("p6/pilot")["seeds"]
    assert len(seeds) >= 6 and pilot_p6.run(work, [], workers=2, max_seeds=2) == 0
    calls = _calls(work)
    screens = [c for c in calls if c["loop.generations"] == "0"]
    assert sorted(int(c["members.seeds"].strip("[]")) for c in screens) == seeds
    assert {c["experiment"] for c in screens} == {"p6/pilot"}
    gated = [s for s in seeds if s % 2][:2]
    later = [(c["experiment"], int(c["members.seeds"].strip("[]"))) for c in calls[len(seeds):]]
    assert sorted(later) == sorted((p, s) for s in gated for p in pilot_p6.ARMS.values())
    for c in calls:
        assert (c["runtime.threads"], c["runtime.compile"], c["runtime.fused_adam"]) == \
            ("1", "true", "true")
        assert c["run.checkpoint_root"] == str(work.resolve() / "checkpoints")
    plan = json.loads((work / "plan.json").read_text())
    assert plan["continued"] == gated
    assert [s for s, g in plan["gate"].items() if g["gated"]] == [str(s) for s in seeds if s % 2]
    # started again: every run is finished, nothing is trained
    assert pilot_p6.run(work, [], workers=2, max_seeds=2) == 0
    assert len(_calls(work)) == len(calls)
    # one run lost: only it runs again
    (work / "residual" / str(gated[0]) / "summary.json").unlink()
    assert pilot_p6.run(work, [], workers=2, max_seeds=2) == 0
    again = _calls(work)[len(calls):]
    assert [(c["experiment"], c["members.seeds"]) for c in again] == \
        [("p6/pilot_residual", f"[{gated[0]}]")]


def test_bad_settings_are_one_line_and_exit_2(capsys):
    import pytest

    with pytest.raises(SystemExit) as exc:
        pilot_p6.parse_args(["run", "--workers", "0"])
    assert exc.value.code == 2
    assert "--workers must be at least 1, got 0" in capsys.readouterr().err


# --- analyse, on planted runs laid out as `run` leaves them -------------------------------------

import math  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from icl_stl.report.agreement import json_differences  # noqa: E402

analysis = importlib.import_module("pilot_p6_analysis")
size_v2 = importlib.import_module("size_v2")

ZERO, RIDGE = 1.0, 0.1
GENS = range(4)
DRIFT = {"unfiltered": 0.4, "residual": 0.1, "density_ratio": 0.2}  # the model arm's rise per g
FILTER = {"unfiltered": {}, "residual": {"filter": "residual", "filter_keep": 0.5},
          "density_ratio": {"filter": "density_ratio", "filter_keep": 0.8}}


def _record(seed, g, member, labeller, excess, test_risk, train_risk, extra) -> dict:
    return {"member": member, "seed": seed, "real_fraction": 0, "n": 10000, "augment": 0,
            "tag": "", "generation": g, "labeller": labeller, "regime": "from_scratch",
            "s0": f"s0-{seed}", "bayes_excess": excess, "bayes_excess_se": 0.1 * excess,
            "test_risk": test_risk, "test_risk_per_position": [test_risk] * 8,
            "ridge_risk": RIDGE, "zero_risk": ZERO, "train_risk": train_risk, "steps": 6000,
            **extra}


def fake_work(work: Path, rng: np.random.Generator, missed: tuple[int, ...] = (2,)) -> dict:
    """Seeds 1-5: seed 2 missed the gate at its screen (83% of the gap) and has only its
    unfiltered generation 0; seed 4's residual loop fails to train at generation 2 (training
    risk 10 x its twin's). Each seed's generation 0 is the same in every arm."""
    truth: dict = {}
    oracle0 = {s: 0.03 * math.exp(rng.normal(0, 0.2)) for s in range(1, 6)}
    for arm, drift in DRIFT.items():
        for seed in range(1, 6):
            if seed in missed and arm != "unfiltered":
                continue
            records = []
            for g in ([0] if seed in missed else GENS):
                oracle = oracle0[seed] if g == 0 else 0.03 * math.exp(rng.normal(0, 0.2))
                model = oracle * (1 + drift * g) * math.exp(rng.normal(0, 0.2)) if g else oracle
                test = (0.25 if seed in missed else 0.15) if g == 0 else 0.14
                train = 10.0 if (arm, seed, g) == ("residual", 4, 2) else 0.1
                for member, (labeller, value) in enumerate((("model", model),
                                                            ("oracle", oracle))):
                    spread = {} if g == 0 else (
                        {"syn_w_cov_ratio": rng.uniform(0.9, 1.1), "syn_w_norm": 1.2,
                         "real_w_norm": 1.25} if arm == "unfiltered" else
                        {"filter_kept_fraction": rng.uniform(0.4, 0.6),
                         "filter_w_cov_ratio_after": rng.uniform(0.9, 1.1),
                         "filter_w_norm_ratio_after": rng.uniform(0.9, 1.1),
                         "filter_w_cov_ratio_before": 1.0, "filter_w_norm_ratio_before": 1.0})
                    spread["head_z2"] = rng.uniform(0.8, 3.0)
                    rec = _record(seed, g, member, labeller, value, test,
                                  train if labeller == "model" else 0.1, spread)
                    truth[(arm, labeller, seed, g)] = rec
                    records.append(rec)
            summary = {"generations": records, "members": [{"seed": seed}] * 2,
                       "ridge_alpha": 0.0625, "code": {"git_commit": "abc123" * 7},
                       "baselines": {"zero": {"risk": ZERO, "per_position": [ZERO] * 8},
                                     "ridge": {"risk": RIDGE, "per_position": [RIDGE] * 8}},
                       "settings": {"eval_prompts": 2000, "seed": 0,
                                    "task": {"d": 3, "k": 8, "noise_std": 0.25},
                                    "model": {"arch": "gpt2"},
                                    "train": {"steps": 6000, "batch_size": 64},
                                    "loop": {"learner": "transformer", "synthetic": "replace",
                                             "init": "from_scratch", **FILTER[arm]}}}
            run_dir = work / arm / str(seed)
            run_dir.mkdir(parents=True)
            (run_dir / "summary.json").write_text(json.dumps(summary))
            (run_dir / "timing.json").write_text(json.dumps(
                {"entry": {"seconds": 100.0}, "earlier": [{"entry": {"seconds": 20.0}}]}))
    return truth


def _contrast(truth, arm, seed, g) -> float:
    return math.log(truth[(arm, "model", seed, g)]["bayes_excess"]
                    / truth[(arm, "oracle", seed, g)]["bayes_excess"])


def _two_way(values: np.ndarray) -> tuple[float, float]:
    s, g = values.shape
    resid = values - values.mean(0) - values.mean(1, keepdims=True) + values.mean()
    sigma2 = (resid ** 2).sum() / ((s - 1) * (g - 1))
    return math.sqrt(sigma2), math.sqrt(max(values.mean(1).var(ddof=1) - sigma2 / g, 0.0))


def test_analyse_follows_the_records(tmp_path):
    truth = fake_work(tmp_path / "work", np.random.default_rng(0))
    results = tmp_path / "results"
    assert pilot_p6.main(["analyse", "--work", str(tmp_path / "work"), "--results",
                          str(results), "--draws", "400"]) == 0
    pilot = json.loads((results / "pilot.json").read_text())
    assert sorted(p.parent.name for p in (results / "runs").glob("*/*/summary.json")) == \
        sorted(["1", "2", "3", "4", "5"] + ["1", "3", "4", "5"] * 2)
    gate = {(g["arm"], g["seed"]): g for g in pilot["gate"]}
    assert not gate[("unfiltered", 2)]["reached"] and ("residual", 2) not in gate
    assert gate[("unfiltered", 2)]["gap_closed"]["model"] == pytest.approx(0.75 / 0.9)
    assert gate[("residual", 4)]["failures"][0]["generation"] == 2
    assert pilot["gate_passed"]["unfiltered"] == {"loops": 5, "reached": 4, "readable": 4}
    assert all(v == 0.0 for v in pilot["generation_0_agreement"].values())
    for (arm, labeller, seed, g), rec in truth.items():  # every curve is the records'
        row = pilot["curves"][arm][labeller][str(seed)]
        assert row["bayes_excess"][g] == rec["bayes_excess"] and row["head_z2"][g] == \
            rec["head_z2"]
        if g and arm != "unfiltered":
            assert row["kept_fraction"][g] == rec["filter_kept_fraction"]
            assert row["kept_cov_ratio"][g] == rec["filter_w_cov_ratio_after"]
            assert row["kept_norm_ratio"][g] == rec["filter_w_norm_ratio_after"]
        elif g:
            assert row["kept_cov_ratio"][g] == rec["syn_w_cov_ratio"]
            assert row["kept_norm_ratio"][g] == pytest.approx(1.2 / 1.25)
    sigmas = []
    for arm, read in (("residual", [1, 3, 5]), ("density_ratio", [1, 3, 4, 5])):
        row = pilot["interaction"][arm]
        assert row["seeds_read"] == read and row["generations"] == [1, 2, 3]
        planted = np.array([[_contrast(truth, arm, s, g) - _contrast(truth, "unfiltered", s, g)
                             for g in (1, 2, 3)] for s in read])
        assert np.allclose(row["interaction_mean_by_generation"], planted.mean(0))
        assert np.allclose(row["interaction_per_seed"], planted.mean(1))
        assert (row["sigma"], row["tau"]) == pytest.approx(_two_way(planted))
        sigmas.append(row["sigma"])
    assert pilot["interaction"]["residual"]["all_pairs"]["seeds_read"] == [1, 3, 4, 5]
    assert pilot["noise"]["sigma"] == pytest.approx(math.sqrt(np.mean(np.square(sigmas))))
    sizing = json.loads((results / "sizing.json").read_text())
    unfiltered = np.array([[_contrast(truth, "unfiltered", s, g) for g in (1, 2, 3)]
                           for s in (1, 3, 4, 5)]).mean(0)
    beta = size_v2.collapse_beta(unfiltered.tolist())
    assert sizing["collapse_beta"] == beta and sizing["delta_6"] == round(
        0.5 * float(np.log1p(beta * np.arange(1, 9)).mean()), 2)
    assert sizing["readable_share"] == 4 / 5 and set(sizing["seeds_to_list"]) == {"5", "10", "20"}
    margin = next(v for k, v in sizing["power"].items() if "margin" in k)
    assert margin["10"]["confirmed"] < 0.15 and set(margin) == {"5", "10", "20"}
    readme = (results / "README.md").read_text()
    # every unfiltered run: 3 arms' worth of generation 0 once, 2 x 3 later generations
    assert "| unfiltered | 5 | 174,000 | 600 |" in readme
    assert (results / "figures" / "arms.png").stat().st_size > 10_000
    assert "![each arm beside its oracle twin](figures/arms.png)" in readme
    (results / "README.md").write_text("# kept\n\nnotes\n" + readme.split("\n", 1)[1])
    assert pilot_p6.main(["analyse", "--work", str(tmp_path / "work"), "--results",
                          str(results), "--draws", "400"]) == 0
    assert (results / "README.md").read_text().startswith("# kept\n\nnotes\n")


def test_analyse_refuses_bad_input_in_one_line(tmp_path, capsys):
    assert pilot_p6.main(["analyse", "--work", str(tmp_path / "none"), "--results",
                          str(tmp_path / "results")]) == 2
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith(
        "pilot_p6 analyse: no runs under")
    truth = fake_work(tmp_path / "work", np.random.default_rng(1))
    assert truth
    path = tmp_path / "work" / "residual" / "3" / "summary.json"
    summary = json.loads(path.read_text())
    del summary["generations"][0]["bayes_excess"]
    path.write_text(json.dumps(summary))
    assert pilot_p6.main(["analyse", "--work", str(tmp_path / "work"), "--results",
                          str(tmp_path / "results")]) == 2
    assert "records without bayes_excess" in capsys.readouterr().out.splitlines()[-1]


def test_a_pilot_with_no_readable_seed_says_so_and_sizes_nothing(tmp_path):
    fake_work(tmp_path / "work", np.random.default_rng(2), missed=(1, 2, 3, 4, 5))
    results = tmp_path / "results"
    assert pilot_p6.main(["analyse", "--work", str(tmp_path / "work"), "--results",
                          str(results), "--draws", "100"]) == 0
    pilot = json.loads((results / "pilot.json").read_text())
    sizing = json.loads((results / "sizing.json").read_text())
    assert pilot["gate_passed"] == {"unfiltered": {"loops": 5, "reached": 0, "readable": 0}}
    assert pilot["interaction"] == {} and pilot["noise"]["sigma"] is None
    assert sizing["delta_6"] is None and sizing["power"] is None
    assert sizing["readable_share"] == 0 and "no readable unfiltered pair" in \
        sizing["why_no_delta"]
    readme = (results / "README.md").read_text()
    assert "none (fewer than 2 readable seeds)" in readme
    assert not (results / "figures" / "arms.png").exists() and "arms.png" not in readme


def test_the_figure_follows_the_readable_loops_past_their_screen(tmp_path, monkeypatch):
    """Seed 5 passed its screen but was beyond --max-seeds: only its unfiltered generation 0
    exists, and the figure leaves it out rather than cutting every loop to generation 0."""
    from icl_stl.report import arms_figure

    work = tmp_path / "work"
    fake_work(work, np.random.default_rng(3), missed=(2,))
    for arm in ("residual", "density_ratio"):
        shutil.rmtree(work / arm / "5")
    path = work / "unfiltered" / "5" / "summary.json"
    summary = json.loads(path.read_text())
    summary["generations"] = [r for r in summary["generations"] if r["generation"] == 0]
    path.write_text(json.dumps(summary))
    drawn = {}
    monkeypatch.setattr(arms_figure, "draw", lambda arms, p, title, calibration=None:
                        drawn.update(arms=arms, calibration=calibration) or p)
    assert pilot_p6.main(["analyse", "--work", str(work), "--results", str(tmp_path / "r"),
                          "--draws", "100"]) == 0
    seeds = {arm: [lp.seed for lp in loops] for arm, loops in drawn["arms"].items()}
    assert seeds == {"unfiltered": [1, 3, 4], "residual": [1, 3], "density_ratio": [1, 3, 4]}
    assert all(lp.generations == list(GENS) for loops in drawn["arms"].values()
               for lp in loops)
    pilot = json.loads((tmp_path / "r" / "pilot.json").read_text())
    assert drawn["calibration"]["residual"]["oracle"][3] == dict(enumerate(
        pilot["curves"]["residual"]["oracle"]["3"]["head_z2"]))


def test_the_committed_pilot_regenerates_from_its_records():
    """docs/results/pilot-p6/pilot.json is what the analysis reads from the runs committed
    beside it (the co-primary scales included), and the figure the README shows is there."""
    analysis = importlib.import_module("pilot_p6_analysis")
    results = REPO / "docs/results/pilot-p6"
    committed = json.loads((results / "pilot.json").read_text())
    pilot, _ = analysis.analyse(results)
    regenerated = json.loads(json.dumps(pilot))
    assert json_differences(committed, regenerated) == [] and set(regenerated) == set(committed)
    assert set(committed["coprimary"]["filters"]) == {"residual", "density_ratio"}
    assert (results / "figures" / "arms.png").exists()
