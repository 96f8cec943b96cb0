"""`benchmarks.server_push --store postgres` compares like with like: its bare handler
ends with exactly the rows quietsync's PostgreSQL store writes for the same pushes."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import asyncpg
import pytest

from benchmarks.server_push import SPACE, TOKEN, bare_server, bodies, throughput
from quietsync.testing import running_server
from tests.pg import fresh_database

TABLES = {
    "fields": "SELECT * FROM fields ORDER BY seq",
    "clients": "SELECT * FROM clients ORDER BY client",
    "heads": "SELECT * FROM heads",
    "conflicts": "SELECT * FROM conflicts ORDER BY pos",
}


@pytest.fixture
def bare_url(pg_url: str, pg_admin: str) -> Iterator[str]:
    """A second fresh database, the bare handler's (`pg_url` skips if there is none)."""
    with fresh_database(pg_admin) as url:
        yield url


async def _tables(url: str) -> dict[str, list[tuple[Any, ...]]]:
    db = await asyncpg.connect(url)
    try:
        return {name: [tuple(row) for row in await db.fetch(sql)] for name, sql in TABLES.items()}
    finally:
        await db.close()


async def test_the_bare_postgres_handler_writes_the_rows_quietsync_writes(
    pg_url: str, bare_url: str
) -> None:
    batch = 50
    payloads = bodies("c", batch, 3 * batch)
    async with (
        running_server(pg_url, users={SPACE: TOKEN}) as qs,
        bare_server("postgres", bare_url) as bare,
    ):
        await throughput(qs.url, payloads, batch)
        await throughput(bare, payloads, batch)
    ours, theirs = await _tables(pg_url), await _tables(bare_url)
    assert len(ours["fields"]) == 3 * batch
    assert [len(ours["clients"]), len(ours["heads"])] == [1, 1]
    assert ours == theirs
