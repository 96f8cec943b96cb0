"""Partial replication: a fresh replica syncing one space of 101, against syncing all of them.

    python -m benchmarks.spaces_partial [--spaces 100] [--records 1000]

Setup: ``quietsync serve`` in a subprocess (its own core) with one user, who
has 100 shared spaces of 1,000 records each (two fields: a short non-ASCII
title and a number) and a private space, 101 spaces in all. The records are
seeded through the HTTP API, as an app would write them: one seeding
replica's `put_many` per space, pushed by a `SyncClient` in batches of 1,000.
Then a real `SyncClient` syncs into a fresh replica file, twice:

1. ``spaces=[one]``: one chosen space (the middle one of the 100);
2. ``spaces=None``: every space of the user (``GET /v1/spaces``, then each).

Each variant's client talks through a TCP relay that counts what the server
sends back: every byte of every answer, HTTP headers included (about 200 a
request), which is what a metered link bills. It prints, per variant, the
bytes received, the wall time of ``sync_once()``, the records in the
replica, and the replica's file size (after close), with the ratio one/all
(about 1/100 expected). The scale check: when syncing all, the time of the
last tenth of the shared spaces against the first tenth (each space's time
runs from its first request to the next space's; 1.0 means a space costs
the same whatever the replica already holds).

The same run at a small size is the ``spaces-partial`` row of
``python -m benchmarks`` (`spaces_scenario`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from types import TracebackType

import attrs

from benchmarks._table import print_table
from benchmarks.harness_faults import ServerProcess, SpaceAdmin
from benchmarks.results import ScenarioResult
from quietsync.protocol import Mutation
from quietsync.replica import HttpTransport, LiveMessage, PullPage, PushAnswer, Replica, SyncClient
from quietsync.replica.replica import sync_port
from quietsync.replica.transport import ConflictPage, SpaceInfo, Transport

__all__ = ["PartialRun", "main", "partial_run", "spaces_scenario"]

USER, TOKEN = "bench", "bench-token-0123456789"  # a served tokens file needs 16+ characters
COLLECTION = "notes"


class CountingRelay:
    """A TCP relay on a free loopback port, in front of the server at `port`.

    `received` counts the bytes relayed from the server to clients. Setting
    `port` sends the connections opened from then on to another server, as a
    load balancer does when one fails; a connection whose server refuses it is
    closed.
    """

    def __init__(self, port: int) -> None:
        self.port = port
        self.received = 0
        self._relays: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None
        self.url = ""

    async def __aenter__(self) -> CountingRelay:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._server is not None
        self._server.close()
        for task in self._relays:
            task.cancel()
        await asyncio.gather(*self._relays, return_exceptions=True)

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.create_task(self._relay(reader, writer))
        self._relays.add(task)
        task.add_done_callback(self._relays.discard)

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.port)
        except OSError:
            writer.close()
            return
        await asyncio.gather(
            self._pump(reader, up_writer, count=False), self._pump(up_reader, writer, count=True)
        )

    async def _pump(
        self, source: asyncio.StreamReader, sink: asyncio.StreamWriter, *, count: bool
    ) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await source.read(1 << 16):
                if count:
                    self.received += len(data)
                sink.write(data)
                await sink.drain()
        sink.close()


class SpaceClock:
    """A `Transport` noting when each space's first request went out (per-space times)."""

    def __init__(self, inner: Transport) -> None:
        self._inner = inner
        self.first: dict[str | None, float] = {}

    def _note(self, space: str | None) -> None:
        self.first.setdefault(space, time.perf_counter())

    async def push(self, mutations: Sequence[Mutation], space: str | None = None) -> PushAnswer:
        self._note(space)
        return await self._inner.push(mutations, space)

    async def pull(
        self, since: int, limit: int, history: str | None = None, space: str | None = None
    ) -> PullPage:
        self._note(space)
        return await self._inner.pull(since, limit, history, space)

    def live(
        self, since: int, history: str | None = None, space: str | None = None
    ) -> AbstractAsyncContextManager[AsyncIterator[LiveMessage]]:
        return self._inner.live(since, history, space)

    async def conflicts(self, since: int, limit: int, space: str | None = None) -> ConflictPage:
        self._note(space)
        return await self._inner.conflicts(since, limit, space)

    async def spaces(self) -> list[SpaceInfo]:
        return await self._inner.spaces()

    async def close(self) -> None:
        await self._inner.close()


@attrs.frozen
class Variant:
    """One fresh replica's sync: what came over the wire, how long, what it holds."""

    received: int
    seconds: float
    records: int
    file_bytes: int
    spaces_held: int
    """Shared spaces the replica holds anything of."""
    growth: float | None
    """Time of the last tenth of the shared spaces / the first tenth (None for one space)."""


@attrs.frozen
class PartialRun:
    spaces: int
    records: int
    one: Variant
    every: Variant

    @property
    def lost(self) -> int:
        """Records missing from, or extra in, each replica (0 when partial sync is exact)."""
        return abs(self.one.records - self.records) + abs(
            self.every.records - self.spaces * self.records
        )


