"""PostgreSQL for the benchmarks and the fault harness: which server, and new databases.

asyncpg is an optional extra (``quietsync[postgres]``), imported only when a
database is made.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from urllib.parse import urlsplit

__all__ = ["DEFAULT_PG_DSN", "default_pg_dsn", "new_database", "pg_databases", "run_admin"]

DEFAULT_PG_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
"""Where ``--store postgres`` creates its databases unless told (``--pg-dsn``)."""


def default_pg_dsn() -> str:
    """``$QUIETSYNC_TEST_PG_DSN``, else `DEFAULT_PG_DSN`."""
    return os.environ.get("QUIETSYNC_TEST_PG_DSN") or DEFAULT_PG_DSN


async def run_admin(dsn: str, statement: str) -> None:
    """Run `statement` (CREATE or DROP DATABASE, say) on a connection of its own to `dsn`."""
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
    await run_admin(dsn, f"CREATE DATABASE {name}")
    try:
        yield urlsplit(dsn)._replace(path=f"/{name}").geturl()
    finally:
        await run_admin(dsn, f"DROP DATABASE {name} WITH (FORCE)")


@asynccontextmanager
async def pg_databases(dsn: str, suffixes: Sequence[str]) -> AsyncIterator[list[str]]:
    """One new database per suffix (``qs_bench_<random><suffix>``), as URLs; all dropped
    on exit."""
    name = f"qs_bench_{uuid.uuid4().hex[:12]}"
    async with AsyncExitStack() as stack:
        yield [
            await stack.enter_async_context(new_database(dsn, f"{name}{suffix}"))
            for suffix in suffixes
        ]
