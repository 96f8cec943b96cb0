"""Push throughput of the sync server against a bare aiohttp + SQLite handler.

    python -m benchmarks.server_push [--changes N]

Both servers run in this process on 127.0.0.1, each on its own SQLite file with
the same durability (WAL, ``synchronous=FULL``), and receive the same request
bodies (``{"mutations": [...]}``, every mutation a new field, so all are
applied) from one client pushing sequentially. The bare handler only parses
the JSON and writes the rows quietsync ends up storing for those mutations
(one field row each, with its seq, size and mutation id; the space's head; the
client's mark), into the same tables (created by `SQLiteStore`), in one
transaction: no auth, no validation, no merge, no live fan-out. The ratio is
quietsync / bare; the target at batch 1,000 is >= 0.8.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
from aiohttp import web

from benchmarks._loopback import serve_on_loopback
from quietsync.conflicts import Clock
from quietsync.protocol import Mutation
from quietsync.server.sqlite_store import SQLiteStore
from quietsync.testing import running_server

__all__ = ["main"]

BATCHES = (1, 100, 1000)
TOKEN = "bench-token"


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


@asynccontextmanager
async def bare_server(db_path: Path) -> AsyncIterator[str]:
    """The baseline: parse, insert the same rows in one transaction, answer."""
    SQLiteStore(db_path).close()  # the very tables (and pragmas) quietsync writes to
    db = sqlite3.connect(db_path, isolation_level=None)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA synchronous = FULL")

    async def push(request: web.Request) -> web.Response:
        space = "bench"
        mutations = json.loads(await request.read())["mutations"]
        db.execute("BEGIN IMMEDIATE")
        row = db.execute("SELECT seq FROM heads WHERE space = ?", (space,)).fetchone()
        head = row[0] if row else 0
        rows = []
        for i, m in enumerate(mutations, start=1):
            value = json.dumps(m["value"])
            rows.append((space, m["collection"], m["key"], m["field"], head + i, len(value),
                         m["kind"], m["stamp"], m["base"], m["id"], value, None))  # fmt: skip
        db.executemany(
            "INSERT OR REPLACE INTO fields (space, collection, key, field, seq, size, kind,"
            " stamp, base, mid, value, state) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
        client, _, last = mutations[-1]["id"].rpartition(":")
        db.execute("INSERT OR REPLACE INTO clients VALUES (?, ?, ?, NULL)", (space, client, last))
        db.execute(
            "INSERT OR REPLACE INTO heads VALUES (?, ?, 0, ?)",
            (space, head + len(rows), max(m["stamp"] for m in mutations)),
        )
        db.execute("COMMIT")
        return web.json_response({"count": len(rows)})

    app = web.Application(client_max_size=16 * 1024 * 1024)
    app.router.add_post("/v1/push", push)
    try:
        async with serve_on_loopback(app) as url:
            yield url
    finally:
        db.close()


async def throughput(url: str, payloads: list[bytes], batch: int) -> float:
    """Changes per second pushing `payloads` one after the other."""
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    async with aiohttp.ClientSession(url, headers=headers) as http:
        start = time.perf_counter()
        for body in payloads:
            async with http.post("/v1/push", data=body) as resp:
                if resp.status != 200:
                    raise RuntimeError(f"push failed: {resp.status} {await resp.text()}")
                await resp.read()
        elapsed = time.perf_counter() - start
    return len(payloads) * batch / elapsed


async def run(changes: int) -> list[tuple[int, float, float]]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="quietsync-bench-") as tmp:
        tmpdir = Path(tmp)
        async with (
            running_server(tmpdir / "quietsync.db", users={"bench": TOKEN}) as qs,
            bare_server(tmpdir / "bare.db") as bare,
        ):
            for batch in BATCHES:
                count = max(changes // 10, batch) if batch == 1 else changes
                # warm up both, on fields of their own
                await throughput(qs.url, bodies(f"warm{batch}", batch, batch), batch)
                await throughput(bare, bodies(f"warm{batch}", batch, batch), batch)
                ours = await throughput(qs.url, bodies(f"q{batch}", batch, count), batch)
                base = await throughput(bare, bodies(f"q{batch}", batch, count), batch)
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
    args = parser.parse_args(argv)
    rows = asyncio.run(run(args.changes))
    print(f"{'batch':>6} | {'quietsync changes/s':>20} | {'bare aiohttp+sqlite':>20} | ratio")
    print(f"{'-' * 6}-+-{'-' * 20}-+-{'-' * 20}-+------")
    for batch, ours, base in rows:
        print(f"{batch:>6} | {ours:>20,.0f} | {base:>20,.0f} | {ours / base:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
