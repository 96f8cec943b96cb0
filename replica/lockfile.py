"""One owner per replica file: an exclusive `flock` on ``<file>.lock``.

A replica keeps its clock and its mutation counter in memory between writes;
two owners would issue colliding stamps and mutation ids. So the second opener
(another process, or another `Replica` object in this one) gets
`ReplicaLockedError` at once instead of sharing. The kernel drops the lock
when its owner dies, even by SIGKILL, so a crash never leaves a stale lock.

A separate lock file, not the database itself: SQLite holds POSIX locks on the
database, and closing any other descriptor of that file would silently drop
them. The lock file is never deleted (deleting it would let two openers lock
two different inodes).

Must not import `quietsync.server`.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from quietsync.replica.errors import ReplicaLockedError, StorageError

__all__ = ["LockFile"]


class LockFile:
    """An exclusive, non-blocking lock held until `release()`."""

    def __init__(self, fd: int, path: Path) -> None:
        self._fd: int | None = fd
        self.path = path

    @classmethod
    def acquire(cls, db_path: Path) -> LockFile:
        path = db_path.with_name(db_path.name + ".lock")
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise StorageError(f"cannot create lock file {path}: {exc}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            os.close(fd)
            raise ReplicaLockedError(db_path) from exc
        return cls(fd, path)

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None
