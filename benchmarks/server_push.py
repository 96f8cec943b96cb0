"""Push throughput of the sync server against a bare aiohttp handler on the same store.

    python -m benchmarks.server_push [--changes N] [--store sqlite|postgres] [--pg-dsn URL]

Both servers run in this process on 127.0.0.1 and receive the same request
bodies (``{"mutations": [...]}``, every mutation a new field, so all are
applied) from one client pushing sequentially, to each server in turn (one
push to quietsync, then the same one to the bare handler, and so on), each
push timed alone: both see the same load of a shared machine. The bare handler only parses
the JSON and writes the rows quietsync ends up storing for those mutations
(one field row each, with its seq, size and mutation id; the space's head; the
client's mark), into the same tables (created by the store itself), in one
transaction: no auth, no validation, no merge, no live fan-out.

``--store sqlite`` (the default): each server on its own SQLite file with the
same durability (WAL, ``synchronous=FULL``); the bare handler uses `sqlite3`.
The target at batch 1,000 is >= 0.8.

``--store postgres``: each server on its own fresh database (``qs_bench_<random>``
and ``qs_bench_<random>_bare``, created on the server of ``--pg-dsn``, default
``$QUIETSYNC_TEST_PG_DSN`` else ``postgresql://postgres@127.0.0.1:5432/postgres``,
whose user may create databases; both dropped at the end), PostgreSQL's default
durability (``synchronous_commit`` on); the bare handler is one asyncpg
connection that, in one transaction per push, locks the space's head row first
(as quietsync does, for gap-free seqs), upserts the very rows quietsync ends up
with (``fields`` with their writer, ``clients`` with the recorded outcomes,
``heads``; tests/test_bench_server_push.py compares the tables) and sends the
same notification to other server processes. It writes the fields the way the
asyncpg documentation suggests, ``executemany``; quietsync sends all of a push's
rows in one statement (`quietsync.server.postgres_store`). The target at batch
1,000 is >= 0.6.

The ratio is quietsync / bare.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from benchmarks._loopback import serve_on_loopback
from benchmarks._pg import DEFAULT_PG_DSN, default_pg_dsn, pg_databases
from quietsync.conflicts import Clock
from quietsync.protocol import Mutation, private_space
from quietsync.server.backend import value_text
from quietsync.server.sqlite_store import SQLiteStore
from quietsync.testing import running_server

__all__ = ["main"]

BATCHES = (1, 100, 1000)
TOKEN = "bench-token"
SPACE = "bench"
STORES = ("sqlite", "postgres")

Rows = list[tuple[Any, ...]]
"""One push's rows: (field rows, client mark row, head row)."""


