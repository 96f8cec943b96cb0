"""`SyncConnection`: one asyncpg connection driven synchronously, on a private event loop.

Stores are synchronous and called from the server's one store thread
(`quietsync.server.app`), while asyncpg is asyncio only. Running its calls on
the server's own event loop would need every store call to become async (the
`Store` protocol, the sync service, the features), and a second thread with
a loop of its own would add a hop per call. Instead the connection lives on an
event loop owned by the store, in the store's thread, and each call runs
there to completion (``run_until_complete``): the store thread blocks on the
database exactly as it blocks on an SQLite fsync, and nothing else runs on
that loop, so the connection is never used concurrently.

**A lost connection** (the database restarted, the backend was terminated, the
network broke) fails the call that finds it with `StoreUnavailableError` (a
`StoreError`, HTTP 503), and a later call opens a new one, with the same
session settings (`SESSION`). A transaction's BEGIN that finds its connection
lost (it died while idle) is sent once more on a new one: nothing was done on
the old one, so the request goes on unharmed. Never later in a transaction: a
transaction whose connection was lost is gone, so every call until it ends
fails too, and its request answers 503 without an acknowledgement; the client sends the same
mutation ids again and the store's per-client marks apply each once, whether
or not the lost COMMIT had landed. Attempts that fail are spaced by `Backoff`
(`RETRY_FIRST` doubling to `RETRY_MAX` seconds): a call before the next
attempt is due fails at once, without touching the network, so a database
that is down costs the server nothing but 503s, never a loop of connects.

asyncpg, OS and loop errors are translated into `StoreError` by
`translated_errors`; none goes further.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

import asyncpg
import attrs

from quietsync.server.errors import StoreError, StoreUnavailableError

__all__ = [
    "APPLICATION_NAME",
    "CONNECT_TIMEOUT",
    "DB_ERRORS",
    "RETRY_FIRST",
    "RETRY_MAX",
    "SESSION",
    "Backoff",
    "SyncConnection",
    "translated_errors",
]

log = logging.getLogger(__name__)

T = TypeVar("T")

APPLICATION_NAME = "quietsync-store"
"""How the store's connection shows in ``pg_stat_activity``."""
SESSION = {
    "application_name": APPLICATION_NAME,
    # Plans made for each call's values and the table's size now: a prepared
    # statement's generic plan, made while `fields` was small, kept scanning it
    # whole for every row a push looked up (0.5 s a push of 100 at 24k rows).
    "plan_cache_mode": "force_custom_plan",
}
"""The session settings of every store connection, the first and each reconnect's."""
CONNECT_TIMEOUT = 10.0
"""Seconds a connect may take (the store thread waits that long at most per attempt)."""
RETRY_FIRST, RETRY_MAX = 0.1, 5.0
DB_ERRORS = (
    OSError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    TimeoutError,
)
"""What a call to the database raises when the database (or the way to it) fails."""
_LOST = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,  # class 08: the connection broke
    asyncpg.AdminShutdownError,  # 57P01-57P03: the server is going away, or not yet back
    asyncpg.CrashShutdownError,
    asyncpg.CannotConnectNowError,
    # Client side: the connection is closed, or its protocol was left mid-operation (an
    # `executemany` cut by a terminated backend left "another operation is in progress"
    # for every later call, COMMIT included). Argument errors are `asyncpg.DataError`,
    # a server-side class, and keep the connection.
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
)
"""What leaves a connection unusable: it is dropped, and a later call opens a new one."""


@contextmanager
def translated_errors(what: str) -> Iterator[None]:
    """Turn a database error raised inside into `StoreError` ("PostgreSQL failed to <what>")."""
    try:
        yield
    except DB_ERRORS as exc:
        raise StoreError(f"PostgreSQL failed to {what}: {exc}") from exc


@attrs.define
class Backoff:
    """Delays between attempts to reach the database: `RETRY_FIRST`, doubling up to
    `RETRY_MAX`; `reset` after a success."""

    first: float = RETRY_FIRST
    most: float = RETRY_MAX
    _next: float = attrs.field(
        init=False, default=attrs.Factory(lambda self: self.first, takes_self=True)
    )

    def failed(self) -> float:
        """The delay before the next attempt (this failure's); the one after is longer."""
        delay = self._next
        self._next = min(delay * 2, self.most)
        return delay

    def reset(self) -> None:
        self._next = self.first


