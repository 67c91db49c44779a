"""Shared fixtures: tiny settings, Hydra composition, and console-script runs in a subprocess."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from icl_stl.cli.common import CONFIG_DIR
from icl_stl.config import ModelConfig, TrainConfig
from icl_stl.data.seeding import make_generator
from icl_stl.data.tasks import LinearRegression

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent  # console scripts live beside the venv's python
TRAIN_CLI = str(BIN / "icl-stl-train")
LOOP_CLI = str(BIN / "icl-stl-loop")

# The smallest settings that still exercise every code path; a CLI run takes seconds of compute
# (most of its wall time is importing torch and transformers on a loaded machine).
TINY_TRAIN = ["model=tiny", "task.d=2", "task.k=5", "train.steps=30", "train.log_every=10",
              "train.warmup_steps=5", "data.n=32", "eval.n_prompts=64", "eval.batch_size=64",
              "logger.mode=disabled"]
TINY_LOOP = [*TINY_TRAIN, "train.steps=20", "data.n=16", "loop.generations=1"]

CLI_TIMEOUT_S = 600

# One intra-op thread: on a shared 2-core machine two threads per process mostly wait on each
# other (a tiny model trains several times faster this way). Results stay deterministic.
torch.set_num_threads(1)


@pytest.fixture
def kept(monkeypatch):
    """The figures plotting code closes, kept open to be read, and closed after the test (every
    module draws through matplotlib.pyplot, `icl_stl.runs.plots.plt`)."""
    from icl_stl.runs.plots import plt

    close, figures = plt.close, []
    monkeypatch.setattr(plt, "close", figures.append)
    yield figures
    for fig in figures:
        close(fig)


@pytest.fixture(autouse=True)
def _no_fault_injection(monkeypatch):
    """A fault spec left in the environment would SIGKILL the test process itself."""
    monkeypatch.delenv("ICL_STL_FAULT", raising=False)


def compose_cfg(config_name: str, *overrides: str) -> DictConfig:
    """Compose conf/<config_name>.yaml with Hydra's compose API (no output directory)."""
    with initialize_config_dir(version_base="1.3", config_dir=CONFIG_DIR):
        return compose(config_name, overrides=list(overrides))


def compose_train(tmp_path: Path, *overrides: str) -> DictConfig:
    """The tiny `train` config with its checkpoints under tmp_path, plus `overrides`."""
    return compose_cfg("train", *TINY_TRAIN, f"run.checkpoint_root={tmp_path}/ck", *overrides)


def compose_loop(tmp_path: Path, *overrides: str) -> DictConfig:
    """The tiny `loop` config with its checkpoints under tmp_path, plus `overrides`."""
    return compose_cfg("loop", *TINY_LOOP, f"run.checkpoint_root={tmp_path}/ck", *overrides)


def run_cli(script: str, *args: str, fault: str | None = None,
            timeout: int = CLI_TIMEOUT_S) -> subprocess.CompletedProcess:
    """Run a console script with `args`; `fault` sets ICL_STL_FAULT (e.g. "train_step:25")."""
    env = {k: v for k, v in os.environ.items() if k != "ICL_STL_FAULT"}
    env.update(WANDB_MODE="disabled", OMP_NUM_THREADS="1", HYDRA_FULL_ERROR="0")
    if fault is not None:
        env["ICL_STL_FAULT"] = fault
    return subprocess.run([script, *args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=timeout)


def check_ok(proc: subprocess.CompletedProcess) -> None:
    """Fail with the child's stderr when a run that should succeed did not."""
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stderr[-4000:]}"


def cli_args(base: list[str], root: Path, out: str, *extra: str) -> list[str]:
    """`base` overrides with checkpoints in root/ck and the Hydra run dir root/<out>."""
    return [*base, f"run.checkpoint_root={root}/ck", f"hydra.run.dir={root}/{out}", *extra]


# The CLI runs shared by several test files (each costs ~20 s of wall time on a loaded machine):
# train with mid-run checkpoints every 10 steps, and a two-generation loop checkpointing often
# enough that a kill inside generation 1 resumes from a mid-training state.
TRAIN_CLI_OVERRIDES = [*TINY_TRAIN, "train.checkpoint_every=10"]
LOOP_CLI_OVERRIDES = [*TINY_LOOP, "loop.generations=2", "train.checkpoint_every=5"]


def made_once(factory: pytest.TempPathFactory, name: str, make: Callable[[Path], None]) -> Path:
    """The directory `name`, filled by `make` once per test session and then only read.

    Under pytest-xdist (make test) each worker has its own session: the workers share one
    directory beside their temp dirs, the first to ask fills it under a file lock and the others
    wait for it, so an artefact several test files read is computed once, not once per worker."""
    base = factory.getbasetemp()
    root = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    target = root / name
    with open(root / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (root / f"{name}.done").exists():
            shutil.rmtree(target, ignore_errors=True)  # a worker that failed to make it
            target.mkdir()
            make(target)
            (root / f"{name}.done").touch()
    return target


@pytest.fixture(scope="session")
def train_cli_run(tmp_path_factory) -> Path:
    """An uninterrupted `icl-stl-train` run; returns its run directory."""
    def make(root: Path) -> None:
        check_ok(run_cli(TRAIN_CLI, *cli_args(TRAIN_CLI_OVERRIDES, root, "out")))

    return made_once(tmp_path_factory, "train_cli", make) / "out"


@pytest.fixture(scope="session")
def loop_cli_run(tmp_path_factory) -> Path:
    """An uninterrupted two-generation `icl-stl-loop` run; returns its run directory."""
    def make(root: Path) -> None:
        check_ok(run_cli(LOOP_CLI, *cli_args(LOOP_CLI_OVERRIDES, root, "out")))

    return made_once(tmp_path_factory, "loop_cli", make) / "out"


def read_summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


def without_paths(summary: dict) -> dict:
    """A summary minus fields that name where it was written (they differ between runs)."""
    return {k: v for k, v in summary.items() if k not in ("checkpoint", "checkpoint_dir")}


@pytest.fixture
def tiny_model() -> ModelConfig:
    """A 2-layer, width-16 GPT-2: big enough to mix positions, small enough to be instant."""
    return ModelConfig(n_layer=2, n_head=2, n_embd=16)


@pytest.fixture
def quick_train() -> TrainConfig:
    return TrainConfig(steps=20, batch_size=8, lr=3e-3, warmup_steps=3, log_every=5,
                       checkpoint_every=0)


@pytest.fixture
def linear_task() -> LinearRegression:
    return LinearRegression(d=3)


def gens(seed: int, count: int, *keys: object) -> list[torch.Generator]:
    """`count` independent init generators, one per ensemble member."""
    return [make_generator(seed, "init", i, *keys) for i in range(count)]
