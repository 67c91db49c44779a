"""The errors of icl_stl.persistence. Every message names the path involved."""

from __future__ import annotations

import os


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

    def __init__(self, path: str | os.PathLike[str]) -> None:
        super().__init__(f"no checkpoint at {os.fspath(path)}")
        self.filename = os.fspath(path)


class RunLockedError(PersistenceError):
    """Another live process holds the lock on a run directory."""


def describe_cause(exc: BaseException) -> str:
    """The part of an error a user can act on, for messages that name the path themselves."""
    # OSError's str() repeats errno and filename (often the temp file's); strerror is the part a
    # user can act on ("No space left on device").
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return f"{type(exc).__name__}: {exc}"
