"""End to end on PostgreSQL with several server processes: ``quietsync serve --workers N``
against one ``quietsync serve`` process, in the same run.

    python -m benchmarks.sync_e2e --workers N [--pg-dsn URL] [--changes N] [--latency-samples N]

Both servers are real ``quietsync serve`` subprocesses, each on a fresh database
(`benchmarks._pg`; ``--pg-dsn`` defaults to ``$QUIETSYNC_TEST_PG_DSN``, else
``postgresql://postgres@127.0.0.1:5432/postgres``), PostgreSQL's default
durability.

* **changes/s** and **replica latency**: `benchmarks.sync_e2e.QuietsyncPair`
  (replica A's `SyncClient` pushes, replica B follows the live socket and stores
  each change) against each server. Through the workers' one port, which worker
  serves A and which serves B is the kernel's choice.
* **live latency across workers**: one push of one change at a time, from
  sending it until a socket has it (as ``tests/server/test_postgres_live.py``),
  with the pusher on worker 1, one socket on worker 1 (same process: the
  commit is handed to the socket in memory) and one on worker 2 (across: the
  commit's NOTIFY wakes worker 2, whose socket reads the rows). To put a client
  on a chosen worker the benchmark opens single-connection sessions until
  ``/v1/health`` on that connection names the worker (``server-<i>``), keeps
  the connection alive, and checks at the end that each session used only
  that one connection (the socket's upgrade reuses it). Measured twice: with
  worker 2 idle, and with worker 2 committing pushes of `BUSY_BATCH` new
  records of another user back to back (its store thread busy), which is what
  a socket's read must not wait behind.

Last, the floor: a bare asyncpg transaction inserting one row, as durable, on
the same server (every push -> socket latency contains one such commit).

Target (issue #17): live p50 <= 5 ms across processes on loopback.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp

from benchmarks._pg import pg_databases
from benchmarks.harness_faults import ServerProcess
from benchmarks.sync_e2e import BATCHES, QuietsyncPair, batch_rates, latencies
from quietsync.conflicts import Clock
from quietsync.protocol import Mutation

__all__ = ["run"]

TOKEN = "bench-token-0123456789"
BUSY_TOKEN = "busy-token-0123456789"  # another user's pushes, keeping worker 2 busy
BUSY_BATCH = 500
PIN_ATTEMPTS = 200


class Pinned:
    """A client session whose one keep-alive connection was accepted by worker `node`."""

    def __init__(self, http: aiohttp.ClientSession, connections: list[int]) -> None:
        self.http = http
        self._connections = connections

    @property
    def connections(self) -> int:
        """TCP connections this session opened (1 while it stays pinned)."""
        return self._connections[0]


async def pin(url: str, node: str, token: str = TOKEN) -> Pinned:
    """A `Pinned` session on worker `node`, opening new connections until one lands there."""
    for _ in range(PIN_ATTEMPTS):
        opened = [0]

        async def count(*_: object, opened: list[int] = opened) -> None:
            opened[0] += 1

        trace = aiohttp.TraceConfig()
        trace.on_connection_create_end.append(count)
        http = aiohttp.ClientSession(
            url,
            headers={"Authorization": f"Bearer {token}"},
            connector=aiohttp.TCPConnector(limit=1),
            trace_configs=[trace],
        )
        async with http.get("/v1/health") as resp:
            if (await resp.json())["node"] == node:
                return Pinned(http, opened)
        await http.close()
    raise RuntimeError(f"no connection landed on {node} in {PIN_ATTEMPTS} tries")


async def _arrival(ws: aiohttp.ClientWebSocketResponse) -> float:
    message = await ws.receive_json(timeout=30)
    assert message["type"] == "changes", message
    return time.perf_counter()


async def _keep_busy(url: str, stop: asyncio.Event) -> int:
    """Push batches of `BUSY_BATCH` new records as another user through worker 2 until
    `stop`; how many."""
    pinned = await pin(url, "server-2", BUSY_TOKEN)
    clock, n = Clock("busy"), 0
    try:
        while not stop.is_set():
            batch = []
            for _ in range(BUSY_BATCH):
                n += 1
                mutation = Mutation(
                    f"busy:{n}", "bulk", f"b{n}", "v", "lww", clock.now(), value="x"
                )
                batch.append(mutation.to_json())
            async with pinned.http.post("/v1/push", json={"mutations": batch}) as r:
                assert r.status == 200, await r.text()
    finally:
        await pinned.http.close()
    return n


async def cross_latencies(
    url: str, samples: int, *, busy: bool = False
) -> tuple[list[float], list[float]]:
    """Milliseconds from sending a push on worker 1 until a socket on worker 1 (same) and
    one on worker 2 (across) have its change; `busy`: while worker 2 commits other pushes."""
    stop = asyncio.Event()
    busy_task = asyncio.create_task(_keep_busy(url, stop)) if busy else None
    try:
        return await _cross_latencies(url, samples, "lat-busy" if busy else "lat")
    finally:
        stop.set()
        if busy_task is not None:
            await busy_task


async def _cross_latencies(url: str, samples: int, node: str) -> tuple[list[float], list[float]]:
    """As `cross_latencies`, writing as client `node` (its mutation ids are its own)."""
    async with AsyncExitStack() as stack:
        pusher, same, across = [await pin(url, n) for n in ("server-1", "server-1", "server-2")]
        for pinned in (pusher, same, across):
            stack.push_async_callback(pinned.http.close)
        sockets = [await p.http.ws_connect("/v1/live") for p in (same, across)]
        for ws in sockets:
            stack.push_async_callback(ws.close)
            assert (await ws.receive_json(timeout=30))["type"] == "hello"
        clock = Clock(node)
        times: tuple[list[float], list[float]] = ([], [])
        for n in range(samples + 1):  # the first one warms up
            mutation = Mutation(
                f"{node}:{n + 1}", "notes", f"{node}-{n}", "v", "lww", clock.now(), value=n
            )
            arrivals = [asyncio.create_task(_arrival(ws)) for ws in sockets]
            began = time.perf_counter()
            async with pusher.http.post("/v1/push", json={"mutations": [mutation.to_json()]}) as r:
                assert r.status == 200, await r.text()
            for kind, at in zip(times, await asyncio.gather(*arrivals), strict=True):
                if n:
                    kind.append(1000 * (at - began))
        lost = [p.connections for p in (pusher, same, across) if p.connections != 1]
        assert not lost, f"a pinned session opened {lost} connections: its worker is unknown"
    return times


async def commit_latencies(db: str, samples: int) -> list[float]:
    """Milliseconds of a bare asyncpg transaction inserting one row, durable as the
    server's (the floor under any push -> socket latency on this database)."""
    import asyncpg

    conn = await asyncpg.connect(db)
    try:
        await conn.execute("CREATE TABLE bench_commit (n integer)")
        times = []
        for n in range(samples + 1):  # the first one warms up
            began = time.perf_counter()
            async with conn.transaction():
                await conn.execute("INSERT INTO bench_commit VALUES ($1)", n)
            if n:
                times.append(1000 * (time.perf_counter() - began))
        await conn.execute("DROP TABLE bench_commit")
    finally:
        await conn.close()
    return times


