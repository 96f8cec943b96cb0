"""What the jobs feature stores beside the sync store: a small `JobStore` Protocol.

Jobs write their output into ordinary records (the message, the notification)
through the sync store's `WriteTransaction`, so the change log, the field
states and the live hub see job writes exactly like pushed ones. What the
feature keeps on its own is one `JobRow` per job, written at its start and at
its end *inside that same transaction*, so a restarted server knows which
jobs were left streaming and can still answer for finished jobs during their
retention.

Several server processes may share one PostgreSQL database; each job runs
in exactly one of them (its row's owner, `quietsync.server.jobs.postgres_store`).
So the two questions that need every process's jobs are asked of the rows, not
of one process's memory: the limits of a start (`streaming`, inside the
start's transaction, under a lock where processes could race) and the jobs
left streaming by a process that is gone (`orphans`). On SQLite, one process
serves the database, and both answer from its rows as they are.

Backends hold no job policy: what to write, when, with which stamps, is
decided by `quietsync.server.jobs.writer.JobWriter` and
`quietsync.server.jobs.runner.JobRunner`.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any, Protocol

import attrs

from quietsync.conflicts import HLC
from quietsync.protocol import JobStatus
from quietsync.server.store import WriteTransaction

__all__ = ["JobRow", "JobStore"]


@attrs.frozen
class JobRow:
    """A job as stored: who started it, where it writes, how it ended.

    `user` started the job (its limits count against them); `space` holds its
    message (the user's private space, or a shared one they could write in),
    and its members with ``read`` may follow the job. `content` is not stored
    with the row: it lives in the message's ``content`` field, and is read
    from there when the row is loaded (`JobWriter.recover`); `stamp` is the
    job's last write's stamp; `ended_ms` (wall clock) starts the retention
    period.
    """

    user: str
    space: str
    job_id: str
    thread_id: str
    message_id: str
    status: JobStatus
    stamp: HLC
    started_ms: int
    error: str | None = None
    content: str = ""
    ended_ms: int | None = None


class JobStore(Protocol):
    """The job rows of one server (see the module docstring). Store thread only."""

    def save(self, tx: WriteTransaction, rows: Collection[JobRow]) -> None:
        """Insert or replace these rows inside the open transaction `tx`."""
        ...

    def load(self) -> list[JobRow]:
        """Every stored job row, oldest first."""
        ...

    def find(self, job_id: str) -> JobRow | None:
        """Job `job_id`'s row with its message's content (one snapshot), or None."""
        ...

    def streaming(
        self, tx: WriteTransaction, user: str, space: str, message_id: str
    ) -> tuple[int, int]:
        """Inside the start's transaction `tx`: how many jobs stream for `user`, and for
        `message_id` in `space`. Two starts that could race (in two processes) are
        serialized here, so the second one counts the first."""
        ...

    def orphans(self) -> list[JobRow]:
        """The jobs left streaming by a server process that is gone, with their content;
        from now on this process's to end (another process asking gets none of them)."""
        ...

    def purge(self, ended_before_ms: int) -> int:
        """Delete the rows of jobs that ended before `ended_before_ms`; how many went."""
        ...

    def thread_messages(self, space: str, thread_id: str) -> dict[str, dict[str, Any]]:
        """The message records of thread `thread_id` in `space`: key -> their lww ``role``,
        ``content``, ``created_at`` and ``_deleted`` fields (those that are set)."""
        ...
