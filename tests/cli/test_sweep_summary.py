"""The pieces of icl_stl.cli.sweeps in process: which directories of a sweep are this sweep's
jobs and which failed, the summary line, the job tag of the log format, the cores per joblib
job. The launchers end to end are in test_sweeps.py."""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

import pytest

from icl_stl.cli.sweeps import job_formatter, summarise_sweep, summary_line, sweep_threads


def _job(sweep: Path, name: str, error: str | None = None, age_s: float = 0.0) -> Path:
    job = sweep / name
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "hydra.yaml").write_text("{}")
    (job / ".hydra" / "overrides.yaml").write_text(f"- seed={name}\n")
    if error is not None:
        (job / "error.json").write_text(json.dumps({"error": error, "traceback": "..."}))
    if age_s:
        past = time.time() - age_s
        for f in [*job.rglob("*")]:
            os.utime(f, (past, past))
    return job


def test_jobs_of_this_sweep_and_its_failures(tmp_path):
    started = time.time() - 1
    for n in range(11):
        _job(tmp_path, str(n), error="ConfigError: data.n=21 ...\nmore" if n in (2, 10) else None)
    _job(tmp_path, "11", error="from an earlier sweep", age_s=3600)  # not this sweep's job
    (tmp_path / ".submitit").mkdir()
    summary = summarise_sweep(tmp_path, ".hydra", started)
    assert summary["jobs"] == 11 and summary["failed"] == 2
    assert summary["job_dirs"][-2:] == [str(tmp_path / "9"), str(tmp_path / "10")]  # 10 after 9
    assert [f["dir"] for f in summary["failures"]] == [str(tmp_path / "2"), str(tmp_path / "10")]
    assert summary["failures"][0] == {"dir": str(tmp_path / "2"),
                                      "error": "ConfigError: data.n=21 ...",
                                      "overrides": ["seed=2"]}
    assert summary_line(summary) == (
        f"sweep finished: 11 jobs, 2 failed: {tmp_path / '2'} (ConfigError: data.n=21 ...); "
        f"{tmp_path / '10'} (ConfigError: data.n=21 ...)")


def test_the_line_stays_short_with_many_failures(tmp_path):
    for n in range(5):
        _job(tmp_path, str(n), error=f"Failure{n}: bad " + "x" * 500)
    summary = summarise_sweep(tmp_path, ".hydra", time.time() - 10)
    line = summary_line(summary)
    assert line.startswith("sweep finished: 5 jobs, 5 failed: ")
    assert line.endswith(f"; and 2 more (see {tmp_path / 'sweep_summary.json'})")
    assert "Failure2" in line and "Failure3" not in line and "Failure4" not in line
    assert all(len(f["error"]) == 200 and f["error"].endswith("x...")
               for f in summary["failures"])
    assert f"({summary['failures'][0]['error']})" in line


def test_without_a_hydra_output_subdir_only_failures_are_counted(tmp_path):
    _job(tmp_path, "0")
    _job(tmp_path, "1", error="RuntimeError: boom")
    summary = summarise_sweep(tmp_path, None, time.time() - 10)
    assert summary["jobs"] is None and summary["failed"] == 1
    assert summary_line(summary) == f"sweep finished: 1 failed: {tmp_path / '1'} (RuntimeError: boom)"


@pytest.mark.parametrize("cores,n_jobs,current,expected", [
    (16, 2, 16, 8), (16, 4, 16, 4), (16, -1, 16, 1), (16, -2, 16, 1), (16, -9, 16, 2),
    (2, 8, 2, 1), (16, 2, 1, 1),  # never above an OMP_NUM_THREADS the user set
    (16, None, 16, 16), (16, 1, 16, 16),
])
def test_each_joblib_job_gets_its_share_of_the_cores(cores, n_jobs, current, expected):
    assert sweep_threads(cores, n_jobs, current) == expected


def test_the_job_tag_is_empty_outside_a_sweep():
    fmt = job_formatter("[%(asctime)s]{job}[%(name)s] - %(message)s")
    record = logging.LogRecord("icl_stl", logging.INFO, __file__, 1, "hello", None, None)
    assert fmt.format(record).endswith("][icl_stl] - hello") and "{job}" not in fmt.format(record)