@asynccontextmanager
async def _server(db: str, tokens: Path, workers: int) -> AsyncIterator[str]:
    proc = ServerProcess(db, tokens, ["--workers", str(workers)] if workers > 1 else [])
    await proc.start()
    try:
        yield proc.url
    finally:
        await proc.stop()


def _quantile(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


async def run(workers: int, pg_dsn: str, changes: int, samples: int) -> list[list[Any]]:
    rows: list[list[Any]] = []
    with tempfile.TemporaryDirectory(prefix="quietsync-workers-") as tmp:
        tmpdir = Path(tmp)
        tokens = tmpdir / "tokens.json"
        tokens.write_text(json.dumps({TOKEN: "bench", BUSY_TOKEN: "busy"}))
        tokens.chmod(0o600)
        (tmpdir / "many").mkdir()
        (tmpdir / "one").mkdir()
        async with (
            pg_databases(pg_dsn, ["_many", "_one"]) as (many_db, one_db),
            _server(many_db, tokens, workers) as many_url,
            _server(one_db, tokens, 1) as one_url,
            QuietsyncPair(many_url, tmpdir / "many", TOKEN) as many,
            QuietsyncPair(one_url, tmpdir / "one", TOKEN) as one,
        ):
            for batch in BATCHES:
                count = max(changes // 20, batch) if batch == 1 else changes
                m, o = await batch_rates(many, one, batch, count)
                rows.append([f"changes/s, batch {batch:,}, A -> B", m, o, f"{m / o:.2f}x", ""])
            m_lat, o_lat = await latencies(many, samples), await latencies(one, samples)
            for q in (50, 99):
                m, o = _quantile(m_lat, q), _quantile(o_lat, q)
                rows.append([f"replica latency p{q} (ms), A -> B", m, o, f"{m / o:.2f}x", ""])
            for busy in (False, True):
                same, across = await cross_latencies(many_url, samples, busy=busy)
                for q in (50, 99):
                    a, s = _quantile(across, q), _quantile(same, q)
                    target = "<= 5 ms" if q == 50 and not busy else ""
                    label = f"push -> socket p{q} (ms): across workers | same worker"
                    if busy:
                        label += f", worker 2 busy ({BUSY_BATCH}-change pushes)"
                    rows.append([label, a, s, f"{a / s:.2f}x", target])
            commits = await commit_latencies(one_db, samples)
            for q in (50, 99):
                label = f"bare asyncpg commit of one row p{q} (ms), the floor"
                rows.append([label, _quantile(commits, q), "", "", ""])
    return rows
