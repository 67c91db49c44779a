"""wandb as a researcher uses it, read back from W&B's own offline files (no mock of W&B).

A two-loop job (lambda 0 and 0.5, seed 1: neither is the job's default) is SIGKILLed after
generation 1 is saved but before it is logged, and the same command (a new Hydra directory, as
a timestamped one would be) resumes it. Then: one W&B run per loop plus the job's, each
continued across the kill, each generation in each run's history exactly once; every loop's
config has its own lambda, seed and n at the top level; one group, job type loop; and the
report logs its figures and verdicts to a report run of the same group.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from wandb_readback import by_name, offline_runs

BIN = Path(sys.executable).parent
TINY = ["task.d=2", "task.k=5", "model.n_layer=1", "model.n_head=2", "model.n_embd=16",
        "train.steps=20", "train.warmup_steps=5", "train.log_every=10",
        "train.checkpoint_every=10", "train.batch_size=16", "data.n=16", "eval.n_prompts=32",
        "eval.batch_size=32", "runtime.threads=1", "loop.generations=3", "logger.mode=offline",
        "members.real_fractions=[0,0.5]", "members.seeds=[1]"]
LOOPS = {"lam0-n16-seed1": 0.0, "lam0.5-n16-seed1": 0.5}
JOB = "loop-lam0,0.5-n16-g3-seed1"


def _env(tmp: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ICL_STL_FAULT", "WANDB_"))}
    home = str(tmp / "wandb_home")  # W&B's user files, not the real home's
    env.update(OMP_NUM_THREADS="1", WANDB_CONFIG_DIR=home, WANDB_CACHE_DIR=home,
               WANDB_DATA_DIR=home, **extra)
    return env


def _loop(tmp: Path, out: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "icl-stl-loop"), *TINY, f"run.checkpoint_root={tmp / 'ck'}",
                           f"hydra.run.dir={tmp / out}"], cwd=tmp, env=_env(tmp, **env),
                          capture_output=True, text=True, timeout=600)


def test_per_loop_runs_hold_their_settings_and_survive_a_kill(tmp_path):
    killed = _loop(tmp_path, "out1", ICL_STL_FAULT="generation_end:2")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    resumed = _loop(tmp_path, "out2")
    assert resumed.returncode == 0, resumed.stderr[-3000:]

    runs = by_name(offline_runs(tmp_path / "out1", tmp_path / "out2"))
    assert sorted(runs) == sorted([JOB, *LOOPS]), "one run per loop and the job's, no fork"
    for name, run in runs.items():
        # Continued, not restarted: a segment in each process's directory, under one id.
        assert [f.parents[2].name for f in run.segments] == ["out1", "out2"], name
        assert run.generations() == [0, 1, 2, 3], f"{name}: each generation exactly once"
        assert run.group == JOB and run.job_type == "loop", name
    for name, lam in LOOPS.items():
        config = runs[name].config
        assert config["loop"]["real_fraction"] == lam and config["seed"] == 1, name
        assert config["data"]["n"] == 16 and config["member"]["real_fraction"] == lam
        assert config["loop"]["labeller"] == "model" == config["member"]["labeller"]
        assert config["job"]["seed"] == 0, "the job's own values kept apart"
    risks = [r["gen/test_risk"] for r in runs["lam0-n16-seed1"].rows if "gen/test_risk" in r]
    summary = json.loads((tmp_path / "out2" / "summary.json").read_text())
    assert risks == [r["test_risk"] for r in summary["generations"] if r["member"] == 0]

    report = subprocess.run([str(BIN / "icl-stl-report"), str(tmp_path / "out2"), "--out",
                             str(tmp_path / "report")], cwd=tmp_path, env=_env(tmp_path),
                            capture_output=True, text=True, timeout=600)
    assert report.returncode == 0, report.stderr[-3000:]
    (run,) = offline_runs(tmp_path / "report").values()
    assert run.group == JOB and run.job_type == "report"
    figures = sorted((tmp_path / "report" / "figures").glob("*.png"))
    logged = {k.split("/")[1] for row in run.rows for k in row if k.startswith("figures/")}
    assert figures and logged == {f.stem for f in figures}
    (table,) = [row for row in run.rows if "verdicts/_type" in row]
    verdicts = json.loads((tmp_path / "report" / "verdicts.json").read_text())["verdicts"]
    assert table["verdicts/_type"] == "table-file" and table["verdicts/nrows"] == len(verdicts)
