"""A finished model read back from its checkpoint, with the settings it was trained under.

Two kinds of checkpoint hold a finished model, and both carry their settings, so nothing about
the model has to be restated to use it:

- a train run's `checkpoints/<run>/train.pt` (`icl_stl.runs.train`): the training state, whose
  `identity` holds the task, model and train settings and the run's seed;
- a loop generation's `checkpoints/<run>/gen_XXX/model.pt` (`icl_stl.loop.runner`): the
  weights of the loop's K members; `checkpoints/<run>/loop.json` holds their settings and one
  record per member (its seed, lambda, n and m).

Anything else (a path that does not exist, a mid-training state, a member index the checkpoint
does not hold) is a ConfigError naming the setting and its value.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from icl_stl import RESULTS_VERSION
from icl_stl.config import ConfigError, ModelConfig, TaskConfig, check_int, from_container
from icl_stl.models import build_ensemble
from icl_stl.models.ensemble import Ensemble
from icl_stl.persistence import PersistenceError, load_state, read_json

TRAIN_FILE = "train.pt"  # a train run's final (or mid-training) state
GENERATION_FILE = "model.pt"  # a finished loop generation's weights
GENERATION_DIR = re.compile(r"gen_(\d+)")
KINDS = "a train run's train.pt or a loop generation's gen_XXX/model.pt"

log = logging.getLogger(__name__)


@dataclass
class StoredModel:
    """One member of a checkpoint as a one-member ensemble (on the CPU, in eval mode)."""

    model: Ensemble
    task: TaskConfig
    model_settings: ModelConfig
    run_seed: int  # the seed of the run that wrote it: its test prompts were drawn under it
    source: dict  # where it came from: kind, path, member, generation, the member's record


def load_stored_model(checkpoint: str | Path | None, member: int) -> StoredModel:
    """Member `member` of the finished model at `checkpoint` (a file, or the directory that holds
    train.pt or model.pt), built from the settings stored with it."""
    check_int("member", member, 0)
    path = resolve_checkpoint(checkpoint)
    generation = GENERATION_DIR.fullmatch(path.parent.name)
    if path.name == GENERATION_FILE and generation and (path.parents[1] / "loop.json").exists():
        stored = _load_generation(path, int(generation[1]), member)
    else:
        stored = _load_train_run(path, member)
    version = stored.source["results_version"]
    if version != RESULTS_VERSION:  # same weights, but the code around them has changed
        log.warning("%s was written by results_version %s and this code is results_version %s: "
                    "its numbers may differ from those its run reported", path, version,
                    RESULTS_VERSION)
    return stored


def resolve_checkpoint(checkpoint: str | Path | None) -> Path:
    """The checkpoint file `checkpoint` names (a directory stands for the model file in it)."""
    if checkpoint is None or str(checkpoint) == "":
        raise ConfigError(f"checkpoint must be the path of a finished model ({KINDS}), got None")
    path = Path(checkpoint)
    if not path.exists():
        raise ConfigError(f"checkpoint must be an existing file or directory ({KINDS}), got "
                          f"'{path}'")
    if path.is_dir():
        found = [path / name for name in (TRAIN_FILE, GENERATION_FILE) if (path / name).is_file()]
        if not found:
            raise ConfigError(f"checkpoint must hold {TRAIN_FILE} or {GENERATION_FILE}, got "
                              f"'{path}'{_hint(path)}")
        path = found[0]
    return path


def _hint(directory: Path) -> str:
    """Where the model is, for a directory that names a run rather than its model file."""
    loop_dir = directory
    if (directory / "summary.json").is_file():  # a run's output directory names its checkpoint
        try:
            summary = read_json(directory / "summary.json")
        except (OSError, PersistenceError):  # no hint is better than a second error
            return ""
        if summary.get("checkpoint"):
            return f"; it is a train run's output: its model is checkpoint={summary['checkpoint']}"
        loop_dir = Path(summary.get("checkpoint_dir") or directory)
    if (loop_dir / "loop.json").exists():
        return (f"; its loop's generations are in {loop_dir}: choose one, e.g. "
                f"checkpoint={loop_dir}/gen_000/{GENERATION_FILE}")
    return ""


def _check_member(member: int, count: int, path: Path) -> None:
    if member >= count:
        raise ConfigError(f"member must be an integer in [0, {count - 1}] ({path} holds {count} "
                          f"model{'s' if count > 1 else ''}), got {member}")


def _settings(cls: type, stored: object, name: str, path: Path):
    """Settings stored in a checkpoint as the dataclass of the current code."""
    try:
        settings = from_container(cls, stored, name)
        settings.validate()
    except ConfigError as err:
        raise ConfigError(f"checkpoint {path} stores {name} settings this version of icl-stl "
                          f"cannot read ({err})") from None
    return settings


def _load_train_run(path: Path, member: int) -> StoredModel:
    state = load_state(path)
    identity = state.get("identity") or {}
    if "task" not in identity or "model" not in identity:
        what = (f"generation {identity['generation']}'s mid-training state; once the generation "
                f"has finished, use its {GENERATION_FILE}" if "generation" in identity
                else "not a model checkpoint of icl-stl-train or icl-stl-loop")
        raise ConfigError(f"checkpoint must be {KINDS}, got '{path}': {what}")
    steps = identity.get("train", {}).get("steps")
    if steps is not None and state.get("step", 0) < steps:
        raise ConfigError(f"checkpoint must be a finished model, got '{path}': training stopped "
                          f"at step {state.get('step')} of train.steps={steps} (the same "
                          f"icl-stl-train command finishes it)")
    _check_member(member, 1, path)
    task = _settings(TaskConfig, identity["task"], "task", path)
    model_settings = _settings(ModelConfig, identity["model"], "model", path)
    ensemble = _build(model_settings, task, 1, state["model"], path)
    source = {"kind": "train", "path": str(path), "member": member, "generation": None,
              "steps": state.get("step"), "results_version": identity.get("results_version")}
    return StoredModel(ensemble, task, model_settings, identity["seed"], source)


def _load_generation(path: Path, generation: int, member: int) -> StoredModel:
    loop_file = path.parents[1] / "loop.json"
    stored = read_json(loop_file)
    settings, members = stored["settings"], stored["members"]
    _check_member(member, len(members), path)
    learner = settings.get("loop", {}).get("learner", "transformer")
    if learner != "transformer":
        raise ConfigError(f"checkpoint must hold a trained network, got '{path}': its loop was "
                          f"run with loop.learner={learner} (a closed-form learner)")
    task = _settings(TaskConfig, settings["task"], "task", loop_file)
    model_settings = _settings(ModelConfig, settings["model"], "model", loop_file)
    ensemble = _build(model_settings, task, len(members), load_state(path), path)
    source = {"kind": "loop", "path": str(path), "member": member, "generation": generation,
              "member_record": members[member],
              "finished": (path.parent / "metrics.json").exists(),
              "results_version": settings.get("results_version")}
    return StoredModel(ensemble.select([member]), task, model_settings, settings["seed"], source)


def _build(model_settings: ModelConfig, task: TaskConfig, members: int, weights: dict,
           path: Path) -> Ensemble:
    # Every parameter is overwritten by the stored weights: the initialisation stream is moot.
    shell = build_ensemble(model_settings, task.d, task.k,
                           [torch.Generator().manual_seed(0) for _ in range(members)])
    try:
        shell.load_state_dict(weights)
    except (RuntimeError, KeyError) as err:
        first = str(err).strip().splitlines()[0]
        raise ConfigError(f"checkpoint {path} does not fit the model its stored settings "
                          f"describe ({first})") from None
    return shell.eval()
