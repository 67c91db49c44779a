"""scripts/reproduce.py: the programme's design meets the issue's floor, --plan counts the work
the runners do, a part runs and resumes, and the reference figure draws the closed forms."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from icl_stl.cli.common import load_app_config
from icl_stl.cli.loop import members_from_config
from icl_stl.report.reference_figure import mean_sd_by, plot_reference

REPO = Path(__file__).resolve().parents[2]


def load_script():
    spec = importlib.util.spec_from_file_location("reproduce", REPO / "scripts" / "reproduce.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


reproduce = load_script()


def composed(part: str, tmp_path: Path, *overrides: str):
    cfg = reproduce.compose_part(part, tmp_path, list(overrides))
    return cfg, load_app_config(cfg, needs_loop=True)


def test_the_design_meets_the_floor_the_issue_sets(tmp_path):
    _, collapse = composed("collapse", tmp_path)
    members = members_from_config(collapse)
    assert len({m.seed for m in members}) >= 5 and collapse.loop.generations >= 6
    assert {m.real_fraction for m in members} == {0, 0.1, 0.25, 0.5, 1}
    cfg, _ = composed("stability", tmp_path)
    assert len(cfg.probe.replaced_indices) >= 3 and cfg.probe.chaos_control != "none"
    assert len(cfg.probe.seeds) >= 5 and len(cfg.probe.ns) >= 2
    cfg, _ = composed("decay", tmp_path)
    ns = list(cfg.probe.ns)
    assert len(ns) >= 6 and max(ns) / min(ns) >= 100 and len(cfg.probe.seeds) >= 5
    _, aug = composed("augmentation", tmp_path)
    assert len(members_from_config(aug)) >= 50
    assert len(set(aug.members.augments)) >= 5 and 2 <= len(set(aug.members.ns)) <= 3
    _, ref = composed("reference", tmp_path)
    assert ref.loop.learner == "gaussian_prior"
    assert set(ref.members.real_fractions) == set(collapse.members.real_fractions)
    assert set(ref.members.ns) == set(ns)  # the decay grid, so its closed forms cover every n


def test_the_extension_parts_are_judged_against_the_collapse_part(tmp_path):
    """P6-P8's parts change only the extension's settings and the members of the collapse part,
    so its loops are their comparison: the unfiltered lambda = 0 loops (P6, P8 with M = null),
    the constant loops at each floor (P7, reached before the window of the last three
    generations); P6 has two verifier qualities, P8 an M <= d; every part has 5 seeds."""
    from icl_stl.config.schedules import real_fraction

    _, collapse = composed("collapse", tmp_path)
    lambdas = {m.real_fraction for m in members_from_config(collapse)}
    jobs = {part: [load_app_config(cfg, needs_loop=True)
                   for _, cfg in reproduce.part_jobs(part, tmp_path, [])]
            for part in ("filters", "schedules", "pools")}
    for part, apps in jobs.items():
        for app in apps:
            task = dataclasses.replace(app.task, n_tasks=None)
            assert (task, app.model, app.train, app.data) == (
                collapse.task, collapse.model, collapse.train, collapse.data), part
    filters = jobs["filters"]
    assert all({m.real_fraction for m in members_from_config(a)} == {0} for a in filters)
    assert all(len({m.seed for m in members_from_config(a)}) >= 5 for a in filters)
    assert len({a.loop.verifier_n_real for a in filters if a.loop.filter == "verifier"}) >= 2
    assert {a.loop.filter for a in filters} == {"verifier", "confidence"}
    for app in jobs["schedules"]:
        (lam0,) = {m.real_fraction for m in members_from_config(app)}
        loop = app.loop
        window = range(loop.generations - 2, loop.generations + 1)
        assert all(real_fraction(i, loop.real_schedule, lam0, loop.real_schedule_rate,
                                 loop.real_schedule_floor) == loop.real_schedule_floor
                   for i in window)
        assert loop.real_schedule_floor in lambdas
    assert {a.loop.real_schedule_floor for a in jobs["schedules"]} >= {0.0}
    pools = jobs["pools"]
    by_m = {}
    for app in pools:
        by_m.setdefault(app.task.n_tasks, set()).add(app.seed)
    assert min(by_m) <= collapse.task.d and len(by_m) >= 2
    assert all(len(seeds) >= 5 for seeds in by_m.values())
    below = [a for a in pools if a.task.n_tasks == min(by_m)]
    assert all(a.loop.generations == collapse.loop.generations for a in below)


def test_part_jobs_run_each_preset_and_sweep_point_in_its_own_directory(tmp_path):
    jobs = reproduce.part_jobs("pools", tmp_path, [])
    dirs = [d.relative_to(tmp_path).as_posix() for d, _ in jobs]
    assert len(dirs) == len(set(dirs)) == 10
    assert "pools/below/seed0" in dirs and "pools/above/seed4" in dirs
    assert [d.relative_to(tmp_path).as_posix()
            for d, _ in reproduce.part_jobs("collapse", tmp_path, [])] == ["collapse"]
    fixed = reproduce.part_jobs("pools", tmp_path, ["seed=3"])  # --set fixes a swept key
    assert [cfg.seed for _, cfg in fixed] == [3, 3]
    steps = reproduce.planned_member_steps("pools", jobs[0][1])
    app = load_app_config(jobs[0][1], needs_loop=True)
    assert steps["generation_0"] == app.train.steps
    assert steps["later"] == app.loop.generations * app.loop.steps


COMMITTED = REPO / "docs" / "results" / "cpu" / "runs"


@pytest.mark.parametrize("part", [p for p in reproduce.PARTS if p != "reference"])
def test_every_job_of_a_part_keeps_its_committed_folder_and_run_name(tmp_path, part):
    """The presets under conf/experiment/reproduce/ give each job the folder and the run name
    (and a loop its identity) of the committed run, so the same command resumes or regenerates
    it. The reference part's committed run predates later changes to its preset."""
    from icl_stl.cli.common import run_name
    from icl_stl.cli.loop import loop_settings

    kind = reproduce.PARTS[part][0]
    jobs = reproduce.part_jobs(part, tmp_path, [])
    folders = {run_dir.relative_to(tmp_path) for run_dir, _ in jobs}
    assert folders == {s.parent.relative_to(COMMITTED)
                       for s in COMMITTED.glob(f"{part}/**/summary.json")}
    for run_dir, cfg in jobs:
        summary = json.loads((COMMITTED / run_dir.relative_to(tmp_path) / "summary.json")
                             .read_text())
        app = load_app_config(cfg, needs_loop=True)
        assert run_name(app, kind) == summary["checkpoint_dir"].rsplit("/", 1)[-1], run_dir
        if kind == "loop":
            assert loop_settings(app, runtime=None).identity() == summary["settings"], run_dir


