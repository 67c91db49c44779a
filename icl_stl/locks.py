"""An exclusive lock on a run directory; a stale lock of a killed process is taken over."""

from __future__ import annotations

import contextlib
import datetime as _dt
import fcntl
import json
import logging
import os
import socket
import time
from pathlib import Path
from types import TracebackType

from icl_stl.checkpoints import _pid_alive
from icl_stl.io import (
    PathLike,
    PersistenceError,
    RunLockedError,
    _cause,
)

logger = logging.getLogger(__name__)



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
            "started": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
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
