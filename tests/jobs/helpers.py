"""Helpers for tests that run the real server beside real replicas.

`push`/`pull` move a replica's outbox and the server's log over the real sync
API, as a sync client would, so the tests can compare both sides before (or
without) a `SyncClient`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp

from quietsync.conflicts import Conflict
from quietsync.protocol import Change
from quietsync.replica import Replica, StreamTracker
from quietsync.replica.replica import sync_port
from quietsync.testing import RunningServer, running_server
from tests.server.job_helpers import scripted

__all__ = ["client", "jobs_server", "pull", "push", "server_copy", "tracker_tasks", "until"]


async def until(condition: Callable[[], object], *, within: float = 10.0, what: str = "") -> None:
    """Wait until `condition()` is true (checked every few ms); fail after `within` seconds."""
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or condition}")
        await asyncio.sleep(0.005)


async def push(http: aiohttp.ClientSession, replica: Replica) -> dict[str, Any]:
    """Push the whole outbox; record the server's conflicts and suppressed count."""
    answer: dict[str, Any] = {"results": [], "conflicts": [], "suppressed": 0}
    while batch := sync_port(replica).outbox_batch(200):
        resp = await http.post("/v1/push", json={"mutations": [m.to_json() for m in batch]})
        body = await resp.json()
        assert resp.status == 200, body
        sync_port(replica).mark_pushed(m.id for m in batch)
        sync_port(replica).record_conflicts(Conflict.from_json(c) for c in body["conflicts"])
        sync_port(replica).add_suppressed(body["suppressed"])
        answer["results"] += body["results"]
        answer["conflicts"] += body["conflicts"]
        answer["suppressed"] += body["suppressed"]
    return answer


async def pull(http: aiohttp.ClientSession, replica: Replica) -> list[Change]:
    """Pull every change since the replica's cursor into it; the changes pulled."""
    pulled: list[Change] = []
    while True:
        resp = await http.get("/v1/pull", params={"since": sync_port(replica).cursor, "limit": 500})
        body = await resp.json()
        assert resp.status == 200, body
        changes = [Change.from_json(c) for c in body["changes"]]
        sync_port(replica).apply_remote(changes, body["cursor"])
        pulled += changes
        if not body["has_more"]:
            return pulled


async def server_copy(http: aiohttp.ClientSession, path: Path) -> Replica:
    """A fresh replica holding everything the server has for the user (close it)."""
    copy = Replica.open(path, node_id="observer")
    await pull(http, copy)
    return copy


def tracker_tasks() -> list[asyncio.Task[Any]]:
    """The tracker's tasks still alive in this loop (none may outlive `close()`)."""
    return [
        t
        for t in asyncio.all_tasks()
        if t.get_name().startswith("quietsync-tracker") and not t.done()
    ]


@asynccontextmanager
async def jobs_server(**options: Any) -> AsyncIterator[RunningServer]:
    """A real server with fast scripted jobs unless `options` say otherwise."""
    settings = {"jobs": scripted(tokens=20, token_delay=0.002), **options}
    async with running_server(**settings) as server:
        yield server


@asynccontextmanager
async def client(
    server: RunningServer, path: Path, **tracker_options: Any
) -> AsyncIterator[tuple[Replica, StreamTracker]]:
    """A replica file and its tracker for user alice; both closed (tracker first) on exit."""
    with Replica.open(path, node_id="client") as replica:
        tracker = StreamTracker(replica, server.url, token=server.token("alice"), **tracker_options)
        try:
            yield replica, tracker
        finally:
            await tracker.close()