def test_the_makefile_names_every_part():
    text = (REPO / "Makefile").read_text()
    (listed,) = [line.split("PART=", 1)[1] for line in text.splitlines()
                 if line.startswith("#") and "PART=" in line]
    assert listed.split(",")[0].split("|") == list(reproduce.PARTS)


def test_plan_counts_shared_generation_0_and_each_loop(tmp_path):
    cfg, app = composed("collapse", tmp_path)
    steps = reproduce.planned_member_steps("collapse", cfg)
    seeds, lambdas = len(app.members.seeds), len(app.members.real_fractions)
    assert steps["generation_0"] == seeds * app.train.steps  # once per seed, not per lambda
    assert steps["later"] == seeds * lambdas * app.loop.generations * app.loop.steps
    cfg, app = composed("stability", tmp_path)
    loops = len(cfg.probe.ns) * len(cfg.probe.seeds) * (1 + len(cfg.probe.replaced_indices) + 1)
    assert reproduce.planned_member_steps("stability", cfg)["generation_0"] == loops * app.train.steps
    cfg, _ = composed("reference", tmp_path)
    assert reproduce.planned_member_steps("reference", cfg)["total"] == 0


def test_plan_prints_every_part_and_trains_nothing(tmp_path, capsys):
    assert reproduce.main(["--plan", "--out", str(tmp_path / "out")]) == 0
    text = capsys.readouterr().out
    for part in reproduce.PARTS:
        assert part in text
    assert not (tmp_path / "out").exists()


