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

asyncpg, OS and loop errors are translated into `StoreError` by
`translated_errors`; none goes further.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

import asyncpg

from quietsync.server.errors import StoreError

__all__ = ["SyncConnection", "translated_errors"]

T = TypeVar("T")


@contextmanager
def translated_errors(what: str) -> Iterator[None]:
    """Turn a database error raised inside into `StoreError` ("PostgreSQL failed to <what>")."""
    try:
        yield
    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
        raise StoreError(f"PostgreSQL failed to {what}: {exc}") from exc


class SyncConnection:
    """An asyncpg connection to `url`, each call run to completion on its own event loop."""

    def __init__(self, url: str) -> None:
        self._loop = asyncio.new_event_loop()
        try:
            # Plans made for each call's values and the table's size now: a prepared
            # statement's generic plan, made while `fields` was small, kept scanning it
            # whole for every row a push looked up (0.5 s a push of 100 at 24k rows).
            self._db: asyncpg.Connection = self._run(
                asyncpg.connect(url, server_settings={"plan_cache_mode": "force_custom_plan"})
            )
        except BaseException:
            self._loop.close()
            raise

    def _run(self, call: Awaitable[T]) -> T:
        return self._loop.run_until_complete(call)

    def _open(self) -> asyncpg.Connection:
        if self._loop.is_closed():
            raise StoreError("the PostgreSQL store is closed")
        return self._db

    def server_pid(self) -> int | None:
        """The backend pid of the connection (None once closed); safe from any thread."""
        return None if self._loop.is_closed() else self._db.get_server_pid()

    def call(self, fn: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        """``await fn(connection)``, run to completion: asyncpg code shared with callers on an
        event loop (`quietsync.server.postgres_changes`)."""
        return self._run(fn(self._open()))

    def execute(self, query: str, *args: object) -> str:
        return self._run(self._open().execute(query, *args))

    def executemany(self, query: str, args: Iterable[Sequence[Any]]) -> None:
        self._run(self._open().executemany(query, args))

    def fetch(self, query: str, *args: object) -> list[asyncpg.Record]:
        return self._run(self._open().fetch(query, *args))

    def fetchval(self, query: str, *args: object) -> Any:
        return self._run(self._open().fetchval(query, *args))

    @contextmanager
    def transaction(self, begin: str = "BEGIN") -> Iterator[None]:
        """`begin`; commit on exit, roll back on any error (a dead connection is left be)."""
        with translated_errors("begin a transaction"):
            self.execute(begin)
        try:
            yield
            with translated_errors("commit"):
                self.execute("COMMIT")
        except BaseException:
            if not self._db.is_closed() and self._db.is_in_transaction():
                with translated_errors("roll back"):
                    self.execute("ROLLBACK")
            raise

    def close(self) -> None:
        if self._loop.is_closed():
            return
        try:
            with translated_errors("close"):
                self._run(self._db.close())
        finally:
            self._loop.close()
