"""End to end, replica A -> server -> replica B, against a bare skeleton doing the same trip.

    python -m benchmarks.sync_e2e [--changes N] [--latency-samples N] [--pull-changes N]
                                  [--same-process]
    python -m benchmarks.sync_e2e --workers N [--pg-dsn URL] [--changes N] [--latency-samples N]

``--workers N``: on PostgreSQL, ``quietsync serve --workers N`` against one
``quietsync serve`` process, and the live latency across worker processes
(`benchmarks.workers_e2e`); without it, what follows.

quietsync: A's writes are already in its outbox; the clock runs from A's
`SyncClient.push()` (batches of 1, 100 or 1,000) until B's live loop has applied
the last change into B's replica file (B follows the WebSocket). The skeleton's
A has its mutations built beforehand too, and like quietsync's A it encodes
each request body inside the timing; its server is
an aiohttp handler that parses the POSTed JSON, inserts the rows into SQLite in one
transaction (the log row, the field row, the mutation id: what any sync server
stores) and sends them to every WebSocket; its B upserts each message's fields
and its cursor into its own SQLite file. Both use WAL with
``synchronous=FULL``; the skeleton has no auth, no validation, no stamps to
compare, no merge, no outbox. Live latency is one change, from the push call
until B has it stored.

Processes: both servers run in one child process, A and B in this one: one
core for the server side and one for the replicas, on this 2-core machine. In
deployment no server shares an interpreter with a replica; in one process,
quietsync's store thread and the replicas' event loop take turns at one GIL
(the skeleton's server has no thread). ``--same-process`` puts everything in
this process, to compare.

Memory: a fresh replica, in a child process, pulls `--pull-changes` changes
(100k by default) in pages; the table prints its peak RSS minus its RSS just
before the pull (target: within 100 MB).

Targets: >= 0.7x the skeleton's changes/s at batch 1,000; live p50 <= 5 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from benchmarks._loopback import serve_on_loopback
from benchmarks._pg import default_pg_dsn
from benchmarks._table import print_table
from quietsync.conflicts import Clock
from quietsync.replica import Replica, SyncClient
from quietsync.testing import running_server

__all__ = ["batch_rates", "main", "pairs"]

BATCHES = (1, 100, 1000)
CHANGES = 20_000
TOKEN = "bench-token"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS changes (seq INTEGER PRIMARY KEY, id TEXT, collection TEXT,
    key TEXT, field TEXT, value TEXT, stamp TEXT);
CREATE TABLE IF NOT EXISTS fields (collection TEXT, key TEXT, field TEXT, value TEXT,
    stamp TEXT, PRIMARY KEY (collection, key, field)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS mutations (id TEXT PRIMARY KEY) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT);
"""


