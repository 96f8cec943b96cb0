"""The storage a job runner needs beyond `server.store.Store`: a second, small Protocol.

Jobs write their output into ordinary records (the message, the notification)
through the same per-user `Transaction` a push uses, so the change log, the
field states and the live hub see job writes exactly like pushed ones. What
this Protocol adds:

* `JobStore.jobs_transaction`: ONE write transaction spanning several users'
  spaces, because the runner's flusher writes every job with new content, of
  every user, in one transaction (one fsync) per tick;
* a ``jobs`` table of `JobRow`s (one per job, written at its start and at its
  end, in the same transaction as the record writes), so a restarted server
  knows which jobs were left streaming and can still answer for finished jobs
  during their retention.

Backends hold no job policy: what to write, when, with which stamps, is
decided by `server.job_writer.JobWriter` and `server.jobs.JobRunner`.
"""

from __future__ import annotations

from collections.abc import Collection
from contextlib import AbstractContextManager
from typing import Protocol

import attrs

from quietsync.conflicts import HLC
from quietsync.protocol import JobStatus
from quietsync.server.store import Transaction

__all__ = ["JobRow", "JobStore", "JobsTransaction"]


@attrs.frozen
class JobRow:
    """A job as stored: who owns it, where it writes, how it ended.

    `content` is stored at the end only (while streaming it lives in the
    message's ``content`` field); `stamp` is the job's last write's stamp;
    `ended_ms` (wall clock) starts the retention period.
    """

    user: str
    job_id: str
    thread_id: str
    message_id: str
    status: JobStatus
    stamp: HLC
    started_ms: int
    error: str | None = None
    content: str = ""
    ended_ms: int | None = None


class JobsTransaction(Protocol):
    """One open write transaction over any number of users' spaces."""

    def space(self, user: str) -> Transaction:
        """`user`'s space inside this transaction (write it at most once per transaction)."""
        ...

    def save_jobs(self, rows: Collection[JobRow]) -> None:
        """Insert or replace these job rows."""
        ...


class JobStore(Protocol):
    """What the job runner needs from a backend (see the module docstring)."""

    def jobs_transaction(self) -> AbstractContextManager[JobsTransaction]:
        """Open one write transaction: commit on exit, roll back on error."""
        ...

    def load_jobs(self) -> list[JobRow]:
        """Every stored job row, oldest first."""
        ...

    def purge_jobs(self, ended_before_ms: int) -> int:
        """Delete the rows of jobs that ended before `ended_before_ms`; how many went."""
        ...
