"""icl-stl-train: train one in-context learner and evaluate it against the baselines.

    icl-stl-train model=tiny task.d=5 train.steps=500 logger.mode=disabled
"""

from __future__ import annotations

from omegaconf import DictConfig

from icl_stl.cli.common import (
    hydra_app,
    hydra_output_dir,
    load_app_config,
    make_logger,
    run_name,
    runtime_options,
)
from icl_stl.config import ConfigError
from icl_stl.persistence import RunLock
from icl_stl.runs.train import run_training


def train_from_config(cfg: DictConfig, output_dir) -> dict:
    """Everything `icl-stl-train` does, with the output directory given (compose-API friendly)."""
    from pathlib import Path

    app = load_app_config(cfg)
    if app.task.n_tasks is not None:  # a pool is the loop's: training here would ignore it
        raise ConfigError(f"task.n_tasks must be null for icl-stl-train (task pools are a loop "
                          f"setting, icl-stl-loop), got {app.task.n_tasks!r}")
    runtime = runtime_options(app.runtime)  # validated before anything is written
    name = run_name(app, "train")
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    with RunLock(output_dir), make_logger(app, output_dir, name, "train") as logger:
        return run_training(app, output_dir, Path(app.run.checkpoint_root) / name, runtime, logger)


def check_settings(cfg: DictConfig) -> None:
    """What `train_from_config` checks before it writes anything (run by the preflight)."""
    runtime_options(load_app_config(cfg).runtime)


@hydra_app("train", check=check_settings)
def main(cfg: DictConfig) -> None:
    train_from_config(cfg, hydra_output_dir())


if __name__ == "__main__":
    main()
