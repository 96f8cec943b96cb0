"""Fresh PostgreSQL databases for a benchmark run, on a server whose user may create them."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from urllib.parse import urlsplit

__all__ = ["DEFAULT_PG_DSN", "default_pg_dsn", "pg_databases"]

DEFAULT_PG_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"


def default_pg_dsn() -> str:
    """``$QUIETSYNC_TEST_PG_DSN``, else `DEFAULT_PG_DSN`."""
    return os.environ.get("QUIETSYNC_TEST_PG_DSN") or DEFAULT_PG_DSN


async def _admin(dsn: str, statement: str) -> None:
    import asyncpg  # the optional extra: only PostgreSQL runs need it

    db = await asyncpg.connect(dsn)
    try:
        await db.execute(statement)
    finally:
        await db.close()


@asynccontextmanager
async def pg_databases(dsn: str, suffixes: Sequence[str]) -> AsyncIterator[list[str]]:
    """One new database per suffix (``qs_bench_<random><suffix>``) on `dsn`'s server, as
    URLs; all dropped on exit."""
    name = f"qs_bench_{uuid.uuid4().hex[:12]}"
    created: list[str] = []
    try:
        for suffix in suffixes:
            await _admin(dsn, f"CREATE DATABASE {name}{suffix}")
            created.append(f"{name}{suffix}")
        yield [urlsplit(dsn)._replace(path=f"/{db}").geturl() for db in created]
    finally:
        for db in created:
            await _admin(dsn, f"DROP DATABASE {db} WITH (FORCE)")
