"""`SQLiteJobStore`: the job rows in a ``jobs`` table of the sync store's SQLite database.

It shares the `SQLiteStore`'s one connection, so a job row is committed in the
same transaction as the record writes it goes with (`save`), and it is only
touched from the store's worker thread. Its table has its own migrations and
version (``meta.jobs_schema_version``, `quietsync.server.sqlite_schema`):

1. ``jobs(user, job_id, thread_id, message_id, status, stamp, started_ms,
   error, content, ended_ms)``;
2. without ``content``: the reply lives in its message record only (a
   finished reply was stored twice);
3. with ``space``: the space the job's message lives in (a job may write into
   a shared space); the rows from before are their user's private space's;
4. indexes for `find` (by ``job_id``) and the limits (the streaming rows).

One process serves an SQLite database, so every job left streaming is an
orphan once this process opens it (`orphans`, asked at start only), and a
start's limits count the rows as they are (writes are serialized anyway).

Its rows and queries are the PostgreSQL job store's (`quietsync.server.jobs.table`).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Collection
from typing import Any

from quietsync.protocol import PRIVATE_PREFIX
from quietsync.server.jobs.store import JobRow
from quietsync.server.jobs.table import (
    JobQueries,
    job_of,
    job_values,
    job_with_content,
    messages_of,
    thread_params,
)
from quietsync.server.sqlite_schema import Step, migrate
from quietsync.server.sqlite_store import SQLiteStore, SQLiteWriteTransaction, translated_errors
from quietsync.server.store import WriteTransaction

__all__ = ["SQLiteJobStore"]


def _v1_jobs(db: sqlite3.Connection) -> None:
    db.execute(
        "CREATE TABLE IF NOT EXISTS jobs (user TEXT NOT NULL, job_id TEXT NOT NULL,"
        " thread_id TEXT NOT NULL, message_id TEXT NOT NULL, status TEXT NOT NULL,"
        " stamp TEXT NOT NULL, started_ms INTEGER NOT NULL, error TEXT, content TEXT NOT NULL,"
        " ended_ms INTEGER, PRIMARY KEY (user, job_id)) WITHOUT ROWID"
    )


def _v2_content_in_the_message_only(db: sqlite3.Connection) -> None:
    db.execute("ALTER TABLE jobs DROP COLUMN content")


def _v3_space(db: sqlite3.Connection) -> None:
    db.execute("ALTER TABLE jobs ADD COLUMN space TEXT NOT NULL DEFAULT ''")
    db.execute("UPDATE jobs SET space = ? || user", (PRIVATE_PREFIX,))


def _v4_indexes(db: sqlite3.Connection) -> None:
    db.execute("CREATE INDEX jobs_by_id ON jobs (job_id)")
    db.execute("CREATE INDEX jobs_streaming ON jobs (user) WHERE status = 'streaming'")


STEPS: tuple[Step, ...] = (_v1_jobs, _v2_content_in_the_message_only, _v3_space, _v4_indexes)
_SQL = JobQueries("?")


class SQLiteJobStore:
    """`quietsync.server.jobs.store.JobStore` beside a `SQLiteStore` (module docstring)."""

    def __init__(self, store: SQLiteStore) -> None:
        self._db = store.connection
        with store.write_transaction(), translated_errors("migrate the jobs table"):
            migrate(self._db, STEPS, version_key="jobs_schema_version")

    def save(self, tx: WriteTransaction, rows: Collection[JobRow]) -> None:
        assert isinstance(tx, SQLiteWriteTransaction)  # opened by the store beside this one
        tx.connection.executemany(_SQL.upsert, [job_values(job) for job in rows])

    def load(self) -> list[JobRow]:
        with translated_errors("read jobs"):
            rows = self._db.execute(_SQL.load).fetchall()
        return [job_of(row) for row in rows]

    def find(self, job_id: str) -> JobRow | None:
        with translated_errors("read a job"):
            row = self._db.execute(_SQL.find, (job_id,)).fetchone()
        return None if row is None else job_with_content(row)

    def streaming(
        self, tx: WriteTransaction, user: str, space: str, message_id: str
    ) -> tuple[int, int]:
        assert isinstance(tx, SQLiteWriteTransaction)
        mine, on_message = tx.connection.execute(
            _SQL.streaming, (user, space, message_id)
        ).fetchone()
        return mine, on_message

    def orphans(self) -> list[JobRow]:
        with translated_errors("read streaming jobs"):
            rows = self._db.execute(_SQL.streaming_rows).fetchall()
        return [job_with_content(row) for row in rows]

    def thread_messages(self, space: str, thread_id: str) -> dict[str, dict[str, Any]]:
        with translated_errors("read a thread's messages"):
            rows = self._db.execute(
                _SQL.thread_messages, thread_params(space, thread_id)
            ).fetchall()
        return messages_of(rows)

    def purge(self, ended_before_ms: int) -> int:
        with translated_errors("purge jobs"):
            cursor = self._db.execute(_SQL.purge, (ended_before_ms,))
        return cursor.rowcount