def _sqlite(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA synchronous = FULL")
    db.executescript(_SCHEMA)
    return db


def _rows(items: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [
        (m["collection"], m["key"], m["field"], json.dumps(m["value"]), m["stamp"]) for m in items
    ]


def _server_store(db: sqlite3.Connection, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What any sync server must store per change: the log row, the field, the mutation id."""
    db.execute("BEGIN IMMEDIATE")
    head = db.execute("SELECT coalesce(max(seq), 0) FROM changes").fetchone()[0]
    rows = _rows(items)
    db.executemany(
        "INSERT INTO changes VALUES (?, ?, ?, ?, ?, ?, ?)",
        [(head + i, m["id"], *r) for i, (m, r) in enumerate(zip(items, rows, strict=True), 1)],
    )
    db.executemany("INSERT OR REPLACE INTO fields VALUES (?, ?, ?, ?, ?)", rows)
    db.executemany("INSERT INTO mutations VALUES (?)", [(m["id"],) for m in items])
    db.execute("COMMIT")
    return [{**m, "seq": head + i} for i, m in enumerate(items, 1)]


def _replica_store(db: sqlite3.Connection, items: list[dict[str, Any]]) -> None:
    """What any replica must store per pulled change: the field, and the cursor."""
    db.execute("BEGIN")
    db.executemany("INSERT OR REPLACE INTO fields VALUES (?, ?, ?, ?, ?)", _rows(items))
    db.execute("INSERT OR REPLACE INTO meta VALUES ('cursor', ?)", (str(items[-1]["seq"]),))
    db.execute("COMMIT")


@asynccontextmanager
async def skeleton_server(db_path: Path) -> AsyncIterator[str]:
    """The baseline server: POST into SQLite, then fan out over WebSockets."""
    db, sockets = _sqlite(db_path), set[web.WebSocketResponse]()

    async def push(request: web.Request) -> web.Response:
        changes = _server_store(db, json.loads(await request.read())["mutations"])
        text = json.dumps({"changes": changes})
        for ws in list(sockets):
            await ws.send_str(text)
        return web.json_response({"count": len(changes)})

    async def live(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        sockets.add(ws)
        try:
            async for _ in ws:
                pass
        finally:
            sockets.discard(ws)
        return ws

    app = web.Application(client_max_size=16 * 1024 * 1024)
    app.router.add_post("/push", push)
    app.router.add_get("/live", live)
    try:
        async with serve_on_loopback(app) as url:
            yield url
    finally:
        db.close()


class SkeletonPair:
    """The skeleton's A (a plain POSTing client) and B (a socket storing into SQLite)."""

    def __init__(self, url: str, db_path: Path) -> None:
        self.url, self.db = url, _sqlite(db_path)
        self.received, self._target, self._done = 0, 0, asyncio.Event()
        self._n, self._clock = 0, Clock("s")

    async def __aenter__(self) -> SkeletonPair:
        self.http = aiohttp.ClientSession(self.url)
        self.ws = await self.http.ws_connect("/live")
        self._reader = asyncio.create_task(self._read())
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._reader.cancel()
        await self.ws.close()
        await self.http.close()
        self.db.close()

    async def _read(self) -> None:
        async for msg in self.ws:
            changes = json.loads(msg.data)["changes"]
            _replica_store(self.db, changes)
            self.received += len(changes)
            if self.received >= self._target:
                self._done.set()

    async def trip(self, count: int, batch: int) -> float:
        """Seconds from the first POST until B stored `count` changes."""
        self._target, self._done = self.received + count, asyncio.Event()
        bodies = []
        for _ in range(count // batch):
            muts = []
            for _ in range(batch):
                self._n += 1
                muts.append({"id": f"s:{self._n}", "collection": "notes", "key": f"k{self._n}",
                             "field": "v", "kind": "lww", "value": self._n,
                             "stamp": str(self._clock.now())})  # fmt: skip
            bodies.append({"mutations": muts})
        start = time.perf_counter()
        for body in bodies:  # encoded in the timing, as quietsync's A encodes its outbox
            async with self.http.post("/push", data=json.dumps(body).encode()) as resp:
                await resp.read()
        await self._done.wait()
        return time.perf_counter() - start


class QuietsyncPair:
    """Replica A with a push-only client, replica B following the live socket."""

    def __init__(self, url: str, tmp: Path, token: str = TOKEN) -> None:
        self.a, self.b = Replica.open(tmp / "a.db"), Replica.open(tmp / "b.db")
        self.url, self.token = url, token
        self._n = 0
        self._target, self._arrived_n, self._done = 0, 0, asyncio.Event()

    async def __aenter__(self) -> QuietsyncPair:
        self.cb = SyncClient(self.b, self.url, token=self.token)
        self.b.subscribe("notes", self._arrived)
        await self.cb.start()
        async for status in self.cb.statuses():
            if status.online:
                break
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.cb.stop()
        self.a.close()
        self.b.close()

    def _arrived(self, _event: object) -> None:
        self._arrived_n += 1  # every change of the benchmark is a new record
        if self._arrived_n >= self._target:
            self._done.set()

    async def trip(self, count: int, batch: int) -> float:
        for start in range(0, count, 1000):
            size = min(1000, count - start)
            records = {f"k{self._n + i}": {"v": self._n + i} for i in range(size)}
            self.a.put_many("notes", records)
            self._n += len(records)
        self._target = self._arrived_n + self.a.pending_count()
        self._done = asyncio.Event()
        pusher = SyncClient(self.a, self.url, token=self.token, batch_size=batch)
        begin = time.perf_counter()
        await pusher.push()
        await self._done.wait()
        elapsed = time.perf_counter() - begin
        await pusher.stop()
        return elapsed


Pair = SkeletonPair | QuietsyncPair


async def latencies(pair: Pair, samples: int) -> list[float]:
    """Milliseconds for single changes, one after the other."""
    await pair.trip(1, 1)  # warm
    return [1000 * await pair.trip(1, 1) for _ in range(samples)]


def _percentile(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


async def pull_memory(url: str, tmp: Path) -> float:
    """Peak RSS over idle RSS (MB) of a fresh replica pulling everything, in a child process."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "benchmarks.sync_e2e", "--pull-child", url, str(tmp / "fresh.db"),
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, _ = await proc.communicate()
    return float(json.loads(out)["over_idle_mb"])


def _rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * resource.getpagesize() / 2**20


async def _pull_child(url: str, path: str) -> None:
    with Replica.open(path) as fresh:
        client = SyncClient(fresh, url, token=TOKEN)
        idle = _rss_mb()
        pulled = await client.pull()
        await client.stop()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"pulled": pulled, "idle_mb": idle, "over_idle_mb": peak - idle}))


async def _seed_server(url: str, tmp: Path, changes: int) -> None:
    with Replica.open(tmp / "seed.db") as seed:
        client = SyncClient(seed, url, token=TOKEN, batch_size=1000)
        for start in range(0, changes, 1000):
            size = min(1000, changes - start)
            records = {f"b{start + i}": {"text": "x" * 100, "n": i} for i in range(size)}
            seed.put_many("bulk", records)
            await client.push()
        await client.stop()


@asynccontextmanager
async def both_servers(tmpdir: Path) -> AsyncIterator[tuple[str, str]]:
    """quietsync's server and the skeleton's, in this process; yields their URLs."""
    async with (
        running_server(tmpdir / "server.db", users={"bench": TOKEN}) as qs,
        skeleton_server(tmpdir / "skeleton.db") as bare,
    ):
        yield qs.url, bare


@asynccontextmanager
async def both_servers_in_child(tmpdir: Path) -> AsyncIterator[tuple[str, str]]:
    """`both_servers` in a child process, which stops when its stdin closes."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "benchmarks.sync_e2e", "--serve-child", str(tmpdir),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdin is not None and proc.stdout is not None
    try:
        line = await asyncio.wait_for(proc.stdout.readline(), timeout=30)
        if not line:
            raise RuntimeError("the benchmark's server process exited before serving")
        qs, bare = json.loads(line)
        yield qs, bare
    finally:
        proc.stdin.close()
        await asyncio.wait_for(proc.wait(), timeout=30)


async def _serve_child(tmpdir: str) -> None:
    async with both_servers(Path(tmpdir)) as urls:
        print(json.dumps(urls), flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until EOF


@asynccontextmanager
async def pairs(
    tmpdir: Path, *, same_process: bool = False
) -> AsyncIterator[tuple[QuietsyncPair, SkeletonPair]]:
    """Both sides ready in `tmpdir`: a real server with A and B, the skeleton with its A and B.

    The servers run in a child process unless `same_process` (module docstring).
    """
    servers = both_servers(tmpdir) if same_process else both_servers_in_child(tmpdir)
    async with (
        servers as (qs, bare),
        QuietsyncPair(qs, tmpdir) as ours,
        SkeletonPair(bare, tmpdir / "skeleton-b.db") as base,
    ):
        yield ours, base


async def batch_rates(
    ours: QuietsyncPair, base: SkeletonPair, batch: int, count: int
) -> tuple[float, float]:
    """Changes/s of quietsync and of the skeleton for `count` changes pushed `batch` at a time.

    One trip of one batch each first, so connection setup is not in the timing.
    """
    await ours.trip(batch, batch)
    await base.trip(batch, batch)
    q = count / await ours.trip(count, batch)
    return q, count / await base.trip(count, batch)


async def run(args: argparse.Namespace) -> list[list[object]]:
    rows: list[list[object]] = []
    with tempfile.TemporaryDirectory(prefix="quietsync-e2e-") as tmp:
        tmpdir = Path(tmp)
        async with pairs(tmpdir, same_process=args.same_process) as (ours, base):
            for batch in BATCHES:
                count = max(args.changes // 20, batch) if batch == 1 else args.changes
                q, s = await batch_rates(ours, base, batch, count)
                target = ">= 0.7x" if batch == 1000 else ""
                rows.append([f"changes/s, batch {batch:,}", q, s, f"{q / s:.2f}x", target])
            q_lat = await latencies(ours, args.latency_samples)
            s_lat = await latencies(base, args.latency_samples)
            for q in (50, 99):
                ql, sl = _percentile(q_lat, q), _percentile(s_lat, q)
                target = "<= 5 ms" if q == 50 else ""
                rows.append([f"live latency p{q} (ms)", ql, sl, f"{ql / sl:.2f}x", target])
            await _seed_server(ours.url, tmpdir, args.pull_changes)
            over = await pull_memory(ours.url, tmpdir)
            label = f"pull {args.pull_changes:,}: peak RSS - idle (MB)"
            rows.append([label, over, "", "", "<= 100"])
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.sync_e2e")
    parser.add_argument(
        "--changes", type=int, default=CHANGES, help="per batch size (1/20 at 1; --workers: half)"
    )
    parser.add_argument("--latency-samples", type=int, default=300)
    parser.add_argument("--pull-changes", type=int, default=100_000)
    parser.add_argument(
        "--same-process", action="store_true", help="run the servers in this process too"
    )
    parser.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="PostgreSQL: quietsync serve --workers N against one process (benchmarks.workers_e2e)",
    )
    parser.add_argument(
        "--pg-dsn",
        default=default_pg_dsn(),
        help="with --workers: a server whose user may create databases (default: %(default)s)",
    )
    parser.add_argument("--pull-child", nargs=2, metavar=("URL", "PATH"), help=argparse.SUPPRESS)
    parser.add_argument("--serve-child", metavar="DIR", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_child:
        asyncio.run(_serve_child(args.serve_child))
        return 0
    if args.pull_child:
        asyncio.run(_pull_child(*args.pull_child))
        return 0
    if args.workers is not None:
        return _main_workers(args)
    rows = asyncio.run(run(args))
    print_table(
        "sync end to end: replica A -> server -> replica B (quietsync vs bare skeleton; "
        + ("all in one process)" if args.same_process else "servers in a child process)"),
        ["measure", "quietsync", "skeleton", "ratio", "target"],
        rows,
    )
    return 0


def _main_workers(args: argparse.Namespace) -> int:
    from benchmarks.workers_e2e import run as run_workers  # it builds on this module

    if args.workers < 2:
        raise SystemExit("--workers needs N >= 2 (the comparison is with one process)")
    changes = args.changes if args.changes != CHANGES else CHANGES // 2
    rows = asyncio.run(run_workers(args.workers, args.pg_dsn, changes, args.latency_samples))
    print_table(
        f"sync end to end on PostgreSQL: quietsync serve --workers {args.workers} vs one process"
        " (fresh databases, same run)",
        [
            "measure",
            f"--workers {args.workers}",
            "one process | same worker",
            "ratio",
            "target",
        ],
        rows,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
