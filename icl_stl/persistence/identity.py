"""What a run is: the settings its name hashes and its checkpoint must match to be resumed, and
one line saying what differs when they do not.

Every identity (a run's name, a loop's checkpoint) holds the settings that change results and
leaves out those that do not:
- `train.log_every` and `train.checkpoint_every` are cadence only;
- `loop.label_batch_size` and `loop.share_generation_0` change the work, not the numbers, and
  `loop.generations` is how far a loop runs: growing it continues the same loop;
- `loop.warmup_steps` is left out while null (train.warmup_steps), and the settings of
  `config.EXTENSION_DEFAULTS` while at their defaults, so that runs made before those settings
  existed keep their names and resume.
"""

from __future__ import annotations

import dataclasses
import json

from icl_stl import RESULTS_VERSION
from icl_stl.config import (
    AppConfig,
    EvalConfig,
    LoopConfig,
    ModelConfig,
    TaskConfig,
    TrainConfig,
    omit_extension_defaults,
)

CADENCE_KEYS = ("log_every", "checkpoint_every")
LOOP_KEYS_NOT_IN_IDENTITY = ("generations", "label_batch_size", "share_generation_0")
SECTIONS_NOT_IN_RUN_NAME = ("logger", "runtime", "run")  # where and how, not what


def train_identity(train: TrainConfig) -> dict:
    """The training settings that change results (everything but the logging cadence)."""
    out = {k: v for k, v in dataclasses.asdict(train).items() if k not in CADENCE_KEYS}
    if out.get("held_out_fraction") == 0.0:  # off: identities from before the setting hold
        del out["held_out_fraction"]
    return out


def loop_identity(loop: LoopConfig) -> dict:
    """The loop settings that change results (module doc)."""
    out = {k: v for k, v in dataclasses.asdict(loop).items()
           if k not in LOOP_KEYS_NOT_IN_IDENTITY}
    if out["warmup_steps"] is None:
        del out["warmup_steps"]
    return out


def loop_checkpoint_identity(task: TaskConfig, model: ModelConfig, train: TrainConfig,
                             eval_cfg: EvalConfig, loop: LoopConfig, seed: int) -> dict:
    """What a loop's checkpoint (loop.json) must match to be resumed; summary.json's settings."""
    return omit_extension_defaults(
        {"task": dataclasses.asdict(task), "model": dataclasses.asdict(model),
         "train": train_identity(train), "loop": loop_identity(loop),
         "eval_prompts": eval_cfg.n_prompts, "seed": seed, "results_version": RESULTS_VERSION})


def run_identity(app: AppConfig) -> dict:
    """What a run's default name hashes (`cli.common.settings_hash`): every section but where
    and how the run is logged and computed."""
    relevant = {k: v for k, v in dataclasses.asdict(app).items()
                if k not in SECTIONS_NOT_IN_RUN_NAME}
    relevant["train"] = train_identity(app.train)
    relevant["results_version"] = RESULTS_VERSION
    if app.loop is not None:
        relevant["loop"] = loop_identity(app.loop)
    return omit_extension_defaults(relevant)


def describe_differences(stored: object, current: object) -> str:
    """"train.lr: 0.001 in the checkpoint, 0.01 now; ..." for every differing dotted key."""
    def value_at(tree: object, key: str) -> object:
        for part in key.split(".") if key != "(value)" else []:
            if not isinstance(tree, dict) or part not in tree:
                return "(absent)"
            tree = tree[part]
        return tree

    def short(value: object) -> str:
        text = json.dumps(value, default=str) if not isinstance(value, str) else value
        return text if len(text) <= 40 else text[:37] + "..."

    return "; ".join(f"{key}: {short(value_at(stored, key))} in the checkpoint, "
                     f"{short(value_at(current, key))} now"
                     for key in differing_keys(stored, current))


def differing_keys(stored: object, current: object, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two nested dicts of settings ("train.lr"); a key
    present in only one of them counts. Non-dict values are compared whole."""
    if not (isinstance(stored, dict) and isinstance(current, dict)):
        return [] if stored == current else [prefix or "(value)"]
    out = []
    for key in sorted(set(stored) | set(current), key=str):
        name = f"{prefix}.{key}" if prefix else str(key)
        if key not in stored or key not in current:
            out.append(name)
        else:
            out += differing_keys(stored[key], current[key], name)
    return out
