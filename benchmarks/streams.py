"""Streamed replies persisted by the `StreamTracker`, against a naive per-event writer.

    python -m benchmarks.streams [--quick]

The server runs in a child process (scripted provider, 50 tokens/s per job,
flushes every 50 ms). For N = 1, 10, 100 concurrent jobs, two clients follow
the same kind of workload in turn:

* **raw** (the baseline): one aiohttp stream per job, each event written at
  once into a bare SQLite table (one commit per event; no merge, no stamps);
* **tracker**: `StreamTracker` mirroring into a `Replica` (coalesced, one
  transaction per tick), while a `ChatPane` switches threads every 200 ms.

Measured: tokens persisted per second, persistence lag (commit time minus the
server stamp of the flush it persists) p50/p99, tokens lost (replica content
against the provider's reply; must be 0), reattach time for a thread of 1,000
messages (pane switch until the live content is shown, and until the next
delta), and this process's peak RSS and its growth per job (after a warm-up
run). Ratio = tracker lag p99 / raw lag p99.
Targets: lag p99 <= 150 ms at N=100; reattach p50 <= 20 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import sqlite3
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp

from benchmarks._table import print_table
from quietsync.conflicts import HLC, wall_clock_ms
from quietsync.protocol.jobs import MESSAGES
from quietsync.replica import ChangeEvent, ChatPane, Replica, StreamTracker
from quietsync.replica.replica import sync_port
from quietsync.server.jobs import JobsConfig, ScriptedProvider, scripted_reply
from quietsync.testing import running_server

__all__ = ["main", "measure_raw", "measure_tracked", "serve_in_child", "sizes"]

TOKEN, USER = "bench-token", "bench"
TOKEN_DELAY = 0.02  # 50 tokens/s per job
HISTORY = 1_000


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _prompt(i: int) -> str:
    return f"job {i} says hello"


async def measure_raw(url: str, n: int, tokens: int, path: Path) -> dict[str, float]:
    """The baseline: every event of every stream committed at once into a bare table."""
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE IF NOT EXISTS messages (key TEXT PRIMARY KEY, content TEXT)")
    lags: list[float] = []
    headers = {"Authorization": f"Bearer {TOKEN}"}

    async def one(http: aiohttp.ClientSession, i: int) -> int:
        body = {"thread_id": f"raw{i}", "message_id": f"raw{n}-{i}", "input": _prompt(i)}
        content = ""
        async with http.post("/v1/jobs", json={**body, "mode": "hybrid"}) as resp:
            async for line in resp.content:
                if not line.startswith(b"data: "):
                    continue
                event = json.loads(line[6:])
                if event["type"] == "keepalive":
                    continue
                content = content[: event["offset"]] + event["text"]
                db.execute(
                    "INSERT OR REPLACE INTO messages VALUES (?, ?)", (body["message_id"], content)
                )
                db.commit()
                lags.append(wall_clock_ms() - HLC.parse(event["stamp"]).wall_ms)
        return len(content)

    connector = aiohttp.TCPConnector(limit=0)
    start = time.perf_counter()
    async with aiohttp.ClientSession(url, headers=headers, connector=connector) as http:
        await asyncio.gather(*(one(http, i) for i in range(n)))
    elapsed = time.perf_counter() - start
    db.close()
    return {"tps": n * tokens / elapsed, "p50": _pct(lags, 0.5), "p99": _pct(lags, 0.99)}


async def measure_tracked(url: str, n: int, tokens: int, path: Path) -> dict[str, float]:
    """The tracker and a pane switching threads every 200 ms, one thread with 1,000 messages."""
    rss_before = _rss_mb()
    lags: list[float] = []
    opens: list[float] = []
    first_deltas: list[float] = []
    with Replica.open(path) as replica:
        replica.put_many(
            MESSAGES,
            {
                f"h{i}": {"thread_id": "big", "role": "user", "content": f"m{i}", "created_at": i}
                for i in range(HISTORY)
            },
        )

        def on_change(event: ChangeEvent) -> None:
            if "content" in event.fields:
                held = sync_port(replica).field_state(MESSAGES, event.key, "content")
                if held is not None and held.write.stamp.node == "server":
                    lags.append(wall_clock_ms() - held.write.stamp.wall_ms)

        replica.subscribe(MESSAGES, on_change)
        tracker = StreamTracker(replica, url, token=TOKEN)
        threads = ["big", *(f"t{i}" for i in range(1, n))]
        waiting: dict[str, float] = {}

        def on_delta(_message_id: str, _delta: str) -> None:
            if "t0" in waiting:
                first_deltas.append(time.perf_counter() - waiting.pop("t0"))

        pane = ChatPane(replica, tracker, on_delta=on_delta)
        start = time.perf_counter()
        jobs = [
            await tracker.start(thread, f"a{n}-{i}", _prompt(i), created_at=HISTORY + 1)
            for i, thread in enumerate(threads)
        ]
        done = asyncio.ensure_future(asyncio.gather(*(tracker.wait(j) for j in jobs)))
        # Every other switch returns to the big thread: enough reattach samples at any N.
        others = threads[1:] or ["empty"]
        views = [v for other in others for v in ("big", other)]
        k = 0
        while not done.done():
            thread = views[k % len(views)]
            k += 1
            opened = time.perf_counter()
            if thread == "big":
                waiting["t0"] = opened
            await pane.open(thread)
            if thread == "big":
                opens.append(time.perf_counter() - opened)
            await asyncio.wait([done], timeout=0.2)
        elapsed = time.perf_counter() - start
        pane.close()
        await tracker.close()
        lost = 0
        for i in range(n):
            expected = "".join(scripted_reply(_prompt(i), tokens))
            got = (replica.get(MESSAGES, f"a{n}-{i}") or {}).get("content") or ""
            lost += (
                0 if got == expected else len(scripted_reply(_prompt(i), tokens)) - len(got.split())
            )
    return {
        "tps": n * tokens / elapsed,
        "p50": _pct(lags, 0.5),
        "p99": _pct(lags, 0.99),
        "lost": lost,
        "open": _pct(opens, 0.5) * 1000,
        "first": _pct(first_deltas, 0.5) * 1000,
        "rss": _rss_mb(),
        "per_job_kb": max(0.0, _rss_mb() - rss_before) * 1024 / n,
    }


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def _serve(tokens: int) -> None:
    """The child: a real server, printing its URL, until killed."""
    async with running_server(
        users={USER: TOKEN},
        jobs=JobsConfig(
            max_per_user=500, provider=ScriptedProvider(tokens=tokens, token_delay=TOKEN_DELAY)
        ),
    ) as server:
        print(server.url, flush=True)
        await asyncio.Event().wait()


def sizes(quick: bool) -> tuple[tuple[int, ...], int]:
    """The job counts N and the reply length in tokens: ``--quick`` or the full run."""
    return ((1, 10), 50) if quick else ((1, 10, 100), 150)


@asynccontextmanager
async def serve_in_child(tokens: int) -> AsyncIterator[str]:
    """A real server in a child process (so its CPU and RSS are not ours); yields its URL."""
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "benchmarks.streams",
        "--serve",
        str(tokens),
        stdout=asyncio.subprocess.PIPE,
    )
    assert child.stdout is not None
    try:
        yield (await child.stdout.readline()).decode().strip()
    finally:
        child.kill()
        await child.wait()


async def _run(quick: bool) -> None:
    counts, tokens = sizes(quick)
    rows = []
    async with serve_in_child(tokens) as url:
        with tempfile.TemporaryDirectory(prefix="quietsync-streams-") as tmp:
            # Warm-up (imports, SQLite and aiohttp first use) so RSS per job is per job.
            await measure_tracked(url, 1, tokens, Path(tmp) / "warmup.db")
            for n in counts:
                raw = await measure_raw(url, n, tokens, Path(tmp) / f"raw{n}.db")
                ours = await measure_tracked(url, n, tokens, Path(tmp) / f"replica{n}.db")
                rows.append(
                    [
                        n,
                        round(raw["tps"]),
                        round(ours["tps"]),
                        raw["p50"],
                        raw["p99"],
                        ours["p50"],
                        ours["p99"],
                        ours["p99"] / max(raw["p99"], 1.0),
                        int(ours["lost"]),
                        ours["open"],
                        ours["first"],
                        ours["per_job_kb"],
                        ours["rss"],
                    ]
                )
    print_table(
        f"streams: N jobs x {tokens} tokens at 50 tokens/s, pane switching every 200 ms "
        f"(lag in ms; reattach to a {HISTORY:,}-message thread in ms; pid {os.getpid()})",
        [
            "N",
            "raw tok/s",
            "tracker tok/s",
            "raw lag p50",
            "raw lag p99",
            "lag p50",
            "lag p99",
            "p99 ratio",
            "lost",
            "reattach p50",
            "first delta p50",
            "RSS/job KB",
            "peak RSS MB",
        ],
        rows,
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.streams")
    parser.add_argument("--quick", action="store_true", help="N = 1, 10 and shorter replies")
    parser.add_argument("--serve", type=int, metavar="TOKENS", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        asyncio.run(_serve(args.serve))
    else:
        asyncio.run(_run(args.quick))


if __name__ == "__main__":
    main()
