"""The live loop (`start`/`stop`): pushes after writes, follows the socket, survives outages."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path

from benchmarks.harness import ServerProcess
from quietsync.replica import Backoff, Replica, SyncClient
from quietsync.testing import RunningServer, running_server
from tests.sync.conftest import (
    TOKEN,
    WAIT,
    FlakyTransport,
    RecordingBackoff,
    server_log,
    wait_record,
    wait_status,
)

SERVED_TOKEN = "token-a-0123456789"
"""For `quietsync serve`, which wants tokens of 16 characters at least."""

Open = Callable[[str], Replica]


async def test_changes_arrive_over_the_socket_and_local_writes_are_pushed(
    server: RunningServer, open_replica: Open
):
    a, b = open_replica("a"), open_replica("b")
    ca = SyncClient(a, server.url, token=TOKEN)
    transport = FlakyTransport(server.url)
    async with SyncClient(b, transport=transport) as cb:
        await asyncio.wait_for(transport.connected.wait(), WAIT)
        pulls = transport.pulls
        a.put("notes", "n1", {"title": "from a"})
        await ca.sync_once()
        assert await wait_record(b, "notes", "n1") == {"title": "from a"}
        assert transport.pulls == pulls  # it came over the socket, not a pull
        b.put("notes", "n2", {"title": "from b"})  # no sync call: the loop pushes it
        await wait_status(cb, lambda s: s.pending == 0)
    await ca.stop()
    assert ("notes", "n2") in {(c.collection, c.key) for c in await server_log(server)}
    assert cb.status.online is False  # stopped


async def test_a_subscriber_that_falls_behind_is_told_to_pull_and_catches_up(tmp_path: Path):
    async with running_server(tmp_path / "s.db", live_queue_limit=5) as server:
        with Replica.open(tmp_path / "a.db") as a, Replica.open(tmp_path / "b.db") as b:
            transport = FlakyTransport(server.url)
            async with SyncClient(b, transport=transport):
                await asyncio.wait_for(transport.connected.wait(), WAIT)
                pulls = transport.pulls
                a.put_many("notes", {f"n{i}": {"v": i} for i in range(50)})
                ca = SyncClient(a, server.url, token=TOKEN)
                await ca.sync_once()  # one commit of 50 changes: more than the socket buffers
                await ca.stop()
                await wait_record(b, "notes", "n49")
                assert transport.pulls > pulls
            assert [r["v"] for r in b.query("notes", order_by="v")] == list(range(50))


async def test_an_unreachable_server_is_retried_with_backoff_never_in_a_busy_loop(
    open_replica: Open, tmp_path: Path
):
    async with running_server(tmp_path / "gone.db") as server:
        url = server.url
    a = open_replica("a")
    backoff = RecordingBackoff(enough=4)
    attempts = []
    client = SyncClient(a, url, token=TOKEN, backoff=backoff, on_status=attempts.append)
    await client.start()
    await asyncio.wait_for(backoff.reached.wait(), WAIT)
    await client.stop()
    assert backoff.failures >= 4  # every failed attempt asked for a delay first
    assert all(0 <= d <= backoff.cap for d in backoff.delays)
    assert client.status.online is False and client.status.last_error


async def test_the_loop_survives_a_killed_server_and_drains_the_queue_after(
    open_replica: Open, tmp_path: Path
):
    tokens = tmp_path / "tokens.json"
    tokens.write_text(json.dumps({SERVED_TOKEN: "alice"}))
    proc = ServerProcess(tmp_path / "server.db", tokens)
    a, b = open_replica("a"), open_replica("b")
    try:
        await proc.start()
        client = SyncClient(a, proc.url, token=SERVED_TOKEN, backoff=Backoff(base=0.01, cap=0.05))
        try:
            await client.start()
            await wait_status(client, lambda s: s.online)
            await proc.kill()
            await wait_status(client, lambda s: not s.online)
            a.put("notes", "n1", {"title": "written while the server was down"})
            assert client.status.pending == 1
            await proc.start()
            await wait_status(client, lambda s: s.online and s.pending == 0)
        finally:
            await client.stop()
        reader = SyncClient(b, proc.url, token=SERVED_TOKEN)
        await reader.sync_once()
        await reader.stop()
    finally:
        await proc.stop()
    assert b.get("notes", "n1") == {"title": "written while the server was down"}


async def test_statuses_yield_the_current_status_then_each_change(
    server: RunningServer, open_replica: Open
):
    a = open_replica("a")
    client = SyncClient(a, server.url, token=TOKEN)
    stream = client.statuses()
    first = await anext(stream)
    a.put("notes", "n1", {"title": "x"})
    second = await asyncio.wait_for(anext(stream), WAIT)
    await client.sync_once()
    later = [await asyncio.wait_for(anext(stream), WAIT) for _ in range(2)]
    await stream.aclose()
    await client.stop()
    assert (first.pending, first.online) == (0, False)
    assert second.pending == 1
    assert later[0].pending == 0 and not later[0].online  # pushed, then pulled:
    assert later[1].online and later[1].last_sync_at is not None  # online after both


async def test_a_stopped_client_can_start_again(server: RunningServer, open_replica: Open):
    a = open_replica("a")
    client = SyncClient(a, server.url, token=TOKEN)
    for n in range(2):
        async with client:
            await wait_status(client, lambda s: s.online)
            a.put("notes", f"n{n}", {"n": n})
            await wait_status(client, lambda s: s.pending == 0)
        assert client.status.online is False
    assert {c.key for c in await server_log(server)} == {"n0", "n1"}