class SyncConnection:
    """An asyncpg connection to `url`, each call run to completion on its own event loop;
    opened again by a later call when lost (see the module docstring). `now` is the
    monotonic clock the backoff reads (injectable for tests)."""

    def __init__(self, url: str, *, now: Callable[[], float] = time.monotonic) -> None:
        self._url = url
        self._now = now
        self._loop = asyncio.new_event_loop()
        self._backoff = Backoff()
        self._not_before = 0.0  # monotonic time before which no connect is tried
        self._in_transaction = False
        self._found_lost = False  # the last call failed finding the connection lost
        try:
            self._db: asyncpg.Connection | None = self._connect()
        except BaseException:
            self._loop.close()
            raise

    def _connect(self) -> asyncpg.Connection:
        db: asyncpg.Connection = self._loop.run_until_complete(
            asyncpg.connect(self._url, timeout=CONNECT_TIMEOUT, server_settings=SESSION)
        )
        return db

    def _connection(self) -> asyncpg.Connection:
        """The open connection; a new one if it was lost, out of a transaction, when due."""
        if self._loop.is_closed():
            raise StoreError("the PostgreSQL store is closed")
        if self._db is not None and not self._db.is_closed():
            return self._db
        if self._in_transaction:
            raise StoreUnavailableError("lost the connection to PostgreSQL in a transaction")
        wait = self._not_before - self._now()
        if wait > 0:
            raise StoreUnavailableError(f"PostgreSQL is unreachable; next attempt in {wait:.1f} s")
        try:
            self._db = self._connect()
        except DB_ERRORS as exc:
            delay = self._backoff.failed()
            self._not_before = self._now() + delay
            log.warning("cannot reconnect to PostgreSQL (%s); next attempt in %.1f s", exc, delay)
            raise StoreUnavailableError(f"cannot reconnect to PostgreSQL: {exc}") from exc
        self._backoff.reset()
        log.warning("reconnected to PostgreSQL")
        return self._db

    def server_pid(self) -> int | None:
        """The backend pid of the connection (None while there is none); safe from any
        thread."""
        db = self._db
        return (
            None if self._loop.is_closed() or db is None or db.is_closed() else db.get_server_pid()
        )

    def call(self, fn: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        """``await fn(connection)``, run to completion: asyncpg code shared with callers on an
        event loop (`quietsync.server.postgres_changes`)."""
        return self._run(fn)

    def _run(self, call: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        self._found_lost = False
        db = self._connection()
        try:
            return self._loop.run_until_complete(call(db))
        except DB_ERRORS as exc:
            if not (db.is_closed() or isinstance(exc, _LOST)):
                raise
            db.terminate()  # closes the socket (the server rolls back what was open)
            self._db = None
            self._found_lost = True
            log.warning("lost the connection to PostgreSQL: %s", exc)
            raise StoreUnavailableError(f"lost the connection to PostgreSQL: {exc}") from exc

    def execute(self, query: str, *args: object) -> str:
        return self._run(lambda db: db.execute(query, *args))

    def executemany(self, query: str, args: Iterable[Sequence[Any]]) -> None:
        self._run(lambda db: db.executemany(query, args))

    def fetch(self, query: str, *args: object) -> list[asyncpg.Record]:
        return self._run(lambda db: db.fetch(query, *args))

    def fetchval(self, query: str, *args: object) -> Any:
        return self._run(lambda db: db.fetchval(query, *args))

    @contextmanager
    def transaction(self, begin: str = "BEGIN") -> Iterator[None]:
        """`begin`; commit on exit, roll back on any error (a lost connection is left be)."""
        with translated_errors("begin a transaction"):
            try:
                self.execute(begin)
            except StoreUnavailableError:
                if not self._found_lost:  # unreachable, or not due yet: nothing to retry
                    raise
                self.execute(begin)  # it died idle: nothing was sent on it but this BEGIN
        self._in_transaction = True
        try:
            yield
            with translated_errors("commit"):
                self.execute("COMMIT")
        except BaseException:
            db = self._db
            if db is not None and not db.is_closed() and db.is_in_transaction():
                with translated_errors("roll back"):
                    self.execute("ROLLBACK")
            raise
        finally:
            self._in_transaction = False

    def close(self) -> None:
        if self._loop.is_closed():
            return
        try:
            if self._db is not None:
                with translated_errors("close"):
                    self._loop.run_until_complete(self._db.close())
        finally:
            self._loop.close()
