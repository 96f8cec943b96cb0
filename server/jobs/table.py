"""The ``jobs`` table as both SQL job stores keep it: its columns, rows and queries.

The SQLite and PostgreSQL job stores (`quietsync.server.jobs.sqlite_store`,
`quietsync.server.jobs.postgres_store`) hold the same columns with the same
text in them (a stamp as its fixed-width text, as the sync stores keep
stamps), beside sync stores that keep a field's value as the same JSON text
(`quietsync.server.backend`). So they ask the same questions in the same SQL,
which both dialects accept; only the placeholders' mark differs (``?1`` in
SQLite, ``$1`` in PostgreSQL, numbered in both so one text serves both). One
copy here means a change to the table or to a query is made once, for both.

Only creating and migrating the table stays with each store: their version
histories differ (the PostgreSQL one began at SQLite's third layout). The
PostgreSQL table has one more column, ``owner`` (the server process running
the job, `quietsync.server.jobs.postgres_store`), written by the upsert of an
``owned`` `JobQueries` and read by none of the queries here.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

import attrs

from quietsync.conflicts import HLC
from quietsync.server.backend import value_text
from quietsync.server.jobs.store import JobRow

__all__ = ["JobQueries", "job_of", "job_values", "job_with_content", "messages_of", "thread_params"]

_COLUMNS = (  # "user" quoted: a reserved word in PostgreSQL (an ordinary name in SQLite)
    '"user"',
    "space",
    "job_id",
    "thread_id",
    "message_id",
    "status",
    "stamp",
    "started_ms",
    "error",
    "ended_ms",
)
_KEY = ('"user"', "job_id")


def job_values(job: JobRow) -> tuple[Any, ...]:
    """`job` as the values of its row, in the order of the queries' columns."""
    return (
        job.user,
        job.space,
        job.job_id,
        job.thread_id,
        job.message_id,
        job.status,
        str(job.stamp),
        job.started_ms,
        job.error,
        job.ended_ms,
    )


def job_of(row: Sequence[Any]) -> JobRow:
    """The `JobRow` of a row read by `JobQueries.load` (its content is read elsewhere)."""
    *names, stamp, started_ms, error, ended_ms = row
    return JobRow(*names, HLC.parse(stamp), started_ms, error, ended_ms=ended_ms)


def job_with_content(row: Sequence[Any]) -> JobRow:
    """The `JobRow` of a row read by `JobQueries.find` or `JobQueries.streaming_rows`: its
    columns, then its message's stored ``content`` (JSON text; None if not written)."""
    *columns, content = row
    text = None if content is None else json.loads(content)
    return attrs.evolve(job_of(columns), content=text if isinstance(text, str) else "")


def thread_params(space: str, thread_id: str) -> tuple[str, str]:
    """The parameters of `JobQueries.thread_messages`: the space, and `thread_id` as the
    stored JSON text of a ``thread_id`` field holding it (so the index range matches)."""
    return space, value_text(thread_id)


def messages_of(rows: Iterable[Sequence[Any]]) -> dict[str, dict[str, Any]]:
    """The rows of `JobQueries.thread_messages` as `JobStore.thread_messages` answers."""
    messages: dict[str, dict[str, Any]] = {}
    for key, field, value in rows:
        messages.setdefault(key, {})[field] = json.loads(value)
    return messages


@attrs.frozen
class JobQueries:
    """The job stores' SQL with `mark` (``"?"`` or ``"$"``) numbering the parameters."""

    mark: str
    owned: bool = False
    """The table has an ``owner`` column, written by `upsert` after `job_values`."""

    def _param(self, n: int) -> str:
        return f"{self.mark}{n}"

    @property
    def upsert(self) -> str:
        """Insert a row, or replace every column of the one with its key (`job_values`)."""
        columns = (*_COLUMNS, "owner") if self.owned else _COLUMNS
        params = ", ".join(self._param(n) for n in range(1, len(columns) + 1))
        updates = ", ".join(f"{c} = excluded.{c}" for c in columns if c not in _KEY)
        return (
            f"INSERT INTO jobs ({', '.join(columns)}) VALUES ({params})"
            f" ON CONFLICT ({', '.join(_KEY)}) DO UPDATE SET {updates}"
        )

    def rows_where(self, where: str) -> str:
        """The rows `where` says, each with its message's ``content`` (for `job_with_content`),
        read in one statement: one snapshot, so content and stamp are of the same write."""
        columns = ", ".join(f"jobs.{c}" for c in _COLUMNS)
        return (
            f"SELECT {columns}, fields.value FROM jobs LEFT JOIN fields"
            " ON fields.space = jobs.space AND fields.collection = 'messages'"
            " AND fields.key = jobs.message_id AND fields.field = 'content'"
            f" AND fields.kind = 'lww' WHERE {where} ORDER BY jobs.started_ms"
        )

    @property
    def find(self) -> str:
        """The row of the job whose id is the one parameter, with its content."""
        return self.rows_where(f"jobs.job_id = {self._param(1)}")

    @property
    def streaming_rows(self) -> str:
        """The rows of every streaming job, with their content."""
        return self.rows_where("jobs.status = 'streaming'")

    @property
    def streaming(self) -> str:
        """How many jobs stream for the user (parameter 1) and for the message of a space
        (parameters 2 and 3): the two limits of a start."""
        user, space, message = (self._param(n) for n in (1, 2, 3))
        return (
            f'SELECT count(CASE WHEN "user" = {user} THEN 1 END),'
            f" count(CASE WHEN space = {space} AND message_id = {message} THEN 1 END)"
            " FROM jobs WHERE status = 'streaming'"
        )

    @property
    def load(self) -> str:
        """Every row, oldest first (`job_of` reads each)."""
        return f"SELECT {', '.join(_COLUMNS)} FROM jobs ORDER BY started_ms"

    @property
    def purge(self) -> str:
        """Delete the rows of the jobs that ended before the one parameter (ms)."""
        return f"DELETE FROM jobs WHERE ended_ms IS NOT NULL AND ended_ms < {self._param(1)}"

    @property
    def thread_messages(self) -> str:
        """A thread's messages (`thread_params`): one range of the space's ``messages``
        rows (the fields' primary key), matched on the stored JSON text of ``thread_id``;
        their ``(key, field, value)``, for `messages_of`."""
        space, thread = self._param(1), self._param(2)
        return (
            f"SELECT key, field, value FROM fields WHERE space = {space}"
            " AND collection = 'messages' AND field IN ('role', 'content', 'created_at',"
            " '_deleted') AND kind = 'lww' AND value IS NOT NULL AND key IN (SELECT key"
            f" FROM fields WHERE space = {space} AND collection = 'messages'"
            f" AND field = 'thread_id' AND value = {thread})"
        )