def bodies(node: str, batch: int, changes: int) -> list[bytes]:
    """Request bodies pushing `changes` new fields, `batch` per request."""
    clock, out, n = Clock(node), [], 0
    for _ in range(max(1, changes // batch)):
        mutations = []
        for _ in range(batch):
            n += 1
            m = Mutation(
                f"{node}:{n}", "notes", f"{node}-{n}", "title", "lww", clock.now(), None, n
            )
            mutations.append(m.to_json())
        out.append(json.dumps({"mutations": mutations}).encode())
    return out


def push_rows(space: str, head: int, mutations: list[dict[str, Any]]) -> tuple[Rows, Rows]:
    """The rows quietsync stores for `mutations` pushed on `head`: the field rows (space,
    collection, key, field, seq, size, kind, stamp, base, mid, value, state), and the
    client's mark and the space's new head (as one-row lists)."""
    fields = []
    for i, m in enumerate(mutations, start=1):
        value = value_text(m["value"])
        fields.append((space, m["collection"], m["key"], m["field"], head + i, len(value),
                       m["kind"], m["stamp"], m["base"], m["id"], value, None))  # fmt: skip
    client, _, last = mutations[-1]["id"].rpartition(":")
    tail = [
        (space, client, int(last)),
        (space, head + len(fields), max(m["stamp"] for m in mutations)),
    ]
    return fields, tail


Write = Callable[[list[dict[str, Any]]], Awaitable[int]]


@asynccontextmanager
async def bare_sqlite(db_path: Path) -> AsyncIterator[Write]:
    """Write a push's rows into SQLite file `db_path`, in one transaction."""
    SQLiteStore(db_path).close()  # the very tables (and pragmas) quietsync writes to
    db = sqlite3.connect(db_path, isolation_level=None)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA synchronous = FULL")

    async def write(mutations: list[dict[str, Any]]) -> int:
        db.execute("BEGIN IMMEDIATE")
        row = db.execute("SELECT seq FROM heads WHERE space = ?", (SPACE,)).fetchone()
        fields, (mark, head) = push_rows(SPACE, row[0] if row else 0, mutations)
        db.executemany(
            "INSERT OR REPLACE INTO fields (space, collection, key, field, seq, size, kind,"
            " stamp, base, mid, value, state) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            fields,
        )
        db.execute("INSERT OR REPLACE INTO clients VALUES (?, ?, ?, NULL)", mark)
        db.execute("INSERT OR REPLACE INTO heads VALUES (?, ?, 0, ?)", head)
        db.execute("COMMIT")
        return len(fields)

    try:
        yield write
    finally:
        db.close()


@asynccontextmanager
async def bare_postgres(url: str) -> AsyncIterator[Write]:
    """Write a push's rows into PostgreSQL database `url` (one asyncpg connection, as the
    store has), in one transaction: the head row locked first, as `PostgresStore` does, then
    the rows it writes (`bare_postgres_rows`), and its notification to other processes."""
    import asyncpg

    from quietsync.server.postgres_store import LIVE_CHANNEL, PostgresStore

    # the very tables quietsync writes to (its connection runs a loop of its own: a thread)
    await asyncio.to_thread(lambda: PostgresStore(url).close())
    db = await asyncpg.connect(url)
    space = private_space(SPACE)  # the pushing user's space, as quietsync names it

    async def write(mutations: list[dict[str, Any]]) -> int:
        async with db.transaction():
            head = await db.fetchval(
                "INSERT INTO heads (space) VALUES ($1)"
                " ON CONFLICT (space) DO UPDATE SET seq = heads.seq RETURNING seq",
                space,
            )
            fields, (mark, new_head) = push_rows(space, head, mutations)
            await db.executemany(
                "INSERT INTO fields (space, collection, key, field, seq, size, kind, stamp,"
                " base, mid, value, state, writer) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9,"
                " $10, $11, $12, $13) ON CONFLICT (space, collection, key, field) DO UPDATE SET"
                " seq = excluded.seq, size = excluded.size, kind = excluded.kind,"
                " stamp = excluded.stamp, base = excluded.base, mid = excluded.mid,"
                " value = excluded.value, state = excluded.state, writer = excluded.writer",
                [(*row, SPACE) for row in fields],
            )
            await db.execute(
                "INSERT INTO clients (space, client, hw, last) VALUES ($1, $2, $3, $4)"
                " ON CONFLICT (space, client) DO UPDATE SET hw = excluded.hw,"
                " last = excluded.last",
                *mark,
                applied_runs(mutations),
            )
            await db.execute(
                "UPDATE heads SET seq = $2, stamp = GREATEST(stamp, $3) WHERE space = $1"
                f" RETURNING pg_notify('{LIVE_CHANNEL}', space || ' ' || seq)",
                *new_head,
            )
        return len(fields)

    try:
        yield write
    finally:
        await db.close()


def applied_runs(mutations: list[dict[str, Any]]) -> str:
    """The outcomes quietsync records for its client (``clients.last``) when every one of
    `mutations` (one client's, numbered consecutively) was applied."""
    first, last = (int(m["id"].rpartition(":")[2]) for m in (mutations[0], mutations[-1]))
    return json.dumps([[first, last, "applied"]], separators=(",", ":"))


@asynccontextmanager
async def bare_server(store: str, db: Path | str) -> AsyncIterator[str]:
    """The baseline: parse, insert the same rows in one transaction, answer."""
    writer = bare_sqlite(Path(db)) if store == "sqlite" else bare_postgres(str(db))
    async with writer as write:

        async def push(request: web.Request) -> web.Response:
            count = await write(json.loads(await request.read())["mutations"])
            return web.json_response({"count": count})

        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_post("/v1/push", push)
        async with serve_on_loopback(app) as url:
            yield url


@asynccontextmanager
async def databases(store: str, pg_dsn: str) -> AsyncIterator[tuple[Path | str, Path | str]]:
    """Two fresh databases of `store`, quietsync's and the bare handler's; gone on exit."""
    if store == "sqlite":
        with tempfile.TemporaryDirectory(prefix="quietsync-bench-") as tmp:
            yield Path(tmp) / "quietsync.db", Path(tmp) / "bare.db"
        return
    async with pg_databases(pg_dsn, ["", "_bare"]) as (qs, bare):
        yield qs, bare


HEADERS = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}


async def _timed_push(http: aiohttp.ClientSession, body: bytes) -> float:
    """Seconds one push of `body` took, answer read."""
    start = time.perf_counter()
    async with http.post("/v1/push", data=body) as resp:
        if resp.status != 200:
            raise RuntimeError(f"push failed: {resp.status} {await resp.text()}")
        await resp.read()
    return time.perf_counter() - start


async def throughput(url: str, payloads: list[bytes], batch: int) -> float:
    """Changes per second pushing `payloads` one after the other."""
    async with aiohttp.ClientSession(url, headers=HEADERS) as http:
        elapsed = [await _timed_push(http, body) for body in payloads]
    return len(payloads) * batch / sum(elapsed)


async def taking_turns(
    urls: tuple[str, str], payloads: tuple[list[bytes], list[bytes]], batch: int
) -> tuple[float, float]:
    """Changes per second of each server, pushed `payloads` one after the other, the two
    taking turns push by push: on a shared machine whose load moves by the second, both
    see the same load (one server measured after the other saw ratios move 2x)."""
    elapsed = [0.0, 0.0]
    async with (
        aiohttp.ClientSession(urls[0], headers=HEADERS) as first,
        aiohttp.ClientSession(urls[1], headers=HEADERS) as second,
    ):
        for bodies_now in zip(*payloads, strict=True):
            for i, (http, body) in enumerate(zip((first, second), bodies_now, strict=True)):
                elapsed[i] += await _timed_push(http, body)
    count = len(payloads[0]) * batch
    return count / elapsed[0], count / elapsed[1]


async def run(
    changes: int, store: str = "sqlite", pg_dsn: str = DEFAULT_PG_DSN
) -> list[tuple[int, float, float]]:
    rows = []
    async with (
        databases(store, pg_dsn) as (qs_db, bare_db),
        running_server(qs_db, users={SPACE: TOKEN}) as qs,
        bare_server(store, bare_db) as bare,
    ):
        for batch in BATCHES:
            count = max(changes // 10, batch) if batch == 1 else changes
            # warm up both, on fields of their own
            await throughput(qs.url, bodies(f"warm{batch}", batch, batch), batch)
            await throughput(bare, bodies(f"warm{batch}", batch, batch), batch)
            payloads = bodies(f"q{batch}", batch, count)
            ours, base = await taking_turns((qs.url, bare), (payloads, payloads), batch)
            rows.append((batch, ours, base))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.server_push")
    parser.add_argument(
        "--changes",
        type=int,
        default=20_000,
        help="changes pushed per batch size (a tenth of it for batch 1)",
    )
    parser.add_argument("--store", choices=STORES, default="sqlite", help="the server's store")
    parser.add_argument(
        "--pg-dsn",
        default=default_pg_dsn(),
        help="--store postgres: a server whose user may create (and drop) databases",
    )
    args = parser.parse_args(argv)
    rows = asyncio.run(run(args.changes, args.store, args.pg_dsn))
    bare = "bare aiohttp+sqlite" if args.store == "sqlite" else "bare aiohttp+asyncpg"
    print(f"{'batch':>6} | {'quietsync changes/s':>20} | {bare:>20} | ratio")
    print(f"{'-' * 6}-+-{'-' * 20}-+-{'-' * 20}-+------")
    for batch, ours, base in rows:
        print(f"{batch:>6} | {ours:>20,.0f} | {base:>20,.0f} | {ours / base:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
