"""`create_app(config)`: the aiohttp application of the sync server.

Resources live in `cleanup_ctx`: the store is opened on startup and closed on
cleanup, after aiohttp has let in-flight requests finish, so a push that was
being committed at shutdown is committed (or refused) before the database
closes. Live sockets are closed first (`on_shutdown`), with code 1001.

Every store call runs on ONE worker thread: sqlite3 blocks (a commit with
``synchronous=FULL`` waits for fsync), so running it inline would stall every
socket and request on the event loop for the length of each push (about 14 ms
for 1,000 mutations here); a single worker also serializes all writes on the
one connection, which is what SQLite wants anyway. Measured with
``benchmarks/server_push.py``: inline calls are 10-20% faster for one-mutation
pushes and no faster at 1,000, so the thread costs little where it matters.
The server `Clock` is only touched from that thread: the `SyncService` and the
`JobWriter` share it there. The `JobRunner` starts once the store is open
(ending jobs a previous process left streaming) and stops on shutdown, before
aiohttp waits for in-flight requests, so open job event streams end.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from aiohttp import web

from quietsync.conflicts import Clock
from quietsync.server.auth import auth_middleware
from quietsync.server.config import ServerConfig
from quietsync.server.job_writer import JobWriter
from quietsync.server.jobs import JobRunner
from quietsync.server.keys import CONFIG_KEY, EXECUTOR_KEY, HUB_KEY, JOBS_KEY, SYNC_KEY
from quietsync.server.live import LiveHub
from quietsync.server.routes import add_routes
from quietsync.server.sqlite_store import SQLiteStore
from quietsync.server.sync import SyncService
from quietsync.server.views import error_middleware

__all__ = ["create_app"]

log = logging.getLogger(__name__)

T = TypeVar("T")


def _open(config: ServerConfig) -> tuple[SyncService, JobWriter]:
    store = SQLiteStore(config.db_path)
    clock = Clock(config.node_id, max_drift_ms=config.max_drift_ms, last=store.last_stamp())
    sync = SyncService(
        store,
        clock,
        resolvers=config.resolvers,
        max_batch=config.max_batch,
        suppress_identical=config.suppress_identical,
    )
    return sync, JobWriter(store, clock)


async def _store_ctx(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG_KEY]
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="quietsync-store")
    loop = asyncio.get_running_loop()
    try:
        sync, writer = await loop.run_in_executor(executor, _open, config)
        app[EXECUTOR_KEY] = executor
        app[SYNC_KEY] = sync
        log.info("store open: %s", config.db_path)

        def run_on_store(fn: Callable[[], T]) -> Awaitable[T]:
            return loop.run_in_executor(executor, fn)

        jobs = JobRunner(config, writer, run_on_store, app[HUB_KEY].publish)
        await jobs.recover()
        app[JOBS_KEY] = jobs
        yield
        await loop.run_in_executor(executor, sync.close)
        log.info("store closed: %s", config.db_path)
    finally:
        executor.shutdown(wait=True)


async def _close_live(app: web.Application) -> None:
    await app[HUB_KEY].close_all()


async def _stop_jobs(app: web.Application) -> None:
    if JOBS_KEY in app:
        await app[JOBS_KEY].close()


def create_app(config: ServerConfig) -> web.Application:
    """The sync server for `config`; the store opens when the app starts."""
    app = web.Application(
        middlewares=[error_middleware, auth_middleware],
        client_max_size=config.max_body_bytes,
    )
    app[CONFIG_KEY] = config
    app[HUB_KEY] = LiveHub(config.live_queue_limit)
    app.cleanup_ctx.append(_store_ctx)
    app.on_shutdown.append(_close_live)
    app.on_shutdown.append(_stop_jobs)
    add_routes(app)
    return app
