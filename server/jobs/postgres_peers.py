"""`PostgresPeers`: this server process among the others on one PostgreSQL database, for jobs.

One dedicated connection (`quietsync.server.postgres_listen.Listener`, shown
as ``quietsync-jobs`` in ``pg_stat_activity``), opened when the jobs feature
starts, which:

* takes this process's owner number from the ``job_owners`` sequence (once)
  and holds its session-level advisory lock for as long as the connection
  lives: the lock is how the other processes know this one is alive
  (`quietsync.server.jobs.postgres_store`, `PostgresJobStore.orphans`). A
  process killed with ``kill -9`` loses its connection, PostgreSQL drops the
  lock at once, and the next check of a survivor (every
  `JobsConfig.orphan_check` seconds) takes over its streaming jobs. A host
  that vanishes without closing the connection is found by TCP keepalives
  the connection asks PostgreSQL for (`KEEPALIVE_IDLE`, ...);
* LISTENs on `JOBS_CHANNEL`: ``written <job id>`` wakes the readers of a job
  of another process that follow it here (`JobRunner.written`), ``abort <job
  id>`` ends one of this process's jobs (`JobRunner.abort_asked`).

A lost connection is opened again (with backoff) and the lock taken again;
then every followed job is read once, and the aborts asked meanwhile are
found in the table (`PostgresJobStore.aborts_asked`). While it was lost,
another process may have taken this one's jobs over: their next write is
refused (`JobTakenError`) and they are followed from then on, as any other
process's.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

import asyncpg

from quietsync.server.errors import StoreError
from quietsync.server.jobs.postgres_store import JOBS_CHANNEL, OWNER_LOCK, PostgresJobStore
from quietsync.server.postgres_listen import Listener

__all__ = ["KEEPALIVE_COUNT", "KEEPALIVE_IDLE", "KEEPALIVE_INTERVAL", "PeerEvents", "PostgresPeers"]

KEEPALIVE_IDLE, KEEPALIVE_INTERVAL, KEEPALIVE_COUNT = 10, 5, 3
"""TCP keepalives of the jobs connection, on the database's side: a process whose host
vanishes without closing its connection (power lost, network cut) is found gone, and its
lock dropped, after about 10 + 5 x 3 = 25 s instead of the system's default (2 hours)."""

log = logging.getLogger(__name__)

T = TypeVar("T")


class PeerEvents(Protocol):
    """What the other processes tell this one's runner (`JobRunner`)."""

    def written(self, job_id: str) -> None: ...

    def abort_asked(self, job_id: str) -> None: ...

    def heard_again(self) -> None: ...


class PostgresPeers(Listener):
    """The jobs' connection of this process (module docstring); `start` it before the runner
    recovers (it sets the job store's owner), `listen` once the runner exists."""

    application_name = "quietsync-jobs"
    server_settings = {
        "tcp_keepalives_idle": str(KEEPALIVE_IDLE),
        "tcp_keepalives_interval": str(KEEPALIVE_INTERVAL),
        "tcp_keepalives_count": str(KEEPALIVE_COUNT),
    }

    def __init__(
        self,
        url: str,
        jobs: PostgresJobStore,
        run_on_store: Callable[[Callable[[], T]], Awaitable[T]],
    ) -> None:
        super().__init__(url)
        self._jobs = jobs
        self._run_on_store = run_on_store
        self._events: PeerEvents | None = None
        self._again: asyncio.Task[None] | None = None

    def listen(self, events: PeerEvents) -> None:
        """From now on, tell `events` what the other processes say."""
        self._events = events

    def channels(self) -> dict[str, Callable[[int, str], None]]:
        return {JOBS_CHANNEL: lambda _pid, payload: self._on_notify(payload)}

    async def _prepare(self, db: asyncpg.Connection) -> None:
        if not self._jobs.owner:
            self._jobs.owner = await db.fetchval("SELECT nextval('job_owners')::integer")
        await db.execute("SELECT pg_advisory_lock($1, $2)", OWNER_LOCK, self._jobs.owner)

    def _heard_again(self) -> None:
        if self._events is not None:
            self._events.heard_again()
        self._again = asyncio.create_task(self._find_aborts(), name="quietsync-jobs-aborts")

    async def _find_aborts(self) -> None:
        try:
            asked = await self._run_on_store(self._jobs.aborts_asked)
        except StoreError as exc:
            log.warning("could not read the aborts asked while not listening: %s", exc)
            return
        for job_id in asked:
            self._on_notify(f"abort {job_id}")

    def _on_notify(self, payload: str) -> None:
        kind, _, job_id = payload.partition(" ")
        if self._events is None:
            return
        if kind == "written":
            self._events.written(job_id)
        elif kind == "abort":
            self._events.abort_asked(job_id)
        else:
            log.warning("ignored a notification on %s: %r", JOBS_CHANNEL, payload)

    async def ask_abort(self, job_id: str) -> None:
        """Ask the process running `job_id` to end it as aborted (it answers by writing it)."""
        await self._run_on_store(lambda: self._jobs.ask_abort(job_id))

    async def stop(self) -> None:
        if self._again is not None:
            self._again.cancel()
        await super().stop()
