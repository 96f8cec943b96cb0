"""`jobs_feature(config)`: the jobs API, registered on a server app as one feature.

It adds the ``/v1/jobs`` routes, and a cleanup context entered after the
core's (the store is open): it opens the job store beside the sync store,
builds the writer (on the core's clock, store thread and space rules) and the
runner, recovers the jobs a previous process left streaming, has the live
hub's revocations end the jobs' event streams, and keeps the runner under
`JOBS_KEY`. On PostgreSQL it first opens the jobs' own connection to the
database (`quietsync.server.jobs.postgres_peers`: this process's owner lock,
and what the other processes say about jobs), closed after the runner. On
shutdown the runner stops producing and flushes what it received before
aiohttp waits for in-flight requests (so open event streams end), and before
the core closes the store.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING

from aiohttp import web

from quietsync.server.app import Feature
from quietsync.server.core import ServerCore
from quietsync.server.errors import ConfigError
from quietsync.server.jobs.config import JobsConfig
from quietsync.server.jobs.keys import JOBS_KEY
from quietsync.server.jobs.runner import JobRunner
from quietsync.server.jobs.sqlite_store import SQLiteJobStore
from quietsync.server.jobs.store import JobStore
from quietsync.server.jobs.views import add_routes
from quietsync.server.jobs.writer import JobWriter
from quietsync.server.keys import CORE_KEY
from quietsync.server.sqlite_store import SQLiteStore
from quietsync.server.store import Store

if TYPE_CHECKING:
    from quietsync.server.jobs.postgres_peers import PostgresPeers

__all__ = ["jobs_feature", "open_job_store"]


def open_job_store(store: Store) -> JobStore:
    """The job store that lives beside `store`, in the same database (created if new)."""
    if isinstance(store, SQLiteStore):
        return SQLiteJobStore(store)
    # Imported only now: asyncpg is an optional extra that an SQLite server must not need
    # (any other store here is a PostgresStore, opened after asyncpg was imported).
    from quietsync.server.jobs.postgres_store import PostgresJobStore
    from quietsync.server.postgres_store import PostgresStore

    if isinstance(store, PostgresStore):
        return PostgresJobStore(store)
    raise ConfigError(f"the jobs feature has no job store for a {type(store).__name__}")


def jobs_feature(config: JobsConfig | None = None) -> Feature:
    """The jobs API with `config` (the defaults if None), for `create_app`'s features."""
    settings = JobsConfig() if config is None else config

    async def runner_ctx(app: web.Application) -> AsyncIterator[None]:
        core = app[CORE_KEY]
        jobs = await core.run(lambda: open_job_store(core.store))
        async with AsyncExitStack() as stack:
            peers = await _peers(core, jobs, stack)
            writer = JobWriter(
                core.store, jobs, core.clock, core.spaces, max_per_user=settings.max_per_user
            )
            runner = JobRunner(settings, writer, core.run, core.hub.publish, peers)
            if peers is not None:
                peers.listen(runner)
            await runner.recover()
            core.hub.on_revoke(runner.revoke)
            app[JOBS_KEY] = runner
            yield  # the runner closes on shutdown (`_stop`), before the store does

    def setup(app: web.Application) -> None:
        app.cleanup_ctx.append(runner_ctx)
        app.on_shutdown.append(_stop)
        add_routes(app.router)

    return setup


async def _peers(core: ServerCore, jobs: JobStore, stack: AsyncExitStack) -> PostgresPeers | None:
    """The other processes on a shared database (PostgreSQL), listened to until `stack`
    closes; None on SQLite (one process per database)."""
    if isinstance(jobs, SQLiteJobStore):
        return None
    from quietsync.server.jobs.postgres_peers import PostgresPeers  # asyncpg: see above
    from quietsync.server.jobs.postgres_store import PostgresJobStore

    assert isinstance(jobs, PostgresJobStore)
    peers = PostgresPeers(str(core.config.db_path), jobs, core.run)
    await peers.start()
    stack.push_async_callback(peers.stop)
    return peers


async def _stop(app: web.Application) -> None:
    if JOBS_KEY in app:
        await app[JOBS_KEY].close()
