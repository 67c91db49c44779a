"""What a checkpoint must match to be resumed, and one line saying what differs when it does not.

Every identity (a run's, a loop's) holds the settings that change results and leaves out those
that do not: `train.log_every` and `train.checkpoint_every` are cadence only.
"""

from __future__ import annotations

import dataclasses
import json

from icl_stl.config import TrainConfig

CADENCE_KEYS = ("log_every", "checkpoint_every")


def train_identity(train: TrainConfig) -> dict:
    """The training settings that change results (everything but the logging cadence)."""
    return {k: v for k, v in dataclasses.asdict(train).items() if k not in CADENCE_KEYS}


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
