"""Sweeps end to end: Hydra multirun through the basic, joblib and submitit launchers, a failing
job that leaves error.json while the sweep goes on, a re-run that loads every finished
generation instead of training, and the report reading what the sweeps wrote.

Every run is a console script in a subprocess with the smallest settings (d=2, k=5, 20 steps).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import BIN, LOOP_CLI, check_ok, read_summary, run_cli, without_paths

from icl_stl.report.report import verdicts_of, write_report

PROBE_CLI = str(BIN / "icl-stl-probe")
TINY = ["task.d=2", "task.k=5", "train.steps=20", "train.log_every=10", "train.warmup_steps=5",
        "train.checkpoint_every=0", "loop.generations=1", "eval.n_prompts=64",
        "eval.batch_size=64", "logger.mode=disabled"]  # data.n is set (or swept) by each test
LOOP_SWEEP = ["-m", "seed=0,1", "data.n=20", "members.real_fractions=[0,0.5]", *TINY]


def places(root: Path) -> list[str]:
    return [f"run.checkpoint_root={root}/ck", f"hydra.sweep.dir={root}/sweep"]


@pytest.fixture(scope="module")
def basic_sweep(tmp_path_factory) -> Path:
    """Two jobs (seed 0 and 1), each an ensemble of lambda = 0 and 0.5, one after another."""
    root = tmp_path_factory.mktemp("basic")
    check_ok(run_cli(LOOP_CLI, *LOOP_SWEEP, *places(root)))
    return root


def test_basic_sweep_writes_one_directory_per_job_and_the_report_pools_them(basic_sweep,
                                                                            tmp_path):
    for job in ("0", "1"):
        records = read_summary(basic_sweep / "sweep" / job)["generations"]
        assert {(r["real_fraction"], r["generation"]) for r in records} == \
            {(0, 0), (0, 1), (0.5, 0), (0.5, 1)}
        assert {r["seed"] for r in records} == {int(job)}
    result = write_report([basic_sweep / "sweep"], tmp_path / "report")
    assert result.verdicts[1] != "no data"  # the two jobs' seeds form one lambda = 0 group
    p1 = json.loads((tmp_path / "report" / "verdicts.json").read_text())["verdicts"]["1"]
    assert [g["group"] for g in p1["groups"]] == ["n=20"] and "2 seeds" in p1["numbers"]
    assert all(f.exists() for f in result.figures) and len(result.figures) >= 2


def test_rerun_of_a_finished_sweep_loads_every_generation(basic_sweep):
    before = {job: read_summary(basic_sweep / "sweep" / job) for job in ("0", "1")}
    check_ok(run_cli(LOOP_CLI, *LOOP_SWEEP, *places(basic_sweep)))
    for job, summary in before.items():
        run_dir = basic_sweep / "sweep" / job
        # timing.json lists the generations this execution trained: none
        assert json.loads((run_dir / "timing.json").read_text()) == {"generations": []}
        assert without_paths(read_summary(run_dir)) == without_paths(summary)


def test_a_failing_job_records_its_error_and_the_parallel_sweep_goes_on(tmp_path):
    # lambda n = 0.5 x 21 is not a whole number of prompts: job 1 fails before training
    proc = run_cli(LOOP_CLI, "-m", "hydra/launcher=parallel", "data.n=20,21",
                   "members.real_fractions=[0,0.5]", *TINY, *places(tmp_path))
    check_ok(proc)
    assert "Joblib.Parallel" in proc.stdout + proc.stderr  # the parallel launcher ran the jobs
    sweep = tmp_path / "sweep"
    assert read_summary(sweep / "0")["generations"]
    error = json.loads((sweep / "1" / "error.json").read_text())
    assert "ConfigError" in error["error"] and "data.n=21" in error["error"]
    assert not (sweep / "1" / "summary.json").exists()
    write_report([sweep], tmp_path / "report")
    text = (tmp_path / "report" / "REPORT.md").read_text()
    assert "1 failed job(s)" in text and "data.n=21" in text


def test_probe_sweep_over_n_through_submitit_pools_into_one_gamma_curve(tmp_path):
    proc = run_cli(PROBE_CLI, "-m", "hydra/launcher=local", "probe=stability", "data.n=16,32",
                   "probe.probe_prompts=32", *TINY, *places(tmp_path))
    check_ok(proc)
    assert (tmp_path / "sweep" / ".submitit").is_dir()  # the jobs went through submitit
    for job in ("0", "1"):
        stability = json.loads((tmp_path / "sweep" / job / "stability.json").read_text())
        assert {r["n"] for r in stability["generations"]} == {16 if job == "0" else 32}
    write_report([tmp_path / "sweep"], tmp_path / "report")
    assert verdicts_of(tmp_path / "report")[3] != "no data"
    p3 = json.loads((tmp_path / "report" / "verdicts.json").read_text())["verdicts"]["3"]
    assert len(p3["groups"]) == 1 and "n=16" in p3["numbers"] and "n=32" in p3["numbers"]
