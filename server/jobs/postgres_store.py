"""`PostgresJobStore`: the job rows in a ``jobs`` table of the PostgreSQL store's database.

The PostgreSQL twin of `quietsync.server.jobs.sqlite_store`: it shares the
`PostgresStore`'s one connection, so a job row is committed in the same
transaction as the record writes it goes with (`save`), and it is only
touched from the store's worker thread. Its rows and queries are the SQLite
job store's (`quietsync.server.jobs.table`); its table has its own migrations
and version (``meta.jobs_schema_version``, `quietsync.server.postgres_schema`).
It began at the SQLite table's third layout, so its history starts there:

1. ``jobs("user", space, job_id, thread_id, message_id, status, stamp,
   started_ms, error, ended_ms)`` (``user`` quoted: a reserved word here);
2. ``owner`` (the server process running the job), ``abort_asked``, indexes
   by ``job_id`` and of the streaming rows, and the ``job_owners`` sequence.

**Several server processes.** Each process is an *owner*: a number from
``job_owners``, never given twice, and a session-level advisory lock
``(OWNER_LOCK, owner)`` held on a connection of its own for as long as the
process lives (`quietsync.server.jobs.postgres_peers`). A job runs in the
process that started it: its row's ``owner``. Then:

* a process that is gone (killed, or its connection lost) no longer holds its
  lock; `orphans` finds the owners of streaming rows whose lock it can take
  (transaction-scoped, so two survivors never both get it) and moves their
  rows to this process in the same statement: exactly one survivor ends each;
* `save` refuses (`JobTakenError`) to write a job whose row another process
  has taken meanwhile, and tells every process which jobs it wrote
  (``NOTIFY quietsync_jobs, 'written <job id>'``, at commit): a wake-up, the
  rows are read from the table (`find`);
* `streaming` takes two transaction-scoped advisory locks, the user's and the
  message's, before counting: two starts racing in two processes are
  serialized, and the second counts the first (a lock per user and per
  message, not one for every start: unrelated starts never wait);
* `ask_abort` marks a row and notifies ``'abort <job id>'``; its owner ends
  the job (and finds the marks again after its connection was lost:
  `aborts_asked`).
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from quietsync.server.errors import JobTakenError
from quietsync.server.jobs.store import JobRow
from quietsync.server.jobs.table import (
    JobQueries,
    job_of,
    job_values,
    job_with_content,
    messages_of,
    thread_params,
)
from quietsync.server.postgres_connection import translated_errors
from quietsync.server.postgres_schema import migrate
from quietsync.server.postgres_store import PostgresStore, connection_of
from quietsync.server.store import WriteTransaction

__all__ = ["JOBS_CHANNEL", "OWNER_LOCK", "STEPS", "PostgresJobStore"]

JOBS_CHANNEL = "quietsync_jobs"
"""``'written <job id>'`` after each write of a job, ``'abort <job id>'`` when one is asked."""
OWNER_LOCK = 0x716A6F62
"""The first key of every owner's advisory lock ``(OWNER_LOCK, owner)``."""
_USER_LOCK, _MESSAGE_LOCK = OWNER_LOCK + 1, OWNER_LOCK + 2

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
    """
    ALTER TABLE jobs ADD COLUMN owner INTEGER NOT NULL DEFAULT 0,
        ADD COLUMN abort_asked BOOLEAN NOT NULL DEFAULT false;
    CREATE INDEX jobs_by_id ON jobs (job_id);
    CREATE INDEX jobs_streaming ON jobs (owner) WHERE status = 'streaming';
    CREATE SEQUENCE job_owners AS INTEGER;
    """,
)
"""Each version's SQL script (`quietsync.server.postgres_schema.migrate`)."""

