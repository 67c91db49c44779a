"""What a loop's W&B runs left on disk: the resume file and W&B's own run files.

The resume file, ``wandb.json`` in the loop's checkpoint directory (beside ``loop.json``: the
same command after a kill finds it there, whatever Hydra names the new output directory):

    {"job": "<run id>", "members": {"<member run name>": "<run id>", ...},
     "dirs": ["<run_dir>/wandb", ...], "logged_through": 4}

``dirs`` lists every W&B directory a process of this loop wrote to; ``logged_through`` is the last
generation whose records were appended to ``metrics.jsonl`` and handed to W&B, written after
they were. A resumed loop logs each finished generation its runs do not hold yet.

"Handed to W&B" is not "on disk": W&B's service buffers a run's ``.wandb`` file (flushed every
``x_transaction_log_flush_interval``, 15 s by default) and a SIGKILL loses the buffer. So for an
offline run the generations it holds are read back from its ``.wandb`` files
(:func:`logged_generations`); online, where the server holds the history, ``logged_through``
is trusted.

A ``.wandb`` file is a LevelDB-format log (32 KiB blocks of chunks, each with a 7-byte header:
CRC, length, type) after a 7-byte W&B header, whose records are ``wandb_internal_pb2.Record``
protobufs (:func:`read_records`). A killed writer leaves a truncated tail: it is ignored.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from icl_stl.persistence import CorruptFileError, atomic_write_json, read_json

RESUME_FILE = "wandb.json"

_HEADER = struct.Struct("<4sHB")  # ":W&B", magic, version
_CHUNK = struct.Struct("<IHB")  # crc32c, length, type
_BLOCK = 32 * 1024
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


@dataclass
class ResumeState:
    """The loop's W&B runs across processes (see the module doc); empty for a new loop."""

    path: Path
    job: str | None = None
    members: dict[str, str] = field(default_factory=dict)
    dirs: list[str] = field(default_factory=list)
    logged_through: int = -1

    @classmethod
    def load(cls, path: Path) -> ResumeState:
        """The state in `path`; an empty one if it is missing or unreadable (new W&B runs)."""
        try:
            data = read_json(path)
            return cls(path, job=data.get("job"), members=dict(data.get("members") or {}),
                       dirs=list(data.get("dirs") or []),
                       logged_through=int(data.get("logged_through", -1)))
        except (FileNotFoundError, CorruptFileError, AttributeError, TypeError, ValueError):
            return cls(path)

    def save(self) -> None:
        atomic_write_json(self.path, {"job": self.job, "members": self.members,
                                      "dirs": self.dirs, "logged_through": self.logged_through})


def _chunks(data: bytes) -> Iterator[tuple[int, bytes]]:
    pos = _HEADER.size
    while pos + _CHUNK.size <= len(data):
        left = _BLOCK - pos % _BLOCK
        if left < _CHUNK.size:  # a block's tail too short for a header is padding
            pos += left
            continue
        _, length, kind = _CHUNK.unpack_from(data, pos)
        if kind == 0:  # zero padding (preallocated or a block written short)
            pos += left
            continue
        body = data[pos + _CHUNK.size:pos + _CHUNK.size + length]
        if len(body) < length:  # truncated by a kill
            return
        yield kind, body
        pos += _CHUNK.size + length


def read_records(path: Path, limit: int | None = None) -> Iterator[Any]:
    """The ``wandb_internal_pb2.Record`` messages of the ``.wandb`` file at `path` (of its first
    `limit` bytes if given)."""
    from wandb.proto import wandb_internal_pb2

    with open(path, "rb") as f:
        data = f.read(-1 if limit is None else limit)
    if len(data) < _HEADER.size or _HEADER.unpack_from(data)[0] != b":W&B":
        raise CorruptFileError(f"{path} is not a W&B run file (no :W&B header)")
    pending: bytes | None = None
    for kind, body in _chunks(data):
        if kind == _FULL:
            raw = body
        elif kind == _FIRST:
            pending = body
            continue
        elif kind == _MIDDLE and pending is not None:
            pending += body
            continue
        elif kind == _LAST and pending is not None:
            raw, pending = pending + body, None
        else:
            continue
        record = wandb_internal_pb2.Record()
        try:
            record.ParseFromString(raw)
        except Exception:  # a chunk cut by a kill; what precedes it is intact
            return
        yield record


def history_rows(path: Path) -> Iterator[dict[str, Any]]:
    """Each ``run.log`` row of the ``.wandb`` file at `path`, as a dict of its values."""
    for record in read_records(path):
        if record.WhichOneof("record_type") == "history":
            yield {("/".join(item.nested_key) if item.nested_key else item.key):
                   json.loads(item.value_json) for item in record.history.item}


def run_files(dirs: Iterable[str | Path], run_id: str) -> list[Path]:
    """The ``.wandb`` files of the offline run `run_id` under the W&B directories `dirs`, in the
    order they were started (W&B names their directories by start time)."""
    found = {f for d in dirs for f in Path(d).glob(f"offline-run-*-{run_id}/run-{run_id}.wandb")}
    return sorted(found, key=lambda f: f.parent.name)


def logged_generations(dirs: Iterable[str | Path], run_id: str) -> set[int]:
    """The generations whose ``gen/*`` values are in the offline run `run_id`'s history."""
    return {int(row["generation"]) for f in run_files(dirs, run_id) for row in history_rows(f)
            if "generation" in row and any(k.startswith("gen/") for k in row)}


@dataclass(frozen=True)
class RunInfo:
    """Where a run's W&B data goes: what a report run of the same group needs."""

    project: str
    group: str
    mode: str  # offline or online


def find_runs(paths: Iterable[Path]) -> list[RunInfo]:
    """The W&B runs of the run directories under `paths` (from their ``.wandb`` files: a run
    logged with ``logger.mode=disabled`` has none), in path order."""
    found = []
    for root in paths:
        for f in sorted(Path(root).rglob("run-*.wandb")):
            try:  # the run record comes first, after the header
                run = next((r.run for r in read_records(f, _BLOCK)
                            if r.WhichOneof("record_type") == "run"), None)
            except (OSError, CorruptFileError):
                continue
            if run is not None:
                mode = "offline" if f.parent.name.startswith("offline-run-") else "online"
                found.append(RunInfo(run.project, run.run_group, mode))
    return found
