"""Crash-safe persistence: atomic files, append-only logs, checksummed checkpoints, run locks.

Every durable artefact of a run goes through this module so that the project's guarantees hold
in one place:

* A file is replaced atomically (temp file in the same directory, ``fsync``, ``os.replace``,
  ``fsync`` of the directory): a reader sees the old version or the new one, never a mix, and a
  failed write (disk full, killed process) leaves the previous version intact.
* An append-only JSONL log loses at most its last, partial line when the writer is killed.
* A checkpoint carries its own SHA-256, so a damaged file is detected on load instead of
  resuming from garbage, and :class:`CheckpointSlot` keeps the previous good checkpoint to fall
  back on.
* :class:`RunLock` keeps two processes from writing the same run directory at once.

Errors name the path involved and what is wrong with it.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import fcntl
import hashlib
import io
import json
import logging
import os
import re
import secrets
import socket
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import torch

from icl_stl.faults import fault_point

logger = logging.getLogger(__name__)

PathLike = str | os.PathLike[str]

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


# ---------------------------------------------------------------------------------------------
# Errors


class PersistenceError(RuntimeError):
    """A file could not be written, or a stored file is unusable. The message names the path."""


class CorruptFileError(PersistenceError):
    """A stored file exists but its content is damaged or not in the expected format."""


class CorruptCheckpointError(CorruptFileError):
    """A checkpoint is truncated, fails its checksum, has a bad header or does not unpickle."""


class MissingCheckpointError(FileNotFoundError):
    """No checkpoint exists at the given path.

    A ``FileNotFoundError`` so that callers treating "nothing to resume from" like any other
    missing file keep working.
    """

    def __init__(self, path: PathLike) -> None:
        super().__init__(f"no checkpoint at {os.fspath(path)}")
        self.filename = os.fspath(path)


class RunLockedError(PersistenceError):
    """Another live process holds the lock on a run directory."""


# ---------------------------------------------------------------------------------------------
# Atomic whole-file writes


def _cause(exc: BaseException) -> str:
    # OSError's str() repeats errno and filename (often the temp file's); strerror is the part a
    # user can act on ("No space left on device").
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return f"{type(exc).__name__}: {exc}"


def _temp_path(path: Path) -> Path:
    # Same directory, so os.replace is a rename within one filesystem (atomic); the pid makes
    # leftovers of a killed writer attributable, the random part keeps threads apart.
    return path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")


_TEMP_RE = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)\.[0-9a-f]{8}\.tmp$")


def _fsync_dir(directory: Path) -> None:
    """Make a rename in `directory` durable. Filesystems that cannot fsync a directory are
    tolerated: there the rename is as durable as the platform allows."""
    try:
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError as exc:
        if exc.errno in (errno.EACCES, errno.EPERM, errno.ENOTSUP, errno.EINVAL):
            return
        raise
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes | memoryview) -> None:
    # os.write may write fewer bytes than asked (signals, pipes, some filesystems).
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def atomic_write_bytes(
    path: PathLike, data: bytes | memoryview | Sequence[bytes | memoryview]
) -> None:
    """Replace the file at `path` with `data`, atomically and durably.

    `data` may also be a sequence of chunks, written back to back, so that a large payload
    need not be copied just to prepend a header.

    Parent directories are created. On any failure the temp file is removed, the previous
    version of `path` (if any) is left untouched, and :class:`PersistenceError` is raised naming
    `path` and the cause. ``KeyboardInterrupt`` and other non-``Exception`` signals also clean up
    but propagate unchanged, so Ctrl-C still behaves like Ctrl-C.
    """
    path = Path(path)
    had_previous = path.exists()
    tmp = _temp_path(path)
    fd: int | None = None
    replaced = False
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # O_EXCL: never write through a file someone else created under our temp name.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        for chunk in [data] if isinstance(data, (bytes, bytearray, memoryview)) else data:
            _write_all(fd, chunk)
        # Data must be on disk before the rename is; otherwise a power loss can leave `path`
        # pointing at an empty or partial file.
        os.fsync(fd)
        fault_point("checkpoint_write")  # a kill here leaves only the temp file
        os.close(fd)
        fd = None
        os.replace(tmp, path)
        replaced = True
        _fsync_dir(path.parent)
    except BaseException as exc:
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)
        if not replaced:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        if not isinstance(exc, Exception):
            raise
        if replaced:
            raise PersistenceError(
                f"wrote {path} but could not sync its directory: {_cause(exc)}; the new version "
                "is in place but may not survive a power loss"
            ) from exc
        previous = "the previous version is intact" if had_previous else "no file was written"
        raise PersistenceError(f"could not write {path}: {_cause(exc)}; {previous}") from exc


def atomic_write_json(path: PathLike, obj: Any) -> None:
    """Atomically write `obj` as indented JSON (keys in insertion order) to `path`.

    Only JSON types are accepted (dict with str keys, list, str, int, float, bool, None); any
    other value raises ``TypeError`` naming `path` before anything is written, so a summary is
    never silently stringified. ``NaN`` and ``±Infinity`` are written as the bare tokens
    ``NaN``/``Infinity`` (Python's ``json`` reads them back; strict parsers such as ``jq`` do
    not): a diverged run's loss must be recorded, not crash the writer.
    """
    try:
        text = json.dumps(obj, indent=2, sort_keys=False, allow_nan=True)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"cannot write {path} as JSON: {exc}") from exc
    atomic_write_bytes(path, (text + "\n").encode("utf-8"))


def read_json(path: PathLike) -> Any:
    """Read a JSON file. Raises ``FileNotFoundError`` if missing, :class:`CorruptFileError`
    naming `path` if it does not parse."""
    path = Path(path)
    raw = path.read_bytes()
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CorruptFileError(f"{path} is not valid JSON: {exc}") from exc


# ---------------------------------------------------------------------------------------------
# Append-only JSONL logs


def _encode_record(path: Path, record: dict) -> bytes:
    if not isinstance(record, dict):
        raise TypeError(f"records appended to {path} must be dicts, got {type(record).__name__}")
    try:
        # No indent: one record is exactly one line (json escapes newlines inside strings).
        line = json.dumps(record, allow_nan=True)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"cannot append record to {path} as JSON: {exc}") from exc
    return (line + "\n").encode("utf-8")


def _repair_torn_tail(fd: int, path: Path) -> None:
    """Terminate or drop a last line that a killed writer left without its newline.

    Without this the next append would be glued onto the fragment and corrupt a line in the
    middle of the file, which :func:`read_jsonl` rightly refuses.
    """
    size = os.fstat(fd).st_size
    if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
        return
    # Find the start of the last line, reading backwards in blocks.
    pos, start, tail = size, 0, b""
    while pos > 0:
        lo = max(0, pos - 65536)
        chunk = os.pread(fd, pos - lo, lo)
        nl = chunk.rfind(b"\n")
        if nl >= 0:
            start = lo + nl + 1
            tail = chunk[nl + 1 :] + tail
            break
        tail = chunk + tail
        pos = lo
    try:
        json.loads(tail.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        logger.warning(
            "%s ends with a partial line of %d bytes (a writer was killed mid-append); dropping it",
            path,
            len(tail),
        )
        os.ftruncate(fd, start)
    else:
        # A complete record that merely lacks its newline (written by another tool): keep it.
        _write_all(fd, b"\n")


def append_jsonl(path: PathLike, record: dict) -> None:
    """Append `record` as one JSON line to `path` (created with its parents if missing).

    The line is written with a single ``write`` on an ``O_APPEND`` descriptor and fsynced before
    returning, so a record reported as logged survives a crash, and a killed process leaves at
    most a partial last line (repaired by the next append, skipped by :func:`read_jsonl`).
    Raises :class:`PersistenceError` naming `path` if the write fails, ``TypeError`` if
    `record` is not a JSON-able dict. NaN/Infinity are written as in :func:`atomic_write_json`.
    """
    path = Path(path)
    data = _encode_record(path, record)
    fd: int | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Read-write: a torn tail has to be inspected before appending.
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o666)
        _repair_torn_tail(fd, path)
        _write_all(fd, data)
        os.fsync(fd)
    except OSError as exc:
        raise PersistenceError(f"could not append to {path}: {_cause(exc)}") from exc
    finally:
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)


def read_jsonl(path: PathLike) -> list[dict]:
    """Read every record of a JSONL file written by :func:`append_jsonl`.

    An unparseable *last* line is the signature of a writer killed mid-append and is skipped
    with a warning; an unparseable line anywhere else, or a line that is not a JSON object,
    means real corruption and raises :class:`CorruptFileError` naming `path` and the line
    number. Blank lines are ignored. Raises ``FileNotFoundError`` if `path` is missing.
    """
    path = Path(path)
    lines = path.read_bytes().split(b"\n")
    numbered = [(i + 1, line) for i, line in enumerate(lines) if line.strip()]
    records: list[dict] = []
    for k, (lineno, line) in enumerate(numbered):
        try:
            record = json.loads(line.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            if k == len(numbered) - 1:
                logger.warning(
                    "%s: ignoring truncated last line %d (a writer was probably killed)",
                    path,
                    lineno,
                )
                break
            raise CorruptFileError(f"{path} line {lineno} is corrupt: {exc}") from exc
        if not isinstance(record, dict):
            raise CorruptFileError(
                f"{path} line {lineno} is not a JSON object (got {type(record).__name__})"
            )
        records.append(record)
    return records


# ---------------------------------------------------------------------------------------------
# Checksummed torch states
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


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


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
                _fsync_dir(self.directory)
        except OSError as exc:
            raise PersistenceError(
                f"could not rotate {self.latest_path} to {self.prev_path}: {_cause(exc)}; "
                "both are unchanged"
            ) from exc
        atomic_write_bytes(self.latest_path, (header, payload))
        self._remove_stale_temp_files()
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

    def _remove_stale_temp_files(self) -> None:
        # Temp files of writers killed mid-save would otherwise pile up, each as big as a
        # checkpoint. Only files of this slot whose writer pid is gone are touched.
        targets = {self.latest_path.name, self.prev_path.name}
        for entry in self.directory.iterdir():
            match = _TEMP_RE.match(entry.name)
            if not match or match["name"] not in targets:
                continue
            pid = int(match["pid"])
            if pid != os.getpid() and not _pid_alive(pid):
                with contextlib.suppress(OSError):
                    entry.unlink()
                    logger.info("removed %s left by killed writer pid %d", entry, pid)

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


# ---------------------------------------------------------------------------------------------
# Run locks


class RunLock:
    """An exclusive, process-level lock on a run directory (``<directory>/.lock``).

    Built on ``fcntl.flock`` over a descriptor held for the lock's lifetime. The kernel drops a
    flock when its holder dies, so a lock file left behind by a killed process is stale and is
    taken over automatically; the pid, host and start time written into the file are only
    informative (for error messages). Locks are per open file description: two ``RunLock``
    objects on the same directory exclude each other even inside one process.

    Caveats: a child created with ``fork`` (e.g. a DataLoader worker) shares the descriptor and
    keeps the lock alive until it exits too; on network filesystems flock is only as reliable as
    the filesystem's lock support.

    Use as ``with RunLock(run_dir): ...`` or with :meth:`acquire` / :meth:`release`.
    """

    def __init__(self, directory: PathLike, *, timeout_s: float = 0.0, poll_s: float = 0.1) -> None:
        if timeout_s < 0 or poll_s <= 0:
            raise ValueError(f"timeout_s must be >= 0 and poll_s > 0, got {timeout_s}, {poll_s}")
        self.directory = Path(directory)
        self.path = self.directory / ".lock"
        self.timeout_s = timeout_s
        self.poll_s = poll_s
        self._fd: int | None = None

    def __repr__(self) -> str:
        return f"RunLock({str(self.directory)!r}, held={self.held})"

    @property
    def held(self) -> bool:
        """Whether this object currently holds the lock."""
        return self._fd is not None

    def _holder(self, fd: int) -> dict:
        try:
            raw = os.pread(fd, 4096, 0)
            info = json.loads(raw.decode("utf-8")) if raw.strip() else {}
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            return {}
        return info if isinstance(info, dict) else {}

    def acquire(self) -> RunLock:
        """Take the lock, waiting up to ``timeout_s`` (polling); returns self.

        Raises :class:`RunLockedError` naming the directory and the holder's pid and host if it
        is still held after the timeout, :class:`PersistenceError` if the lock file cannot be
        created, ``RuntimeError`` if this object already holds it.
        """
        if self._fd is not None:
            raise RuntimeError(f"{self!r} is already held by this object")
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        except OSError as exc:
            raise PersistenceError(
                f"could not create lock file {self.path}: {_cause(exc)}"
            ) from exc
        deadline = time.monotonic() + self.timeout_s
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise self._locked_error(fd) from None
                    time.sleep(min(self.poll_s, max(0.0, deadline - time.monotonic())))
            self._take_over(fd)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return self

    def _locked_error(self, fd: int) -> RunLockedError:
        info = self._holder(fd)
        holder = (
            f"pid {info.get('pid', '?')} on host {info.get('host', '?')} "
            f"(since {info.get('started', '?')})"
            if info
            else "another process"
        )
        waited = f" after waiting {self.timeout_s:g} s" if self.timeout_s else ""
        return RunLockedError(
            f"run directory {self.directory} is locked by {holder}{waited}; another process is "
            f"using this run. Wait for it to finish, stop it, or use a different directory "
            f"(lock file: {self.path})"
        )

    def _take_over(self, fd: int) -> None:
        previous = self._holder(fd)
        if previous:
            pid, host = previous.get("pid"), previous.get("host")
            if host == socket.gethostname() and isinstance(pid, int) and not _pid_alive(pid):
                detail = "which is no longer running"
            else:
                detail = "which no longer holds it"
            logger.warning(
                "taking over stale lock file %s left by pid %s on host %s, %s "
                "(a killed run; its lock was released by the kernel)",
                self.path,
                pid,
                host,
                detail,
            )
        info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode("utf-8"), 0)

    def release(self) -> None:
        """Release the lock; a no-op if not held.

        The lock file is emptied but not deleted: deleting it would let a waiter lock the
        unlinked file while a newcomer locks a fresh one, and both would think they hold it.
        """
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            # Empty before unlocking, so a new holder's info is never wiped by us.
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