async def _seed(url: str, spaces: int, records: int, tmp: Path) -> list[str]:
    """`spaces` shared spaces of `records` records each, pushed through the API; their ids."""
    admin = SpaceAdmin(url, TOKEN)
    ids = [await admin.create(f"espace {n} ✓") for n in range(spaces)]
    with Replica.open(tmp / "seed.db") as seed:
        for n, space in enumerate(ids):
            rows = {f"r{i:05d}": {"title": f"note {n}·{i} — été", "n": i} for i in range(records)}
            seed.space(space).put_many(COLLECTION, rows)
        client = SyncClient(seed, url, token=TOKEN, spaces=ids, batch_size=1000)
        try:
            await client.push()
        finally:
            await client.stop()
    return sorted(ids)


def _growth(first: dict[str | None, float], end: float) -> float:
    """Last tenth of the shared spaces' times over the first tenth (class docstring)."""
    starts = sorted(t for space, t in first.items() if space is not None)
    times = [b - a for a, b in zip(starts, [*starts[1:], end], strict=True)]
    tenth = max(1, len(times) // 10)
    return sum(times[-tenth:]) / sum(times[:tenth])


async def _variant(relay: CountingRelay, path: Path, spaces: list[str] | None) -> Variant:
    """Sync a fresh replica at `path` through the relay; `spaces` as `SyncClient` takes it."""
    relay.received = 0
    with Replica.open(path) as replica:
        clock = SpaceClock(HttpTransport(relay.url, token=TOKEN))
        client = SyncClient(replica, transport=clock, spaces=spaces)
        start = time.perf_counter()
        await client.sync_once()
        end = time.perf_counter()
        await client.stop()
        held = sorted(sync_port(replica).local_spaces())
        records = len(replica.keys(COLLECTION))
        records += sum(len(replica.space(s).keys(COLLECTION)) for s in held)
    file_bytes = sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))
    growth = None if spaces is not None else _growth(clock.first, end)
    return Variant(relay.received, end - start, records, file_bytes, len(held), growth)


async def partial_run(spaces: int, records: int, tmp: Path) -> PartialRun:
    """Seed a server in `tmp`, then sync one space, then every space (module docstring)."""
    tokens = tmp / "tokens.json"
    tokens.write_text(json.dumps({TOKEN: USER}))
    server = ServerProcess(tmp / "server.db", tokens)
    await server.start()
    try:
        ids = await _seed(server.url, spaces, records, tmp)
        async with CountingRelay(server.port) as relay:
            one = await _variant(relay, tmp / "one.db", [ids[len(ids) // 2]])
            every = await _variant(relay, tmp / "all.db", None)
    finally:
        await server.stop()
    return PartialRun(spaces, records, one, every)


def _note(run: PartialRun) -> str:
    """The scenario row's note; its first word is the bytes ratio (tests read it)."""
    one, every = run.one, run.every
    return (
        f"{one.received / every.received:.4f}x the bytes of all "
        f"({one.received:,} / {every.received:,}); time {one.seconds / every.seconds:.3f}x; "
        f"last/first tenth {every.growth:.2f}"
    )


async def spaces_scenario(tmp: Path, *, quick: bool) -> list[ScenarioResult]:
    """The `python -m benchmarks` row: one space of N+1 against all, into fresh replicas."""
    spaces, records = (10, 100) if quick else (100, 1000)
    run = await partial_run(spaces, records, tmp)
    return [
        ScenarioResult(
            scenario="spaces-partial",
            variant=f"1 of {spaces + 1} spaces vs all ({spaces} x {records:,} records)",
            ops=run.every.records,
            seconds=run.every.seconds,
            convergence_s=None,
            reported=0,
            suppressed=0,
            lost=run.lost,
            note=_note(run),
        )
    ]


def _rows(run: PartialRun) -> list[list[object]]:
    one, every = run.one, run.every

    def ratio(a: float, b: float) -> str:
        return f"{a / b:.4f}" if b else "-"

    return [
        [
            "bytes received (HTTP)",
            one.received,
            every.received,
            ratio(one.received, every.received),
        ],
        [
            "sync_once() wall time (s)",
            one.seconds,
            every.seconds,
            ratio(one.seconds, every.seconds),
        ],
        ["records in the replica", one.records, every.records, ratio(one.records, every.records)],
        [
            "replica file (bytes)",
            one.file_bytes,
            every.file_bytes,
            ratio(one.file_bytes, every.file_bytes),
        ],
        ["shared spaces held", one.spaces_held, every.spaces_held, ""],
        ["last tenth / first tenth of the spaces", "", every.growth, ""],
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.spaces_partial")
    parser.add_argument("--spaces", type=int, default=100, help="shared spaces (besides private)")
    parser.add_argument("--records", type=int, default=1000, help="records per shared space")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="quietsync-spaces-") as tmp:
        start = time.perf_counter()
        run = asyncio.run(partial_run(args.spaces, args.records, Path(tmp)))
    print_table(
        f"partial replication: 1 of {args.spaces + 1} spaces vs all, {args.spaces} x "
        f"{args.records:,} records, fresh replica (server in a subprocess; "
        f"{time.perf_counter() - start:.0f} s with seeding)",
        ["measure", "one space", "all spaces", "one/all"],
        _rows(run),
    )
    if run.lost:
        print(f"\nWRONG CONTENT: {run.lost} records missing or extra")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
