"""Kill anywhere, resume exactly (reliability issue, part 1).

A training run, a loop and a sweep job are SIGKILLed at named fault points (during a step,
during labelling, during evaluation, during a checkpoint write, between generations) and the
same command is started again; the resumed run must end with the summary of an uninterrupted run.
Fault points are armed with ICL_STL_FAULT (see icl_stl/persistence/faults.py). `make test` runs fixed kill
points; `make test-all` adds 20 random ones drawn from a seeded RNG (the seed is printed; set
ICL_STL_FAULT_SEED to replay or vary it) and the submitit launcher's preemption and requeue.

The helpers here (tiny settings, CLI runs, cached uninterrupted references, counters) are shared
with tests/system/test_reliability.py.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import NamedTuple

import pytest
import torch
from hydra import compose, initialize_config_dir

from icl_stl.cli.common import CONFIG_DIR
from icl_stl.persistence import faults

BIN = Path(sys.executable).parent  # the venv's console scripts
TIMEOUT_S = 300
# Tiny but complete: 4 checkpoints per training, 2 evaluation batches, 2 generations.
TINY_TRAIN = ["task.d=2", "task.k=5", "model.n_layer=1", "model.n_head=2", "model.n_embd=16",
              "train.steps=40", "train.warmup_steps=5", "train.log_every=10",
              "train.checkpoint_every=10", "train.batch_size=16", "data.n=16",
              "eval.n_prompts=64", "eval.batch_size=32", "runtime.threads=1",
              "logger.mode=disabled"]
TINY = {"train": TINY_TRAIN, "loop": [*TINY_TRAIN, "train.steps=30", "loop.generations=2"]}
PATH_KEYS = ("checkpoint", "checkpoint_dir")  # where a run wrote, not what it computed
FAULT_SEED = int(os.environ.get("ICL_STL_FAULT_SEED", "20251123"))

# What the reliability tests showed (kills survived, corruptions detected, ...): see emit_counts.
COUNTS: Counter = Counter()


# ---------------------------------------------------------------------------------------------
# Helpers shared with test_reliability.py


def clean_env(**extra: str) -> dict[str, str]:
    """The environment of a child run: no inherited fault spec, one thread, no W&B."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("ICL_STL_FAULT", "HYDRA_FULL_ERROR"))}
    env.update(OMP_NUM_THREADS="1", WANDB_MODE="disabled")
    env.update(extra)
    return env


def cli(kind: str, tmp: Path, *extra: str, fault: str | None = None, out: str = "out",
        ck: str = "ck", env: dict | None = None, multirun: bool = False) -> subprocess.CompletedProcess:
    """Run `icl-stl-<kind>` on the tiny settings with outputs under `tmp` and wait for it."""
    dirs = ([f"hydra.sweep.dir={tmp / out}"] if multirun else [f"hydra.run.dir={tmp / out}"])
    args = [str(BIN / f"icl-stl-{kind}"), *(["-m"] if multirun else []), *TINY[kind],
            f"run.checkpoint_root={tmp / ck}", *dirs, *extra]
    child_env = env if env is not None else clean_env()
    if fault is not None:
        child_env = {**child_env, "ICL_STL_FAULT": fault}
    return subprocess.run(args, cwd=tmp, env=child_env, capture_output=True, text=True,
                          timeout=TIMEOUT_S)


def output(proc: subprocess.CompletedProcess) -> str:
    """Everything a run printed (Hydra sends log records to stdout, errors go to stderr)."""
    return proc.stdout + proc.stderr


def check_ok(proc: subprocess.CompletedProcess) -> None:
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stderr[-4000:]}"


def check_killed(proc: subprocess.CompletedProcess, fault: str) -> None:
    """The run died of the injected SIGKILL (not of an error, and not by finishing)."""
    assert proc.returncode == -signal.SIGKILL, (
        f"{fault} did not kill the run (exit {proc.returncode})\n{proc.stderr[-3000:]}")
    COUNTS["kills"] += 1


