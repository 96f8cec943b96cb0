"""`create_app(config, features)`: the aiohttp application of the sync server.

The factory only composes: the sync core (store, clock, live hub, the sync
routes) and then each feature, a callable that registers its own routes, app
keys, cleanup contexts and shutdown hooks on the app (the jobs API is one:
`quietsync.server.jobs.jobs_feature`).

Resources live in `cleanup_ctx`: the store is opened on startup and closed on
cleanup, after aiohttp has let in-flight requests finish, so a push that was
being committed at shutdown is committed (or refused) before the database
closes. A feature's context is entered after the core's (the store is open)
and left before it. Live sockets are closed first (`on_shutdown`), with code
1001.

Every store call runs on ONE worker thread: sqlite3 blocks (a commit with
``synchronous=FULL`` waits for fsync), so running it inline would stall every
socket and request on the event loop for the length of each push (8-15 ms
for 1,000 mutations here); a single worker also serializes all writes on the
one connection, which is what SQLite wants anyway. Measured with
``benchmarks/server_push.py``: inline calls are 10-20% faster for one-mutation
pushes and no faster at 1,000, so the thread costs little where it matters.
The server `Clock` is only touched from that thread: the `SyncService` and
the features share it there (`quietsync.server.core.ServerCore`).

The PostgreSQL store (a ``postgresql://`` URL as `ServerConfig.db_path`) is
called the same way, from the same one thread: it drives its asyncpg
connection on an event loop of its own there
(`quietsync.server.postgres_connection`). On PostgreSQL the app also LISTENs for
the commits of the other server processes on that database, on its own
connection on the event loop, and wakes the live sockets they concern
(`quietsync.server.postgres_listen`): several processes may share one
database. On SQLite one process serves one database, and live changes are
only ever this process's.

Compaction runs on that thread too, every `ServerConfig.compact_every`
seconds: records deleted more than `tombstone_horizon` ago are removed (and
replicas whose cursor predates them are told to resync).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from aiohttp import web

from quietsync.conflicts import Clock, wall_clock_ms
from quietsync.server.auth import auth_middleware
from quietsync.server.config import ServerConfig, is_postgres_url
from quietsync.server.core import ServerCore
from quietsync.server.errors import ConfigError, StoreError
from quietsync.server.keys import (
    CHANGE_READER_KEY,
    CONFIG_KEY,
    CORE_KEY,
    HUB_KEY,
    SPACES_KEY,
    SYNC_KEY,
)
from quietsync.server.live import LiveHub
from quietsync.server.routes import add_routes
from quietsync.server.spaces import SpaceService
from quietsync.server.spaces.sqlite_store import SQLiteSpaceStore
from quietsync.server.spaces.store import SpaceStore
from quietsync.server.sqlite_store import SQLiteStore
from quietsync.server.store import Store
from quietsync.server.sync import SyncService
from quietsync.server.views import error_middleware

__all__ = ["Feature", "create_app"]

log = logging.getLogger(__name__)

S = TypeVar("S", bound=Store)

Feature = Callable[[web.Application], None]
"""Registers one feature's routes, keys and contexts on the app (after the core's)."""


def _open_stores(config: ServerConfig) -> tuple[Store, SpaceStore]:
    """The sync store `config.db_path` names, and the memberships store beside it."""
    if not is_postgres_url(config.db_path):
        sqlite = SQLiteStore(config.db_path)
        return sqlite, _beside(sqlite, SQLiteSpaceStore)
    # Imported here, not at the top: asyncpg is an optional extra, and an SQLite
    # server must neither need it nor pay for importing it.
    try:
        from quietsync.server.postgres_store import PostgresStore
        from quietsync.server.spaces.postgres_store import PostgresSpaceStore
    except ImportError as exc:
        raise ConfigError(
            f"a postgresql:// database needs asyncpg ({exc}): pip install 'quietsync[postgres]'"
        ) from exc
    postgres = PostgresStore(str(config.db_path))
    return postgres, _beside(postgres, PostgresSpaceStore)


def _beside(store: S, make: Callable[[S], SpaceStore]) -> SpaceStore:
    """``make(store)``, closing `store` if that fails."""
    try:
        return make(store)
    except BaseException:
        store.close()
        raise


def _open(config: ServerConfig, hub: LiveHub, executor: ThreadPoolExecutor) -> ServerCore:
    store, memberships = _open_stores(config)
    spaces = SpaceService(memberships, store, max_per_user=config.max_spaces_per_user)
    clock = Clock(config.node_id, max_drift_ms=config.max_drift_ms, last=store.last_stamp())
    return ServerCore(config, store, clock, hub, executor, spaces)


async def _core_ctx(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG_KEY]
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="quietsync-store")
    try:
        core = await ServerCore.run_on(executor, lambda: _open(config, app[HUB_KEY], executor))
        app[CORE_KEY] = core
        app[SPACES_KEY] = core.spaces
        app[SYNC_KEY] = SyncService(
            core.store,
            core.clock,
            resolvers=config.resolvers,
            max_batch=config.max_batch,
            page_max_bytes=config.page_max_bytes,
            suppress_identical=config.suppress_identical,
        )
        log.info("store open: %s (history %s)", config.db_label, core.store.history())
        compactor = asyncio.create_task(_compact_forever(core), name="quietsync-compact")
        yield
        compactor.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await compactor
        await core.run(core.store.close)
        log.info("store closed: %s", config.db_label)
    finally:
        executor.shutdown(wait=True)


async def _compact_forever(core: ServerCore) -> None:
    """Collect old tombstones every `compact_every` seconds (never if 0)."""
    every, horizon = core.config.compact_every, core.config.tombstone_horizon
    while every:
        await asyncio.sleep(every)
        before = wall_clock_ms() - int(horizon * 1000)
        try:
            removed = await core.run(lambda b=before: core.store.collect_tombstones(b))
        except StoreError:
            log.exception("compaction failed; trying again in %s s", every)
        else:
            if removed:
                log.info("compaction removed %d records deleted before the horizon", removed)


async def _listen_ctx(app: web.Application) -> AsyncIterator[None]:
    """Hear the other processes' commits (PostgreSQL only; asyncpg imported only here)."""
    from quietsync.server.postgres_listen import LiveListener
    from quietsync.server.postgres_store import PostgresStore

    store = app[CORE_KEY].store
    assert isinstance(store, PostgresStore)
    listener = LiveListener(str(app[CONFIG_KEY].db_path), app[HUB_KEY], store.connection.server_pid)
    await listener.start()
    app[CHANGE_READER_KEY] = listener
    yield
    await listener.stop()


async def _close_live(app: web.Application) -> None:
    await app[HUB_KEY].close_all()


def create_app(config: ServerConfig, features: Iterable[Feature] = ()) -> web.Application:
    """The sync server for `config`, with `features`; the store opens when the app starts."""
    app = web.Application(
        middlewares=[error_middleware, auth_middleware],
        client_max_size=config.max_body_bytes,
    )
    app[CONFIG_KEY] = config
    app[HUB_KEY] = LiveHub(config.live_queue_limit, config.live_queue_max_bytes)
    app.cleanup_ctx.append(_core_ctx)
    if is_postgres_url(config.db_path):
        app.cleanup_ctx.append(_listen_ctx)
    app.on_shutdown.append(_close_live)
    add_routes(app.router)
    for feature in features:
        feature(app)
    return app
