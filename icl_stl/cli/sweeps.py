"""What a Hydra sweep (-m) adds to every entry point: an end-of-sweep summary that says which jobs
failed (and a non-zero exit when any did), job numbers in the log lines of parallel jobs, and a
share of the cores for each job of the joblib launcher.

Registered in the `hydra:` section of conf/{train,loop,probe,eval}.yaml. Kept free of torch: the
logging setup of every job imports it.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from icl_stl.persistence import atomic_write_json

SUMMARY_FILE = "sweep_summary.json"
ERROR_FILE = "error.json"  # written by a failing job (cli.common.entry_point)
SHOWN_FAILURES = 3  # on the summary line; sweep_summary.json lists them all
# A job's .hydra/ written this long before the sweep started still counts as this sweep's: file
# times can be coarser than the clock.
MTIME_SLACK_S = 2.0


class SweepSummary(Callback):
    """At the end of a multirun: one line (and <sweep dir>/sweep_summary.json) saying how many
    jobs ran and which failed, with each failure's error; exit 1 when any job failed. Jobs are
    the directories of the sweep whose Hydra config was written during this sweep, so it works
    for launchers that run jobs in other processes (joblib, submitit)."""

    def __init__(self) -> None:
        self.started = time.time()

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self.started = time.time()

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(str(config.hydra.sweep.dir))
        if not sweep_dir.is_dir():
            return
        summary = summarise_sweep(sweep_dir, config.hydra.output_subdir,
                                  self.started - MTIME_SLACK_S)
        atomic_write_json(sweep_dir / SUMMARY_FILE, summary)
        line = summary_line(summary)
        if summary["failed"]:
            print(line, file=sys.stderr, flush=True)
            sys.exit(1)  # a sweep with a failed job is not a success (scripts, CI, make)
        print(line, flush=True)


def summarise_sweep(sweep_dir: Path, output_subdir: str | None, since: float) -> dict:
    """The jobs of the sweep in `sweep_dir` started after `since`, and which of them failed."""
    if output_subdir:  # each job's Hydra config, written when the job starts
        markers = sweep_dir.rglob(f"{output_subdir}/hydra.yaml")
        jobs = sorted({m.parent.parent for m in markers if m.stat().st_mtime >= since},
                      key=_natural)
    else:  # Hydra writes nothing per job: only failures can be found
        jobs = None
    errors = sorted((p for p in sweep_dir.rglob(ERROR_FILE) if p.stat().st_mtime >= since),
                    key=_natural)
    failures = [{"dir": str(p.parent), "error": _error_line(p),
                 "overrides": _overrides(p.parent, output_subdir)} for p in errors]
    return {"sweep_dir": str(sweep_dir), "jobs": None if jobs is None else len(jobs),
            "failed": len(failures),
            "job_dirs": None if jobs is None else [str(j) for j in jobs],
            "failures": failures}


def summary_line(summary: dict) -> str:
    jobs = "" if summary["jobs"] is None else f"{summary['jobs']} jobs, "
    if not summary["failed"]:
        return f"sweep finished: {jobs}none failed ({summary['sweep_dir']})"
    shown = "; ".join(f"{f['dir']} ({f['error']})" for f in summary["failures"][:SHOWN_FAILURES])
    more = len(summary["failures"]) - SHOWN_FAILURES
    rest = (f"; and {more} more (see {Path(summary['sweep_dir']) / SUMMARY_FILE})"
            if more > 0 else "")
    return f"sweep finished: {jobs}{summary['failed']} failed: {shown}{rest}"


def _error_line(path: Path) -> str:
    try:
        text = str(json.loads(path.read_text())["error"])
    except (OSError, ValueError, KeyError, TypeError) as err:
        return f"unreadable {path.name}: {err}"
    first = text.strip().splitlines()[0] if text.strip() else "no message"
    return first if len(first) <= 200 else first[:197] + "..."


def _overrides(job_dir: Path, output_subdir: str | None) -> list[str] | None:
    if not output_subdir:
        return None
    try:
        from omegaconf import OmegaConf

        return list(OmegaConf.load(job_dir / output_subdir / "overrides.yaml"))
    except (OSError, ValueError):
        return None


def _natural(path: Path) -> list:
    """Job 10 after job 9."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(path))]


def job_formatter(format: str, datefmt: str | None = None) -> logging.Formatter:
    """Hydra's job log format with '[job N]' in place of '{job}' in a multirun job, so the
    interleaved console lines of parallel jobs say which job wrote them; nothing otherwise.
    Built by the logging setup of each job (hydra.job_logging), when Hydra knows the job."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    tag = ""
    if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
        tag = f"[job {HydraConfig.get().job.num}]"
    return logging.Formatter(format.replace("{job}", tag), datefmt)


def sweep_threads(cores: int, n_jobs: int | None, current: int) -> int:
    """Torch threads for one of `n_jobs` parallel jobs (joblib's n_jobs: -1 is one per core) on
    `cores` cores: an equal share, never more than `current` (an OMP_NUM_THREADS the user set)."""
    if not n_jobs:
        n_jobs = 1
    if n_jobs < 0:
        n_jobs = max(cores + 1 + n_jobs, 1)
    return max(1, min(current, cores // n_jobs))