def run_in_process(kind: str, out_dir: Path, ck_root: Path, *extra: str) -> dict:
    """The same run as `cli` through the compose API, in this process; returns its summary."""
    from icl_stl.cli.loop import loop_from_config
    from icl_stl.cli.train import train_from_config

    threads = torch.get_num_threads()  # runtime.threads=1 is process-wide: restore it after
    try:
        with initialize_config_dir(version_base="1.3", config_dir=CONFIG_DIR):
            cfg = compose(kind, overrides=[*TINY[kind], f"run.checkpoint_root={ck_root}",
                                           *extra])
        run = train_from_config if kind == "train" else loop_from_config
        return run(cfg, out_dir)
    finally:
        torch.set_num_threads(threads)


class Reference(NamedTuple):
    """An uninterrupted run: its summary, how often it reached each fault point, its files."""

    summary: dict
    reached: dict[str, int]
    root: Path  # out/ (run directory) and ck/ (checkpoint root)


_REFERENCES: dict[tuple, Reference] = {}


def reference(kind: str, factory: pytest.TempPathFactory, *extra: str) -> Reference:
    """The uninterrupted run of `kind` with `extra` overrides, computed once per session."""
    key = (kind, *extra)
    if key not in _REFERENCES:
        tmp = factory.mktemp(f"reference-{kind}")
        faults.reset()
        os.environ["ICL_STL_FAULT_TRACE"] = str(tmp / "trace.json")  # turns counting on
        try:
            summary = run_in_process(kind, tmp / "out", tmp / "ck", *extra)
            reached = dict(faults._counts)
        finally:
            del os.environ["ICL_STL_FAULT_TRACE"]
            faults.reset()
        summary = json.loads(json.dumps(summary))  # tuples -> lists, as read back from disk
        _REFERENCES[key] = Reference(summary, reached, tmp)
    return _REFERENCES[key]


def seeded(kind: str, factory: pytest.TempPathFactory, seed: int) -> Reference:
    """The reference of one job of a `seed=0,1` sweep (seed 0 is the default reference)."""
    return reference(kind, factory, *([f"seed={seed}"] if seed else []))


def comparable(summary: dict) -> dict:
    return {k: v for k, v in summary.items() if k not in PATH_KEYS}


def stored_records(ck_root: Path, ref: dict) -> list[dict]:
    """The finished generations' records of the loop of `ref` (a summary) checkpointed under
    `ck_root` (the run name, a hash of the settings, is the same for the same loop)."""
    files = sorted((ck_root / Path(ref["checkpoint_dir"]).name).glob("gen_*/metrics.json"))
    return [r for f in files for r in json.loads(f.read_text())["records"]]


def check_same_result(kind: str, run_dir: Path, ck_root: Path, ref: dict) -> None:
    """The run in `run_dir` ended with exactly the reference summary (paths aside)."""
    if kind == "loop":  # the checkpointed generations first: a resume bug shows up as such
        assert stored_records(ck_root, ref) == ref["generations"]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert comparable(summary) == comparable(ref), f"{run_dir}/summary.json differs"
    COUNTS["identical_after_fault"] += 1


@pytest.fixture(scope="module", autouse=True)
def emit_counts(request, tmp_path_factory):
    """Print what this module's tests counted and write it to $ICL_STL_RELIABILITY_DIR (read
    by scripts/reliability_counts.py to fill RELIABILITY.md) or to the session's temp dir."""
    before = Counter(COUNTS)
    yield
    mine = {k: COUNTS[k] - before[k] for k in COUNTS if COUNTS[k] > before[k]}
    name = Path(request.module.__file__).stem
    where = Path(os.environ.get("ICL_STL_RELIABILITY_DIR")
                 or tmp_path_factory.getbasetemp())
    where.mkdir(parents=True, exist_ok=True)
    (where / f"{name}.json").write_text(json.dumps(mine, indent=1))
    print(f"\n{name} counts: {mine}")


