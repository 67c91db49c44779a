"""Checksummed torch states and a checkpoint slot that keeps the previous good state."""

from __future__ import annotations

import hashlib
import io
import logging
import os
import re
from pathlib import Path

import torch

from icl_stl.persistence.errors import (
    CorruptCheckpointError,
    MissingCheckpointError,
    PersistenceError,
    describe_cause,
)
from icl_stl.persistence.files import (
    PathLike,
    atomic_write_bytes,
    fsync_dir,
    remove_stale_temp_files,
)

logger = logging.getLogger(__name__)

#
# File layout (version 1), one file written atomically so the checksum can never disagree with
# a payload from another save:
#
#     b"ICLSTL1\n" + <64 hex chars of sha256(payload)> + b"\n" + <decimal len(payload)> + b"\n"
#     + payload (bytes of torch.save(state))
#
# The length is redundant with the checksum but lets a short file be reported as "truncated"
# rather than as a generic checksum mismatch.

_MAGIC = b"ICLSTL1\n"
_MAX_HEADER = len(_MAGIC) + 65 + 21


def _serialize_state(path: Path, state: dict) -> tuple[bytes, memoryview]:
    """Header and payload of the checkpoint file for `state` (the payload is not copied)."""
    if not isinstance(state, dict):
        raise TypeError(f"state saved to {path} must be a dict, got {type(state).__name__}")
    buf = io.BytesIO()
    try:
        torch.save(state, buf)
    except Exception as exc:
        raise ValueError(f"cannot serialise the state to write to {path}: {exc}") from exc
    payload = buf.getbuffer()
    # Refuse, before anything is overwritten, a state that could be saved but never resumed
    # from (e.g. a numpy array or custom object that weights_only loading rejects).
    try:
        torch.load(io.BytesIO(payload), weights_only=True, map_location="cpu")
    except Exception as exc:
        raise ValueError(
            f"refusing to write {path}: the state would not load back with weights_only=True "
            f"(use only tensors, numbers, strings, lists and dicts): {exc}"
        ) from exc
    digest = hashlib.sha256(payload).hexdigest().encode("ascii")
    return _MAGIC + digest + b"\n" + str(len(payload)).encode("ascii") + b"\n", payload


def _verified_payload(path: Path, blob: bytes) -> bytes:
    """The torch payload of checkpoint bytes `blob`, or CorruptCheckpointError naming `path`."""
    if not blob.startswith(_MAGIC):
        if _MAGIC.startswith(blob):
            raise CorruptCheckpointError(f"checkpoint {path} is truncated ({len(blob)} bytes)")
        raise CorruptCheckpointError(
            f"checkpoint {path} has a bad header (not an icl-stl checkpoint, or a damaged one)"
        )
    fields = blob[len(_MAGIC) : _MAX_HEADER].split(b"\n", 2)
    if len(fields) < 3:
        raise CorruptCheckpointError(f"checkpoint {path} is truncated inside its header")
    digest, length_text = fields[0], fields[1]
    if not re.fullmatch(rb"[0-9a-f]{64}", digest) or not re.fullmatch(rb"[0-9]{1,20}", length_text):
        raise CorruptCheckpointError(f"checkpoint {path} has a bad header")
    start = len(_MAGIC) + len(digest) + 1 + len(length_text) + 1
    payload = blob[start:]
    expected = int(length_text)
    if len(payload) < expected:
        raise CorruptCheckpointError(
            f"checkpoint {path} is truncated: {len(payload)} of {expected} payload bytes"
        )
    if len(payload) > expected:
        raise CorruptCheckpointError(
            f"checkpoint {path} has {len(payload) - expected} unexpected trailing bytes"
        )
    if hashlib.sha256(payload).hexdigest().encode("ascii") != digest:
        raise CorruptCheckpointError(f"checkpoint {path} fails its checksum (the file is damaged)")
    return payload


def _read_checkpoint_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise MissingCheckpointError(path) from None


def save_state(path: PathLike, state: dict) -> None:
    """Atomically write `state` (a plain dict of tensors, numbers, strings, lists, dicts) to
    `path` as a checksummed checkpoint.

    Raises ``ValueError`` naming `path` if the state would not load back with
    ``weights_only=True``; :class:`PersistenceError` naming `path` if the write fails (the
    previous file is then intact).
    """
    path = Path(path)
    atomic_write_bytes(path, _serialize_state(path, state))