TINY = ["train.steps=4", "train.warmup_steps=1", "train.log_every=2", "loop.steps=2",
        "loop.warmup_steps=1", "loop.generations=2", "data.n=40", "eval.n_prompts=32",
        "members.seeds=[0,1]", "members.real_fractions=[0,0.5]"]


def test_a_part_runs_resumes_and_copies_its_results(tmp_path):
    out, results = tmp_path / "out", tmp_path / "results"
    args = ["--part", "collapse", "--out", str(out), "--results", str(results),
            *(a for o in TINY for a in ("--set", o))]
    assert reproduce.main(args) == 0
    summary = json.loads((out / "collapse" / "summary.json").read_text())
    assert len(summary["generations"]) == 4 * 3
    assert reproduce.main(args) == 0  # the same command again: every generation loaded
    again = json.loads((out / "collapse" / "summary.json").read_text())
    assert again["generations"] == summary["generations"]
    timing = json.loads((results / "timing.json").read_text())
    assert [i["part"] for i in timing["invocations"]] == ["collapse", "collapse"]
    assert timing["seconds_per_part"]["collapse"] > 0
    assert "machine" in timing["invocations"][0]
    assert all(i["completed"] for i in timing["invocations"])
    assert all(i["startup_s"] is None or i["startup_s"] > 0 for i in timing["invocations"])
    assert len(timing["reports"]) == 2 and timing["reports"][0]["seconds"] > 0
    for name in ("REPORT.md", "verdicts.json", "runs.csv", "runs/collapse/summary.json"):
        assert (results / name).exists(), name
    # The part's profile (scripts/profile_part.py): its rows add up to its wall time, and the
    # second invocation, which trained nothing, shows as resume.
    spec = importlib.util.spec_from_file_location("profile_part",
                                                  REPO / "scripts" / "profile_part.py")
    profile_part = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(profile_part)
    profile = profile_part.part_profile(out, "collapse")
    rows = {r["row"]: r["seconds"] for r in profile["rows"]}
    assert sum(rows.values()) == pytest.approx(profile["wall_s"], abs=0.05)
    assert rows["training"] > 0 and rows["resume"] > 0 and rows["report and figures"] > 0
    assert profile["generations_trained"] == 3


def test_an_interrupted_part_records_its_time(tmp_path, monkeypatch):
    def interrupted(cfg, output_dir):
        raise KeyboardInterrupt

    monkeypatch.setitem(reproduce.PARTS, "collapse", ("loop", "reproduce/collapse", interrupted))
    assert reproduce.main(["--part", "collapse", "--out", str(tmp_path)]) == 130
    timing = json.loads((tmp_path / "timing.json").read_text())
    assert [(i["part"], i["completed"]) for i in timing["invocations"]] == [("collapse", False)]


def fake_summary(path: Path, lambdas, ns, metric_of) -> Path:
    records = [{"seed": s, "real_fraction": lam, "n": n, "augment": 0, "generation": g,
                "test_risk": 0.3 + 0.01 * g * (lam == 0), "ridge_risk": 0.24,
                "prior_mean_err2": metric_of(lam, n, g, s)}
               for s in range(3) for lam in lambdas for n in ns for g in range(4)]
    path.write_text(json.dumps({"generations": records,
                                "settings": {"task": {"d": 2, "w_scale": 1.0}}}))
    return path


def test_mean_sd_by_groups_over_seeds_at_one_n(tmp_path):
    path = fake_summary(tmp_path / "s.json", [0.0, 0.5], [100, 1000],
                        lambda lam, n, g, s: float(s))
    records = json.loads(path.read_text())["generations"]
    stats = mean_sd_by(records, "prior_mean_err2", 100)
    gens, means, sds = stats[0.5]
    assert list(gens) == [0, 1, 2, 3] and np.allclose(means, 1.0) and np.allclose(sds, 1.0)


def test_reference_figure_is_written(tmp_path):
    transformer = fake_summary(tmp_path / "t.json", [0.0, 0.5], [10000], lambda *a: None)
    reference = fake_summary(tmp_path / "r.json", [0.0, 0.5], [100, 10000],
                             lambda lam, n, g, s: 2 / n * (g + 1) * (1 + 0.1 * s))
    png = plot_reference(transformer, reference, tmp_path / "fig" / "reference.png")
    assert png.exists() and png.stat().st_size > 10_000