_SQL = JobQueries("$", owned=True)
_TAKEN = "SELECT job_id FROM jobs WHERE job_id = ANY($1::text[]) AND owner <> $2 FOR UPDATE"
_WRITTEN = f"SELECT pg_notify('{JOBS_CHANNEL}', 'written ' || id) FROM unnest($1::text[]) AS id"
_CLAIM = (  # the owners whose lock this transaction can take are gone: their rows move here
    "UPDATE jobs SET owner = $1 WHERE status = 'streaming' AND owner IN (SELECT owner FROM"
    " (SELECT DISTINCT owner FROM jobs WHERE status = 'streaming' AND owner <> $1) AS others"
    f" WHERE pg_try_advisory_xact_lock({OWNER_LOCK}, others.owner)) RETURNING job_id"
)
_CLAIMED = _SQL.rows_where("jobs.job_id = ANY($1::text[])")


class PostgresJobStore:
    """`quietsync.server.jobs.store.JobStore` beside a `PostgresStore` (module docstring)."""

    def __init__(self, store: PostgresStore) -> None:
        self._db = store.connection
        self.owner = 0
        """This process's owner number (set by `PostgresPeers` once its lock is held)."""
        with store.write_transaction(), translated_errors("migrate the jobs table"):
            migrate(self._db, STEPS, version_key="jobs_schema_version")

    def save(self, tx: WriteTransaction, rows: Collection[JobRow]) -> None:
        db, ids = connection_of(tx), [job.job_id for job in rows]
        taken = db.fetch(_TAKEN, ids, self.owner)
        if taken:
            raise JobTakenError(f"jobs {sorted(r[0] for r in taken)} were ended by another process")
        db.executemany(_SQL.upsert, [(*job_values(job), self.owner) for job in rows])
        db.execute(_WRITTEN, ids)

    def load(self) -> list[JobRow]:
        with translated_errors("read jobs"):
            rows = self._db.fetch(_SQL.load)
        return [job_of(row) for row in rows]

    def find(self, job_id: str) -> JobRow | None:
        with translated_errors("read a job"):
            rows = self._db.fetch(_SQL.find, job_id)
        return job_with_content(rows[0]) if rows else None

    def streaming(
        self, tx: WriteTransaction, user: str, space: str, message_id: str
    ) -> tuple[int, int]:
        db = connection_of(tx)
        db.execute(  # the user's first, then the message's: no two starts wait in a cycle
            "SELECT pg_advisory_xact_lock($1, hashtext($2))", _USER_LOCK, user
        )
        db.execute(
            "SELECT pg_advisory_xact_lock($1, hashtext($2))", _MESSAGE_LOCK, f"{space} {message_id}"
        )
        [(mine, on_message)] = db.fetch(_SQL.streaming, user, space, message_id)
        return mine, on_message

    def orphans(self) -> list[JobRow]:
        with self._db.transaction(), translated_errors("claim the jobs of a gone process"):
            claimed = [row[0] for row in self._db.fetch(_CLAIM, self.owner)]
            rows = self._db.fetch(_CLAIMED, claimed) if claimed else []
        return [job_with_content(row) for row in rows]

    def ask_abort(self, job_id: str) -> None:
        """Ask the process running `job_id` to abort it (nothing if it is not streaming)."""
        with self._db.transaction(), translated_errors("ask for an abort"):
            self._db.execute(
                "UPDATE jobs SET abort_asked = true WHERE job_id = $1 AND status = 'streaming'"
                f" RETURNING pg_notify('{JOBS_CHANNEL}', 'abort ' || job_id)",
                job_id,
            )

    def aborts_asked(self) -> list[str]:
        """This process's streaming jobs whose abort was asked (`ask_abort`)."""
        with translated_errors("read the aborts asked"):
            rows = self._db.fetch(
                "SELECT job_id FROM jobs WHERE owner = $1 AND status = 'streaming' AND abort_asked",
                self.owner,
            )
        return [row[0] for row in rows]

    def thread_messages(self, space: str, thread_id: str) -> dict[str, dict[str, Any]]:
        with translated_errors("read a thread's messages"):
            rows = self._db.fetch(_SQL.thread_messages, *thread_params(space, thread_id))
        return messages_of(rows)

    def purge(self, ended_before_ms: int) -> int:
        with translated_errors("purge jobs"):
            status = self._db.execute(_SQL.purge, ended_before_ms)
        return int(status.rsplit(" ", 1)[-1])  # the command tag: "DELETE <count>"
