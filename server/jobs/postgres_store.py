"""`PostgresJobStore`: the job rows in a ``jobs`` table of the PostgreSQL store's database.

The PostgreSQL twin of `quietsync.server.jobs.sqlite_store`: it shares the
`PostgresStore`'s one connection, so a job row is committed in the same
transaction as the record writes it goes with (`save`), and it is only
touched from the store's worker thread. Its rows and queries are the SQLite
job store's (`quietsync.server.jobs.table`); its table has its own migrations
and version (``meta.jobs_schema_version``, `quietsync.server.postgres_schema`).
It began at the SQLite table's third layout, so its history starts there:

1. ``jobs("user", space, job_id, thread_id, message_id, status, stamp,
   started_ms, error, ended_ms)`` (``user`` quoted: a reserved word here).

A job runs in the process that started it, which keeps its state in memory:
one server process per database (several are the next part of issue #17).
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from quietsync.server.jobs.store import JobRow
from quietsync.server.jobs.table import JobQueries, job_of, job_values, messages_of, thread_params
from quietsync.server.postgres_connection import translated_errors
from quietsync.server.postgres_schema import migrate
from quietsync.server.postgres_store import PostgresStore, connection_of
from quietsync.server.store import WriteTransaction

__all__ = ["STEPS", "PostgresJobStore"]

STEPS: tuple[str, ...] = (
    """
    CREATE TABLE jobs (
        "user" TEXT NOT NULL, space TEXT NOT NULL, job_id TEXT NOT NULL,
        thread_id TEXT NOT NULL, message_id TEXT NOT NULL, status TEXT NOT NULL,
        stamp TEXT COLLATE "C" NOT NULL, started_ms BIGINT NOT NULL, error TEXT,
        ended_ms BIGINT,
        PRIMARY KEY ("user", job_id)
    );
    """,
)
"""Each version's SQL script (`quietsync.server.postgres_schema.migrate`)."""

_SQL = JobQueries("$")


class PostgresJobStore:
    """`quietsync.server.jobs.store.JobStore` beside a `PostgresStore` (module docstring)."""

    def __init__(self, store: PostgresStore) -> None:
        self._db = store.connection
        with store.write_transaction(), translated_errors("migrate the jobs table"):
            migrate(self._db, STEPS, version_key="jobs_schema_version")

    def save(self, tx: WriteTransaction, rows: Collection[JobRow]) -> None:
        connection_of(tx).executemany(_SQL.upsert, [job_values(job) for job in rows])

    def load(self) -> list[JobRow]:
        with translated_errors("read jobs"):
            rows = self._db.fetch(_SQL.load)
        return [job_of(row) for row in rows]

    def thread_messages(self, space: str, thread_id: str) -> dict[str, dict[str, Any]]:
        with translated_errors("read a thread's messages"):
            rows = self._db.fetch(_SQL.thread_messages, *thread_params(space, thread_id))
        return messages_of(rows)

    def purge(self, ended_before_ms: int) -> int:
        with translated_errors("purge jobs"):
            status = self._db.execute(_SQL.purge, ended_before_ms)
        return int(status.rsplit(" ", 1)[-1])  # the command tag: "DELETE <count>"