# ---------------------------------------------------------------------------------------------
# Fixed kill points (make test)


def test_train_killed_at_three_points_resumes_exactly(tmp_path, tmp_path_factory):
    ref = reference("train", tmp_path_factory).summary
    # step 15 (last checkpoint: 10); the 2nd save after resuming, between rotating train.pt to
    # train.prev.pt and writing the new one (step 30); the first evaluation batch.
    first = cli("train", tmp_path, fault="train_step:15")
    check_killed(first, "train_step:15")
    second = cli("train", tmp_path, fault="checkpoint_write:2")
    check_killed(second, "checkpoint_write:2")
    assert "resumed at step 10" in output(second)
    assert "taking over stale lock" in output(second)  # the killed run's lock is recognised
    third = cli("train", tmp_path, fault="evaluate:1")
    check_killed(third, "evaluate:1")
    assert "a save was interrupted" in output(third) and "resumed at step 20" in output(third)
    check_ok(cli("train", tmp_path))
    check_same_result("train", tmp_path / "out", tmp_path / "ck", ref)


def test_loop_killed_at_four_points_resumes_exactly(tmp_path, tmp_path_factory):
    ref, reached, _ = reference("loop", tmp_path_factory)
    assert reached["label_position"] >= 2 and reached["evaluate"] >= 3
    kills = ["label_position:2",  # labelling generation 1
             "train_step:25",  # generation 1, step 25 (resumes at 20)
             "generation_end:1",  # generation 1 written, its resume point not yet removed
             "evaluate:3"]  # generation 2's train-risk evaluation
    for fault in kills:
        check_killed(cli("loop", tmp_path, fault=fault), fault)
    check_ok(cli("loop", tmp_path))
    check_same_result("loop", tmp_path / "out", tmp_path / "ck", ref)


def test_sweep_job_killed_resumes_exactly(tmp_path, tmp_path_factory):
    # The basic launcher runs the jobs of a sweep one after another in one process: the kill
    # lands in job 1 (step 15, after job 0's 40 steps); the same sweep command is run again.
    refs = [seeded("train", tmp_path_factory, s).summary for s in (0, 1)]
    check_killed(cli("train", tmp_path, "seed=0,1", multirun=True, fault="train_step:55"),
                 "train_step:55")
    assert (tmp_path / "out" / "0" / "summary.json").exists()  # job 0 had finished
    check_ok(cli("train", tmp_path, "seed=0,1", multirun=True))
    for job, ref in enumerate(refs):
        check_same_result("train", tmp_path / "out" / str(job), tmp_path / "ck", ref)


def test_fault_spec_is_validated(monkeypatch):
    monkeypatch.setenv("ICL_STL_FAULT", "train_step:x")
    with pytest.raises(ValueError, match="point:N"):
        faults.fault_point("train_step")
    monkeypatch.setenv("ICL_STL_FAULT", "nan_loss:2-3")
    faults.reset()
    values = [faults.poison("nan_loss", torch.ones(2)) for _ in range(4)]
    assert [bool(v.isnan().all()) for v in values] == [False, True, True, False]
    faults.reset()


# ---------------------------------------------------------------------------------------------
# Random kill points (make test-all)


def _draw_fault(rng: random.Random, reached: dict[str, int]) -> str:
    point = rng.choice(sorted(p for p, n in reached.items() if n > 0 and p != "nan_loss"))
    return f"{point}:{rng.randint(1, reached[point])}"


