"""Crash-safe persistence: every durable artefact of a run goes through this package, so that
the project's guarantees hold in one place.

* :mod:`.files`: a file is replaced atomically and durably (a reader sees the old version or
  the new one, never a mix; a failed write leaves the previous version intact); an append-only
  JSONL log loses at most its last, partial line when the writer is killed.
* :mod:`.checkpoints`: a checkpoint carries its own SHA-256, so a damaged file is detected on
  load instead of resuming from garbage, and :class:`CheckpointSlot` keeps the previous good
  checkpoint to fall back on.
* :mod:`.locks`: :class:`RunLock` keeps two processes from writing the same run directory at
  once; the lock of a killed process is taken over.

Errors (:mod:`.errors`) name the path involved and what is wrong with it.
"""

from icl_stl.persistence.checkpoints import CheckpointSlot, load_state, save_state
from icl_stl.persistence.errors import (
    CorruptCheckpointError,
    CorruptFileError,
    MissingCheckpointError,
    PersistenceError,
    RunLockedError,
)
from icl_stl.persistence.files import (
    append_jsonl,
    atomic_write_bytes,
    atomic_write_json,
    read_json,
    read_jsonl,
)
from icl_stl.persistence.locks import RunLock

__all__ = [
    "CheckpointSlot",
    "CorruptCheckpointError",
    "CorruptFileError",
    "MissingCheckpointError",
    "PersistenceError",
    "RunLock",
    "RunLockedError",
    "append_jsonl",
    "atomic_write_bytes",
    "atomic_write_json",
    "load_state",
    "read_json",
    "read_jsonl",
    "save_state",
]
