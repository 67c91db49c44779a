"""W&B plumbing shared by the run logger: values as JSON types, settings, quiet failures, and the
per-loop config of a member run."""

from __future__ import annotations

import copy
import dataclasses
import enum
import sys
from collections.abc import Mapping
from pathlib import PurePath
from typing import Any

# How long run.finish() may spend uploading before giving up (the data stays on disk for
# `wandb sync`). Without a bound a network outage at the end of a run would hang it forever.
FINISH_TIMEOUT_S = 120.0


def plain(value: Any, where: str, *, strict: bool) -> Any:
    """`value` as JSON types.

    Numpy scalars and one-element tensors become Python numbers, tuples and sets lists, paths
    strings, enums their value, dataclasses dicts. Anything else raises ``TypeError`` naming
    `where` if `strict`, else becomes its ``repr`` (used for configs, which must always log).
    """
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, Mapping):
        return {str(k): plain(v, f"{where}.{k}", strict=strict) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v, f"{where}[{i}]", strict=strict) for i, v in enumerate(value)]
    if isinstance(value, (set, frozenset)):
        return [plain(v, where, strict=strict) for v in sorted(value, key=repr)]
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, enum.Enum):
        return plain(value.value, where, strict=strict)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return plain(dataclasses.asdict(value), where, strict=strict)
    item = getattr(value, "item", None)
    if callable(item):  # numpy scalar, or a tensor/array with one element
        numel = getattr(value, "numel", None)  # torch: .size is a method, .numel() the count
        count = numel() if callable(numel) else getattr(value, "size", None)
        if count == 1:
            return plain(item(), where, strict=strict)
    if strict:
        raise TypeError(
            f"{where} is a {type(value).__module__}.{type(value).__qualname__}, which cannot be "
            "logged; use numbers, strings, lists or dicts (one-element tensors are accepted)"
        )
    return repr(value)


def isatty(stream: Any) -> bool:
    try:
        return bool(stream is not None and stream.isatty())
    except (AttributeError, ValueError, OSError):  # replaced or closed streams
        return False


def could_prompt() -> bool:
    """Whether W&B would ask for an API key interactively (a terminal, or a notebook)."""
    return (isatty(sys.stdin) and isatty(sys.stderr)) or "ipykernel" in sys.modules


def cause(exc: BaseException) -> str:
    """`exc` on one line (W&B's messages span several)."""
    return f"{type(exc).__name__}: {' '.join(str(exc).split())}"


def present(values: Mapping[str, Any]) -> dict[str, Any]:
    """The entries of `values` that are not None (missing, rather than null, on a W&B chart)."""
    return {k: v for k, v in values.items() if v is not None}


def finish_quietly(run: Any, exit_code: int) -> None:
    try:
        run.finish(exit_code=exit_code)
    except Exception:  # already failing; the warning given is the report
        pass


def wandb_settings(wandb: Any, init_timeout_s: float) -> Any:
    wanted: dict[str, Any] = {
        "init_timeout": init_timeout_s,
        "finish_timeout": FINISH_TIMEOUT_S,
        # Quiet, and no stdout/stderr capture: it interferes with Hydra's and pytest's own
        # handling of the console and the run's log file already holds it.
        "silent": True,
        "console": "off",
    }
    known = getattr(wandb.Settings, "model_fields", None)
    if known:  # older wandb versions lack some settings; drop rather than fail
        wanted = {k: v for k, v in wanted.items() if k in known}
    return wandb.Settings(**wanted)


def member_config(job: Mapping[str, Any], settings: Mapping[str, Any], member: Mapping[str, Any],
                  job_name: str | None) -> dict[str, Any]:
    """The W&B config of one loop of a job: the job's config with the loop's own `settings`
    (dotted paths such as ``loop.real_fraction``) at their places, so that the UI groups and
    filters by them; `member` under ``member``; the job's name and the values the loop replaced
    under ``job``."""
    config = copy.deepcopy(dict(job))
    replaced: dict[str, Any] = {}
    for path, value in settings.items():
        *parents, leaf = path.split(".")
        node, old = config, replaced
        for key in parents:
            node = node.setdefault(key, {})
            old = old.setdefault(key, {})
        old[leaf] = node.get(leaf)
        node[leaf] = value
    return {**config, "member": dict(member), "job": {"name": job_name, **replaced}}