@pytest.mark.slow
@pytest.mark.parametrize("index", range(20))
def test_random_kill_resumes_exactly(index, tmp_path, tmp_path_factory):
    rng = random.Random(FAULT_SEED * 1000 + index)
    kind = rng.choice(["train", "loop", "sweep"])
    if kind == "sweep":  # the two jobs run in one process: their counts add up
        parts = [seeded("train", tmp_path_factory, s) for s in (0, 1)]
        refs = [p.summary for p in parts]
        reached = Counter(parts[0].reached) + Counter(parts[1].reached)
    else:
        ref, reached, _ = reference(kind, tmp_path_factory)
        refs = [ref]
    first = _draw_fault(rng, reached)
    second = _draw_fault(rng, reached) if rng.random() < 0.5 else None
    print(f"ICL_STL_FAULT_SEED={FAULT_SEED} scenario {index}: {kind}, kill at {first}, "
          f"then {second}")
    cli_kind, extra = ("train", ["seed=0,1"]) if kind == "sweep" else (kind, [])
    multirun = kind == "sweep"
    check_killed(cli(cli_kind, tmp_path, *extra, multirun=multirun, fault=first), first)
    if second is not None:  # the resumed run reaches fewer points: this kill may not happen
        proc = cli(cli_kind, tmp_path, *extra, multirun=multirun, fault=second)
        if proc.returncode != 0:
            check_killed(proc, second)
    check_ok(cli(cli_kind, tmp_path, *extra, multirun=multirun))
    for job, ref in enumerate(refs):
        run_dir = tmp_path / "out" / str(job) if multirun else tmp_path / "out"
        check_same_result(cli_kind, run_dir, tmp_path / "ck", ref)


# ---------------------------------------------------------------------------------------------
# submitit (make test-all): the launcher used on SLURM, run locally


@pytest.mark.slow
def test_submitit_preempted_job_is_requeued_and_resumes_exactly(tmp_path, tmp_path_factory):
    # SIGUSR2 is what SLURM sends before preempting; submitit's handler calls the launcher's
    # checkpoint() (a DelayedSubmission of the same job) and the local executor requeues it in
    # a fresh process, exactly as on a cluster. ONCE keeps the requeued job from firing again.
    refs = [seeded("loop", tmp_path_factory, s).summary for s in (0, 1)]
    env = clean_env(ICL_STL_FAULT="train_step:45:preempt",
                    ICL_STL_FAULT_ONCE=str(tmp_path / "preempted"))
    proc = cli("loop", tmp_path, "hydra/launcher=local", "seed=0,1", multirun=True, env=env)
    check_ok(proc)
    assert (tmp_path / "preempted").exists()
    logs = "".join(p.read_text(errors="replace")
                   for p in (tmp_path / "out" / ".submitit").rglob("*") if p.is_file()
               and p.suffix in (".out", ".err"))
    assert "Calling checkpoint method" in logs and "Requeued job" in logs
    assert "resumed at step 10" in logs  # the requeued job continued from its checkpoint
    COUNTS["preemptions_requeued"] += 1
    for job, ref in enumerate(refs):
        check_same_result("loop", tmp_path / "out" / str(job), tmp_path / "ck", ref)


@pytest.mark.slow
def test_submitit_killed_job_resumes_when_the_sweep_is_rerun(tmp_path, tmp_path_factory):
    # A SIGKILLed job is not requeued (no signal to catch): the sweep fails and the same sweep
    # command, run again, resumes it from its checkpoints.
    refs = [seeded("loop", tmp_path_factory, s).summary for s in (0, 1)]
    env = clean_env(ICL_STL_FAULT="label_position:3", ICL_STL_FAULT_ONCE=str(tmp_path / "killed"))
    proc = cli("loop", tmp_path, "hydra/launcher=local", "seed=0,1", multirun=True, env=env)
    assert proc.returncode != 0 and (tmp_path / "killed").exists(), proc.stderr[-3000:]
    COUNTS["kills"] += 1
    check_ok(cli("loop", tmp_path, "hydra/launcher=local", "seed=0,1", multirun=True))
    for job, ref in enumerate(refs):
        check_same_result("loop", tmp_path / "out" / str(job), tmp_path / "ck", ref)