def load_state(path: PathLike) -> dict:
    """Load a checkpoint written by :func:`save_state`, onto the CPU.

    The header and SHA-256 are verified before unpickling, and unpickling is restricted
    (``weights_only=True``). Raises :class:`MissingCheckpointError` if `path` does not exist and
    :class:`CorruptCheckpointError` naming `path` and the defect otherwise.
    """
    path = Path(path)
    payload = _verified_payload(path, _read_checkpoint_bytes(path))
    try:
        state = torch.load(io.BytesIO(payload), weights_only=True, map_location="cpu")
    except Exception as exc:
        raise CorruptCheckpointError(
            f"checkpoint {path} passes its checksum but does not unpickle with "
            f"weights_only=True: {exc}"
        ) from exc
    if not isinstance(state, dict):
        raise CorruptCheckpointError(
            f"checkpoint {path} holds a {type(state).__name__}, expected a dict"
        )
    return state


class CheckpointSlot:
    """A named checkpoint in `directory` that always has a complete, verified version on disk.

    ``save`` keeps the last good checkpoint as ``<name>.prev.pt`` and writes the new one as
    ``<name>.pt``; ``load_latest`` falls back to the previous one if the latest is damaged or
    missing (a process killed between the two steps of ``save``). Use it under a
    :class:`RunLock` on the same directory: the slot itself does not guard against concurrent
    writers.
    """

    def __init__(self, directory: PathLike, name: str = "state") -> None:
        if not name or "/" in name or name.startswith("."):
            raise ValueError(f"checkpoint name must be a plain file stem, got {name!r}")
        self.directory = Path(directory)
        self.name = name
        self.latest_path = self.directory / f"{name}.pt"
        self.prev_path = self.directory / f"{name}.prev.pt"

    def __repr__(self) -> str:
        return f"CheckpointSlot({str(self.directory)!r}, name={self.name!r})"

    def exists(self) -> bool:
        """Whether any checkpoint file (latest or previous) is present; it may still be corrupt."""
        return self.latest_path.exists() or self.prev_path.exists()

    def save(self, state: dict) -> Path:
        """Write `state` as the latest checkpoint, keeping the current one as the previous.

        At every instant at least one complete checkpoint exists: the current latest is moved
        to ``.prev`` (a rename) only once the new one is serialised and only if it verifies
        (moving a damaged latest would replace the good previous one with garbage); then the
        new latest is written atomically. Returns the path written. Raises as
        :func:`save_state`.
        """
        header, payload = _serialize_state(self.latest_path, state)
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            if self._latest_verifies():
                os.replace(self.latest_path, self.prev_path)
                fsync_dir(self.directory)
        except OSError as exc:
            raise PersistenceError(
                f"could not rotate {self.latest_path} to {self.prev_path}: {describe_cause(exc)}; "
                "both are unchanged"
            ) from exc
        atomic_write_bytes(self.latest_path, (header, payload))
        remove_stale_temp_files(self.directory, (self.latest_path.name, self.prev_path.name))
        return self.latest_path

    def _latest_verifies(self) -> bool:
        try:
            _verified_payload(self.latest_path, _read_checkpoint_bytes(self.latest_path))
        except MissingCheckpointError:
            return False
        except CorruptCheckpointError as exc:
            logger.warning("%s; overwriting it and keeping %s", exc, self.prev_path)
            return False
        return True

    def load_latest(self) -> tuple[dict, Path] | None:
        """The newest checkpoint that verifies, with its path; ``None`` if there is none.

        A damaged latest checkpoint is reported with a warning naming it and the previous one
        is used. Raises :class:`CorruptCheckpointError` listing every file if all present files
        are damaged: resuming from scratch silently would discard the run.
        """
        problems: list[str] = []
        for path in (self.latest_path, self.prev_path):
            try:
                state = load_state(path)
            except MissingCheckpointError:
                continue
            except CorruptCheckpointError as exc:
                if path == self.latest_path:
                    logger.warning("%s; trying %s", exc, self.prev_path)
                else:
                    logger.warning("%s", exc)
                problems.append(str(exc))
                continue
            if path == self.prev_path and not problems:
                logger.warning(
                    "%s is missing (a save was interrupted); resuming from %s",
                    self.latest_path,
                    path,
                )
            return state, path
        if problems:
            raise CorruptCheckpointError(
                f"no usable checkpoint in {self.directory}: " + "; ".join(problems)
            )
        return None
