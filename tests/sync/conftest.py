"""Fixtures for sync tests: a real server on 127.0.0.1, real replica files in ``tmp_path``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from quietsync.protocol import Change, Mutation
from quietsync.replica import (
    Backoff,
    HttpTransport,
    LiveMessage,
    PullPage,
    PushAnswer,
    Replica,
    SyncClient,
    SyncStatus,
    TransportError,
)
from quietsync.replica.transport import ConflictPage, SpaceInfo
from quietsync.testing import RunningServer, running_server

TOKEN = "token-a"
WAIT = 10.0  # seconds any wait for a condition may take before the test fails


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[RunningServer]:
    async with running_server(tmp_path / "server.db") as srv:
        yield srv


@pytest.fixture
def replica(tmp_path: Path) -> Iterator[Replica]:
    with Replica.open(tmp_path / "replica.db", node_id="local") as r:
        yield r


@pytest.fixture
def open_replica(tmp_path: Path) -> Iterator[Callable[[str], Replica]]:
    opened: list[Replica] = []

    def open_(name: str) -> Replica:
        r = Replica.open(tmp_path / f"{name}.db", node_id=name)
        opened.append(r)
        return r

    yield open_
    for r in opened:
        r.close()


async def server_log(server: RunningServer) -> list[Change]:
    """The user's whole change log, read over HTTP."""
    async with server.client("alice") as http:
        body = await (await http.get("/v1/pull", params={"limit": "5000"})).json()
    return [Change.from_json(c) for c in body["changes"]]


async def wait_status(client: SyncClient, ok: Callable[[SyncStatus], bool]) -> SyncStatus:
    """The first status (current or future) for which `ok` holds; fails after `WAIT` s."""

    async def first() -> SyncStatus:
        async for status in client.statuses():
            if ok(status):
                return status
        raise AssertionError("unreachable")

    return await asyncio.wait_for(first(), WAIT)


async def wait_record(replica: Replica, collection: str, key: str) -> dict[str, Any]:
    """The record once it exists locally (change subscription; no polling)."""
    arrived = asyncio.Event()
    unsubscribe = replica.subscribe(collection, lambda _e: arrived.set(), key=key)
    try:
        while (record := replica.get(collection, key)) is None:
            await asyncio.wait_for(arrived.wait(), WAIT)
            arrived.clear()
        return record
    finally:
        unsubscribe()


class FlakyTransport:
    """The real transport, plus faults a test switches on: lost push answers, refusing pushes."""

    def __init__(self, url: str) -> None:
        self.inner = HttpTransport(url, token=TOKEN)
        self.lose_answers = 0
        self.pushes_fail = False
        self.sent: list[list[str]] = []
        self.pulls = 0
        self.connected = asyncio.Event()

    async def push(self, mutations: Sequence[Mutation], space: str | None = None) -> PushAnswer:
        if self.pushes_fail:
            raise TransportError("test: pushes fail")
        self.sent.append([m.id for m in mutations])
        answer = await self.inner.push(mutations, space)
        if self.lose_answers:
            self.lose_answers -= 1
            raise TransportError("test: answer lost after the server applied the push")
        return answer

    async def pull(
        self, since: int, limit: int, history: str | None = None, space: str | None = None
    ) -> PullPage:
        self.pulls += 1
        return await self.inner.pull(since, limit, history, space)

    @asynccontextmanager
    async def live(
        self, since: int, history: str | None = None, space: str | None = None
    ) -> AsyncIterator[AsyncIterator[LiveMessage]]:
        """The real socket; `connected` is set once the server's hello came through."""
        async with self.inner.live(since, history, space) as messages:
            yield self._watch(messages)

    async def _watch(self, messages: AsyncIterator[LiveMessage]) -> AsyncIterator[LiveMessage]:
        async for msg in messages:
            if msg.type == "hello":
                self.connected.set()
            yield msg

    async def conflicts(self, since: int, limit: int, space: str | None = None) -> ConflictPage:
        return await self.inner.conflicts(since, limit, space)

    async def spaces(self) -> list[SpaceInfo]:
        return await self.inner.spaces()

    async def close(self) -> None:
        await self.inner.close()


class RecordingBackoff(Backoff):
    """Tiny delays, each recorded; `reached` is set once `enough` were asked for."""

    def __init__(self, enough: int) -> None:
        super().__init__(base=0.001, cap=0.004)
        self.delays: list[float] = []
        self.enough, self.reached = enough, asyncio.Event()

    def next_delay(self) -> float:
        self.delays.append(super().next_delay())
        if len(self.delays) >= self.enough:
            self.reached.set()
        return self.delays[-1]
