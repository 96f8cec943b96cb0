"""PostgreSQL for the benchmarks and the fault harness: which server, and new databases.

asyncpg is an optional extra (``quietsync[postgres]``), imported only when a
database is made.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import urlsplit

__all__ = ["DEFAULT_PG_DSN", "new_database"]

DEFAULT_PG_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
"""Where ``--store postgres`` creates its databases unless told (``--pg-dsn``)."""


async def _admin(dsn: str, statement: str) -> None:
    import asyncpg

    db = await asyncpg.connect(dsn)
    try:
        await db.execute(statement)
    finally:
        await db.close()


@asynccontextmanager
async def new_database(dsn: str, name: str) -> AsyncIterator[str]:
    """A new empty database `name` on `dsn`'s server (whose user may create databases), as
    a URL; dropped on exit, whoever is still connected."""
    await _admin(dsn, f"CREATE DATABASE {name}")
    try:
        yield urlsplit(dsn)._replace(path=f"/{name}").geturl()
    finally:
        await _admin(dsn, f"DROP DATABASE {name} WITH (FORCE)")
