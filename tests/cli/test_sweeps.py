"""Sweeps end to end: Hydra multirun through the basic, joblib and submitit launchers, a failing
job that leaves error.json while the sweep goes on (and the end-of-sweep summary that names it,
exit 1), a re-run that loads every finished generation instead of training, and the report
reading what the sweeps wrote.

Every run is a console script in a subprocess with the smallest settings (d=2, k=5, 20 steps).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import (
    BIN,
    LOOP_CLI,
    TINY_TRAIN,
    TRAIN_CLI,
    check_ok,
    read_summary,
    run_cli,
    without_paths,
)

from icl_stl.report.report import verdicts_of, write_report
from icl_stl.report.rules import ReportConfig

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


def sweep_summary(sweep: Path) -> dict:
    return json.loads((sweep / "sweep_summary.json").read_text())


def test_basic_sweep_writes_one_directory_per_job_and_the_report_pools_them(basic_sweep,
                                                                            tmp_path):
    summary = sweep_summary(basic_sweep / "sweep")
    assert (summary["jobs"], summary["failed"]) == (2, 0)
    assert summary["job_dirs"] == [str(basic_sweep / "sweep" / job) for job in ("0", "1")]
    for job in ("0", "1"):
        records = read_summary(basic_sweep / "sweep" / job)["generations"]
        assert {(r["real_fraction"], r["generation"]) for r in records} == \
            {(0, 0), (0, 1), (0.5, 0), (0.5, 1)}
        assert {r["seed"] for r in records} == {int(job)}
    # no oracle-labelled twins here: P1 read by the version-1 rules
    result = write_report([basic_sweep / "sweep"], tmp_path / "report", ReportConfig(rules="v1"))
    assert result.verdicts[1] != "no data"  # the two jobs' seeds form one lambda = 0 group
    p1 = json.loads((tmp_path / "report" / "verdicts.json").read_text())["verdicts"]["1"]
    assert [g["group"] for g in p1["groups"]] == ["n=20"] and "2 seeds" in p1["numbers"]
    assert all(f.exists() for f in result.figures) and len(result.figures) >= 2


def test_rerun_of_a_finished_sweep_loads_every_generation(basic_sweep):
    before = {job: read_summary(basic_sweep / "sweep" / job) for job in ("0", "1")}
    proc = run_cli(LOOP_CLI, *LOOP_SWEEP, *places(basic_sweep))
    check_ok(proc)
    assert f"sweep finished: 2 jobs, none failed ({basic_sweep / 'sweep'})" in proc.stdout
    for job, summary in before.items():
        run_dir = basic_sweep / "sweep" / job
        # timing.json lists the generations this execution trained: none
        assert json.loads((run_dir / "timing.json").read_text())["generations"] == []
        assert without_paths(read_summary(run_dir)) == without_paths(summary)


def test_a_failing_job_records_its_error_and_the_parallel_sweep_goes_on(tmp_path):
    # lambda n = 0.5 x 21 is not a whole number of prompts: job 1 fails before training
    proc = run_cli(LOOP_CLI, "-m", "hydra/launcher=parallel", "data.n=20,21",
                   "members.real_fractions=[0,0.5]", *TINY, *places(tmp_path))
    assert proc.returncode == 1, proc.stderr[-3000:]  # a sweep with a failed job failed
    assert "Joblib.Parallel" in proc.stdout + proc.stderr  # the parallel launcher ran the jobs
    sweep = tmp_path / "sweep"
    assert read_summary(sweep / "0")["generations"]
    error = json.loads((sweep / "1" / "error.json").read_text())
    assert "ConfigError" in error["error"] and "data.n=21" in error["error"]
    last = proc.stderr.strip().splitlines()[-1]
    assert last == f"sweep finished: 2 jobs, 1 failed: {sweep / '1'} ({error['error']})", last
    summary = sweep_summary(sweep)
    assert (summary["jobs"], summary["failed"]) == (2, 1)
    assert summary["failures"][0]["dir"] == str(sweep / "1")
    assert "data.n=21" in summary["failures"][0]["overrides"]
    # the interleaved console lines of the two jobs say whose they are; each job had its
    # share of the cores as torch threads
    assert "[job 0][icl_stl" in proc.stdout and "[job 1][icl_stl" in proc.stdout
    assert "torch threads: 1 (" in (sweep / "0" / "loop.log").read_text()
    assert "joblib n_jobs=2" in (sweep / "0" / "loop.log").read_text()
    assert not (sweep / "1" / "summary.json").exists()
    write_report([sweep], tmp_path / "report")
    text = (tmp_path / "report" / "REPORT.md").read_text()
    assert "1 failed job(s)" in text and "data.n=21" in text


def test_probe_sweep_over_n_through_submitit_pools_into_one_gamma_curve(tmp_path):
    proc = run_cli(PROBE_CLI, "-m", "hydra/launcher=local", "probe=stability", "data.n=16,32",
                   "probe.probe_prompts=32", *TINY, *places(tmp_path))
    check_ok(proc)
    assert (tmp_path / "sweep" / ".submitit").is_dir()  # the jobs went through submitit
    summary = sweep_summary(tmp_path / "sweep")
    assert (summary["jobs"], summary["failed"]) == (2, 0)  # not .submitit/: no Hydra config
    for job in ("0", "1"):
        stability = json.loads((tmp_path / "sweep" / job / "stability.json").read_text())
        assert {r["n"] for r in stability["generations"]} == {16 if job == "0" else 32}
    # a few steps are far from ridge: waive the per-loop gate to read the pooled gamma curve
    # (rules v1: version 2 judges P3 from the dose-response probe, not from these twins)
    write_report([tmp_path / "sweep"], tmp_path / "report",
                 ReportConfig(rules="v1", gate_tolerance=2.0))
    assert verdicts_of(tmp_path / "report")[3] != "no data"
    p3 = json.loads((tmp_path / "report" / "verdicts.json").read_text())["verdicts"]["3"]
    assert len(p3["groups"]) == 1 and "n=16" in p3["numbers"] and "n=32" in p3["numbers"]


def test_basic_sweep_with_a_bad_value_exits_1_and_a_fixed_rerun_clears_the_failure(tmp_path):
    """task.d=-1 fails job 1 (the basic launcher, one job after another); the sweep goes on, says
    so at the end and exits 1. Re-run with the value fixed into the same directory: the stale
    error.json is gone and the sweep succeeds."""
    sweep = tmp_path / "sweep"
    args = [*TINY_TRAIN, "train.steps=10", *places(tmp_path)]
    proc = run_cli(TRAIN_CLI, "-m", *args, "task.d=2,-1")  # after TINY_TRAIN's task.d
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert (sweep / "0" / "summary.json").exists() and (sweep / "1" / "error.json").exists()
    assert proc.stderr.strip().splitlines()[-1] == (
        f"sweep finished: 2 jobs, 1 failed: {sweep / '1'} (ConfigError: task.d must be an "
        f"integer in [1, 4096], got -1)")
    proc = run_cli(TRAIN_CLI, "-m", *args, "task.d=2,3")
    check_ok(proc)
    assert not (sweep / "1" / "error.json").exists() and (sweep / "1" / "summary.json").exists()
    assert sweep_summary(sweep)["failed"] == 0 and "none failed" in proc.stdout
