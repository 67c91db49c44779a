"""An exclusive lock on a run directory; a stale lock of a killed process is taken over."""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import logging
import os
import socket
from pathlib import Path
from types import TracebackType

from filelock import FileLock, Timeout

from icl_stl.persistence.errors import PersistenceError, RunLockedError, describe_cause
from icl_stl.persistence.files import PathLike, pid_alive

logger = logging.getLogger(__name__)


class RunLock:
    """An exclusive, process-level lock on a run directory (``<directory>/.lock``).

    A ``filelock.FileLock``, i.e. ``fcntl.flock`` over a descriptor held for the lock's lifetime.
    The kernel drops a flock when its holder dies, so a lock file left behind by a killed
    process is stale and is taken over automatically. The holder writes its pid, host and start
    time into the lock file (filelock leaves an existing file's content alone) so that a refused
    run can name it, and a new holder that finds them knows the previous one was killed. Locks
    are per open file description: two ``RunLock`` objects on the same directory exclude each
    other even inside one process.

    A child created with ``fork`` (e.g. a DataLoader worker) closes its copy of the descriptor
    (filelock does this after every fork): its exit does not release the parent's lock, and a
    worker that outlives a killed run does not keep the run locked.

    Caveats: on network filesystems flock is only as reliable as the filesystem's lock support;
    where flock is missing altogether filelock's fallback to a marker file is disabled here
    (``preserve_lock_file``), so acquiring fails instead of silently locking less.

    Use as ``with RunLock(run_dir): ...`` or with :meth:`acquire` / :meth:`release`.
    """

    def __init__(self, directory: PathLike, *, timeout_s: float = 0.0, poll_s: float = 0.1) -> None:
        if timeout_s < 0 or poll_s <= 0:
            raise ValueError(f"timeout_s must be >= 0 and poll_s > 0, got {timeout_s}, {poll_s}")
        self.directory = Path(directory)
        self.path = self.directory / ".lock"
        self.timeout_s = timeout_s
        # The file is kept on release (deleting it would let a waiter lock the unlinked inode
        # while a newcomer locks a fresh one); filelock's own reentrancy is not used (acquiring
        # twice is an error here), and the lock belongs to this object, not to a thread.
        self._lock = FileLock(self.path, timeout=timeout_s, poll_interval=poll_s,
                              thread_local=False, preserve_lock_file=True,
                              on_acquired=self._take_over)

    def __repr__(self) -> str:
        return f"RunLock({str(self.directory)!r}, held={self.held})"

    @property
    def held(self) -> bool:
        """Whether this object currently holds the lock."""
        return self._lock.is_locked

    def acquire(self) -> RunLock:
        """Take the lock, waiting up to ``timeout_s`` (polling); returns self.

        Raises :class:`RunLockedError` naming the directory and the holder's pid and host if it
        is still held after the timeout, :class:`PersistenceError` if the lock file cannot be
        created, ``RuntimeError`` if this object already holds it.
        """
        if self.held:
            raise RuntimeError(f"{self!r} is already held by this object")
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._lock.acquire()
        except Timeout:  # an OSError too: caught first
            raise self._locked_error() from None
        except OSError as exc:
            raise PersistenceError(
                f"could not create or lock {self.path}: {describe_cause(exc)}"
            ) from exc
        return self

    def _holder(self) -> dict:
        try:
            raw = self.path.read_bytes()
            info = json.loads(raw.decode("utf-8")) if raw.strip() else {}
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            return {}
        return info if isinstance(info, dict) else {}

    def _locked_error(self) -> RunLockedError:
        info = self._holder()
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
        """Called by filelock with the locked descriptor: report a killed previous holder (its
        info is still in the file: a clean release empties it) and record this one."""
        previous = self._holder()
        if previous:
            pid, host = previous.get("pid"), previous.get("host")
            if host == socket.gethostname() and isinstance(pid, int) and not pid_alive(pid):
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
            "started": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode("utf-8"), 0)

    def release(self) -> None:
        """Release the lock; a no-op if not held. The lock file is emptied but not deleted."""
        if not self.held:
            return
        try:
            # Empty while still holding, so a new holder's info is never wiped by us; the info
            # is only informative, so failing to empty it must not keep the lock.
            with contextlib.suppress(OSError):
                os.truncate(self.path, 0)
        finally:
            self._lock.release()

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
