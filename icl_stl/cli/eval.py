"""icl-stl-eval: evaluate a finished model checkpoint on fresh test prompts, training nothing.

    icl-stl-eval checkpoint=checkpoints/train-1a2b3c4d5e/train.pt
    icl-stl-eval checkpoint=checkpoints/loop-0123456789/gen_005/model.pt member=2 seed=7
    icl-stl-eval -m checkpoint=checkpoints/loop-0123456789/gen_005/model.pt member=0,1,2,3

Writes eval.json (per-position errors of the model and the baselines, the gap closed toward
ridge) and positions.png into the Hydra run directory (outputs/eval/<date>/<time>/). The model
and task come from the checkpoint; a model or task setting on the command line must agree with
it. The evaluation settings and the test prompts' seed are the run's own unless given, and a
given one that departs from the run's is said (`icl_stl.runs.evaluate`).
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from icl_stl.cli.common import hydra_app, hydra_output_dir, runtime_options
from icl_stl.config import ConfigError, from_container
from icl_stl.models.stored import load_stored_model
from icl_stl.persistence import RunLock
from icl_stl.runs.evaluate import (
    EvalRunConfig,
    eval_settings,
    evaluate_stored_model,
    refuse_conflicting_settings,
)


def load_eval_config(cfg: DictConfig) -> EvalRunConfig:
    """The validated settings of `icl-stl-eval` (a ConfigError names any bad one)."""
    try:
        container = OmegaConf.to_container(cfg, resolve=True)
    except Exception as err:  # an interpolation or a value OmegaConf cannot resolve
        raise ConfigError(f"the config cannot be resolved: {err}") from None
    settings = from_container(EvalRunConfig, container, "")
    settings.validate()
    return settings


def eval_from_config(cfg: DictConfig, output_dir) -> dict:
    """Everything `icl-stl-eval` does, with the output directory given (compose-API friendly).
    Every input is checked, and the model loaded, before anything is written."""
    settings = load_eval_config(cfg)
    runtime = runtime_options(settings.runtime)
    stored = load_stored_model(settings.checkpoint, settings.member)
    refuse_conflicting_settings(settings, stored)
    eval_settings(settings, stored)  # the run's own are readable
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    with RunLock(output_dir):
        return evaluate_stored_model(stored, settings, runtime, output_dir)


def check_settings(cfg: DictConfig) -> None:
    """What `eval_from_config` checks before it writes anything (run by the preflight): the
    settings, and that the checkpoint is a finished model that fits them."""
    settings = load_eval_config(cfg)
    runtime_options(settings.runtime)
    stored = load_stored_model(settings.checkpoint, settings.member)
    refuse_conflicting_settings(settings, stored)
    eval_settings(settings, stored)


@hydra_app("eval", check=check_settings)
def main(cfg: DictConfig) -> None:
    eval_from_config(cfg, hydra_output_dir())


if __name__ == "__main__":
    main()
