"""SIGKILL during a stream of pushes: every acknowledged push survives, exactly once, on
SQLite (its file, WAL, synchronous=FULL) and on PostgreSQL (the killed process's open
transactions roll back when its connections drop; what committed stays)."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from pathlib import Path

import aiohttp
import pytest

from tests.server.helpers import Writer, pull_all, push
from tests.server.processes import serve_process

TOKENS = {"QUIETSYNC_TOKENS": json.dumps({"secret-1-ab7Fq2xZ": "alice"})}
HEADERS = {"Authorization": "Bearer secret-1-ab7Fq2xZ"}
PUSHERS, BATCH, KILL_AFTER = 4, 5, 40


@pytest.fixture(params=["sqlite", "postgres"])
def store_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def test_sigkill_mid_stream_loses_no_acknowledged_push(server_db: Path | str) -> None:
    db = server_db
    acked: list[str] = []
    enough = asyncio.Event()

    async def pusher(http: aiohttp.ClientSession, node: str) -> None:
        w = Writer(node)
        for i in range(10_000):
            batch = [w.lww(f"{node}-{i}", f"f{j}", j) for j in range(BATCH)]
            try:
                status, _ = await push(http, batch)
            except aiohttp.ClientError:
                return  # the server died under this push: it is not acknowledged
            assert status == 200
            acked.extend(m["id"] for m in batch)
            if len(acked) >= KILL_AFTER * BATCH:
                enough.set()

    async with serve_process(db, env=TOKENS) as server:
        async with aiohttp.ClientSession(base_url=server.url, headers=HEADERS) as http:
            tasks = [asyncio.create_task(pusher(http, f"p{n}")) for n in range(PUSHERS)]
            await asyncio.wait_for(enough.wait(), 60)
            server.proc.kill()  # SIGKILL, with pushes in flight
            await asyncio.wait_for(asyncio.gather(*tasks), 30)
        assert await server.proc.wait() == -9

    async with (
        serve_process(db, env=TOKENS) as again,
        aiohttp.ClientSession(base_url=again.url, headers=HEADERS) as http,
    ):
        changes = await pull_all(http)
    counts = Counter(c["id"] for c in changes)
    assert len(acked) >= KILL_AFTER * BATCH
    assert all(counts[mid] == 1 for mid in acked), "an acknowledged push is missing or doubled"
    assert max(counts.values()) == 1
    assert [c["seq"] for c in changes] == list(range(1, len(changes) + 1))
