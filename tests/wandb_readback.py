"""Read offline W&B runs back from their own files, as `wandb sync` would upload them.

An offline run is one or more directories ``offline-run-<start time>-<run id>`` (one per
process: a resumed run adds one), each with a ``run-<id>.wandb`` file, W&B's transaction log
(`icl_stl.runs.wandb_files.read_records`). W&B 0.31 writes no ``files/config.yaml`` or
``wandb-summary.json`` offline, so the config and the history are read from the log's ``run``,
``config`` and ``history`` records; the segments of one id are read in start order, which is how
`wandb sync` uploads a resumed run.

W&B's service writes a run's file after `run.finish()` returns (measured with wandb 0.31: right
after it, half the files of a job still held only their header); a process exiting waits for
it, and so does `wandb.teardown()`, which the reader calls first for runs of this process.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from icl_stl.runs.wandb_files import read_records

INTERNAL = ("_step", "_timestamp", "_runtime")


@dataclass
class OfflineRun:
    id: str
    name: str = ""
    group: str = ""
    job_type: str = ""
    config: dict[str, Any] = field(default_factory=dict)
    rows: list[dict[str, Any]] = field(default_factory=list)  # run.log calls, W&B's keys aside
    segments: list[Path] = field(default_factory=list)

    def generations(self) -> list[int]:
        """The generation of every history row with gen/* values, in logged order."""
        return [r["generation"] for r in self.rows if any(k.startswith("gen/") for k in r)]


def _key(item: Any) -> list[str]:
    return list(item.nested_key) or [item.key]


def _apply(config: dict[str, Any], items: Any) -> None:
    for item in items:
        *parents, leaf = _key(item)
        node = config
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = json.loads(item.value_json)


def offline_runs(*roots: Path) -> dict[str, OfflineRun]:
    """Every offline run under `roots`, by id."""
    if "wandb" in sys.modules:
        sys.modules["wandb"].teardown()
    files = {f for root in roots for f in Path(root).rglob("offline-run-*/run-*.wandb")}
    runs: dict[str, OfflineRun] = {}
    # Directories are named by start time in seconds; two processes within a second are
    # ordered by when they last wrote.
    for f in sorted(files, key=lambda f: (f.parent.name, f.stat().st_mtime_ns)):
        run = runs.setdefault(f.parent.name.rsplit("-", 1)[1], OfflineRun(id=""))
        run.id = f.parent.name.rsplit("-", 1)[1]
        run.segments.append(f)
        for record in read_records(f):
            kind = record.WhichOneof("record_type")
            if kind == "run":
                run.name, run.group = record.run.display_name, record.run.run_group
                run.job_type = record.run.job_type
                _apply(run.config, record.run.config.update)
            elif kind == "config":
                _apply(run.config, record.config.update)
            elif kind == "history":
                row = {"/".join(_key(i)): json.loads(i.value_json) for i in record.history.item}
                run.rows.append({k: v for k, v in row.items() if k not in INTERNAL})
    return runs


def by_name(runs: dict[str, OfflineRun]) -> dict[str, OfflineRun]:
    named = {r.name: r for r in runs.values()}
    assert len(named) == len(runs), f"two runs of one name: {sorted(r.name for r in runs.values())}"
    return named
