"""Atomic whole-file writes and append-only JSONL logs.

* A file is replaced atomically (temp file in the same directory, ``fsync``, ``os.replace``,
  ``fsync`` of the directory): a reader sees the old version or the new one, never a mix, and a
  failed write (disk full, killed process) leaves the previous version intact.
* An append-only JSONL log loses at most its last, partial line when the writer is killed.

Errors name the path involved and what is wrong with it.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import re
import secrets
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from icl_stl.persistence.errors import CorruptFileError, PersistenceError, describe_cause
from icl_stl.persistence.faults import fault_point

logger = logging.getLogger(__name__)

PathLike = str | os.PathLike[str]


# ---------------------------------------------------------------------------------------------
# Atomic whole-file writes


def _temp_path(path: Path) -> Path:
    # Same directory, so os.replace is a rename within one filesystem (atomic); the pid makes
    # leftovers of a killed writer attributable, the random part keeps threads apart.
    return path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")


_TEMP_NAME = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)\.[0-9a-f]{8}\.tmp$")


def pid_alive(pid: int) -> bool:
    """Whether process `pid` exists on this host (it may belong to another user)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def remove_stale_temp_files(directory: Path, names: Iterable[str]) -> None:
    """Delete the temp files that killed writers of `directory/<name>` left behind.

    They would otherwise pile up, each as big as the file being written. Only temp files of
    the given names whose writer pid is gone are touched.
    """
    targets = set(names)
    for entry in directory.iterdir():
        match = _TEMP_NAME.match(entry.name)
        if not match or match["name"] not in targets:
            continue
        pid = int(match["pid"])
        if pid != os.getpid() and not pid_alive(pid):
            with contextlib.suppress(OSError):
                entry.unlink()
                logger.info("removed %s left by killed writer pid %d", entry, pid)


def fsync_dir(directory: Path) -> None:
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
        fsync_dir(path.parent)
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
                f"wrote {path} but could not sync its directory: {describe_cause(exc)}; the new version "
                "is in place but may not survive a power loss"
            ) from exc
        previous = "the previous version is intact" if had_previous else "no file was written"
        raise PersistenceError(f"could not write {path}: {describe_cause(exc)}; {previous}") from exc


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
        raise PersistenceError(f"could not append to {path}: {describe_cause(exc)}") from exc
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
