"""`SyncClient.sync_once` against a real server: the push and pull rules of the issue."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from quietsync.conflicts import Conflict
from quietsync.protocol import NOTIFICATIONS
from quietsync.replica import (
    Notifications,
    RefusedMutation,
    Replica,
    RequestRefusedError,
    SyncClient,
    TransportError,
)
from quietsync.replica.replica import sync_port
from quietsync.testing import RunningServer, running_server
from tests.sync.conftest import TOKEN, FlakyTransport, server_log

Open = Callable[[str], Replica]


async def test_writes_travel_from_one_replica_to_another(server: RunningServer, open_replica: Open):
    a, b = open_replica("a"), open_replica("b")
    a.put("notes", "n1", {"title": "hello", "tags": ["x"]})
    a.text_insert("notes", "n1", "body", 0, "some text")
    a.delete("notes", "n2")
    ca, cb = SyncClient(a, server.url, token=TOKEN), SyncClient(b, server.url, token=TOKEN)
    pushed = await ca.sync_once()
    assert (pushed.pushed, pushed.pulled) == (4, 4)
    assert a.pending_count() == 0
    got = await cb.sync_once()
    await ca.stop()
    await cb.stop()
    assert got.pulled == 4 and got.pushed == 0
    assert b.get("notes", "n1") == {"title": "hello", "tags": ["x"], "body": "some text"}
    assert b.get("notes", "n2") is None and sync_port(b).cursor == sync_port(a).cursor == 4


async def test_a_push_whose_answer_was_lost_is_retried_with_the_same_ids(
    server: RunningServer, open_replica: Open
):
    a = open_replica("a")
    a.put("notes", "n1", {"title": "one"})
    a.put("notes", "n2", {"title": "two"})
    transport = FlakyTransport(server.url)
    transport.lose_answers = 1
    client = SyncClient(a, transport=transport)
    with pytest.raises(TransportError):
        await client.sync_once()
    assert a.pending_count() == 2  # not acknowledged: still queued
    assert client.status.online is False and "answer lost" in (client.status.last_error or "")
    await client.sync_once()
    await client.stop()
    assert transport.sent[0] == transport.sent[1] == ["a:1", "a:2"]
    assert a.pending_count() == 0
    assert [c.id for c in await server_log(server)] == ["a:1", "a:2"]  # applied once


async def test_a_refused_mutation_is_set_aside_and_the_rest_goes_on(
    server: RunningServer, open_replica: Open
):
    a, b = open_replica("a"), open_replica("b")
    a.put("notes", "n1", {"body": "plain value"})  # lww
    first = SyncClient(a, server.url, token=TOKEN)
    await first.sync_once()
    await first.stop()
    b.text_insert("notes", "n1", "body", 0, "text")  # crdt: the server refuses the kind
    b.put("notes", "n2", {"title": "fine"})
    heard: list[RefusedMutation] = []
    notes = Notifications(b)

    def on_refused(refused: list[RefusedMutation]) -> None:
        heard.extend(refused)
        notes.write_refused(refused)

    client = SyncClient(b, server.url, token=TOKEN, on_refused=on_refused)
    summary = await client.sync_once()
    await client.stop()
    assert summary.refused == 1 and summary.pushed >= 1
    [refused] = b.refused()
    assert refused.mutation.id == "b:1" and "kind_mismatch" in refused.reason
    assert heard == [refused]  # told once, after the commit
    warning = b.get(NOTIFICATIONS, "sync.refused:kind_mismatch")
    assert warning is not None and warning["type"] == "system.warning"
    assert set(warning) == {"thread_id", "type", "title", "body", "read_at", "created_at"}
    assert b.pending_count() == 0
    assert b.get("notes", "n1") == {"body": "plain value"}  # the server's field replaced it
    logged = {(c.collection, c.key) for c in await server_log(server)}
    assert ("notes", "n2") in logged and (NOTIFICATIONS, "sync.refused:kind_mismatch") in logged


async def test_a_batch_too_large_is_halved_and_a_lone_oversized_write_set_aside(tmp_path):
    async with running_server(tmp_path / "s.db", max_batch=4, max_body_bytes=4000) as server:
        with Replica.open(tmp_path / "a.db", node_id="a") as a:
            a.put_many("notes", {f"n{i}": {"v": i} for i in range(10)})
            a.put("notes", "big", {"v": "x" * 5000})
            client = SyncClient(a, server.url, token=TOKEN, batch_size=50)
            summary = await client.sync_once()
            await client.stop()
            assert summary.pushed == 10  # the big one is set aside, never pushed
            assert summary.refused == 1
            assert [r.mutation.key for r in a.refused()] == ["big"]
            assert "body_too_large" in a.refused()[0].reason
            assert a.pending_count() == 0


async def test_a_value_the_server_already_holds_is_not_pushed(
    server: RunningServer, open_replica: Open
):
    a, b = open_replica("a"), open_replica("b")
    ca, cb = SyncClient(a, server.url, token=TOKEN), SyncClient(b, server.url, token=TOKEN)
    a.put("notes", "n1", {"title": "same"})  # not pushed yet
    b.put("notes", "n1", {"title": "same"})  # later stamp, same content
    await cb.sync_once()
    assert await ca.pull() == 1  # a now holds b's write (newer, identical)
    summary = await ca.push()
    await ca.stop()
    await cb.stop()
    assert (summary.skipped, summary.pushed) == (1, 0)
    assert a.pending_count() == 0
    assert a.suppressed_count() == 0  # pushing it would only have produced a suppressed event
    assert [c.id for c in await server_log(server)] == ["b:1"]


async def test_conflicts_land_once_and_notify_once_per_field(
    server: RunningServer, open_replica: Open
):
    a, b = open_replica("a"), open_replica("b")
    ca = SyncClient(a, server.url, token=TOKEN, on_conflicts=Notifications(a).write_conflicts)
    cb = SyncClient(b, server.url, token=TOKEN)
    b.put("notes", "n1", {"title": "from b"})
    await cb.sync_once()
    a.put("notes", "n1", {"title": "from a"})  # concurrent: did not see b's write
    first = await ca.sync_once()
    b.put("notes", "n1", {"title": "b again"})  # b has not seen a's write: another conflict
    await cb.sync_once()
    a.put("notes", "n1", {"title": "a again"})  # nor a b's
    await ca.sync_once()
    await ca.sync_once()  # a's own changes come back: duplicates, never conflicts
    await cb.sync_once()
    await ca.stop()
    await cb.stop()
    assert first.conflicts == 1
    # a's first and fourth push and b's second each caused one; both replicas list
    # all three (push answers and the user's conflict log), each once
    assert len(a.conflicts()) == 3 and sorted(map(str, a.conflicts())) == sorted(
        map(str, b.conflicts())
    )
    notices = [n for n in a.query(NOTIFICATIONS) if n["type"] == "sync.conflict"]
    assert len(notices) == 1  # one per record and field


async def test_identical_concurrent_writes_are_counted_not_reported(
    server: RunningServer, open_replica: Open
):
    a, b = open_replica("a"), open_replica("b")
    ca = SyncClient(a, server.url, token=TOKEN, on_conflicts=Notifications(a).write_conflicts)
    cb = SyncClient(b, server.url, token=TOKEN)
    a.put("notes", "n1", {"tags": {"x": 1, "y": 2}})
    b.put("notes", "n1", {"tags": {"y": 2, "x": 1}})  # same content, other key order
    await cb.sync_once()
    summary = await ca.sync_once()
    await ca.stop()
    await cb.stop()
    assert (summary.conflicts, summary.suppressed) == (0, 1)
    assert a.suppressed_count() == 1 and a.conflicts() == []
    assert a.query(NOTIFICATIONS) == []


async def test_an_unreachable_server_leaves_everything_queued(open_replica: Open, tmp_path):
    async with running_server(tmp_path / "gone.db") as server:
        url = server.url  # the port is closed once the block ends
    a = open_replica("a")
    a.put("notes", "n1", {"title": "offline"})
    seen = []
    client = SyncClient(a, url, token=TOKEN, on_status=seen.append)
    with pytest.raises(TransportError):
        await client.sync_once()
    await client.stop()
    assert a.pending_count() == 1
    assert seen and seen[-1].online is False and seen[-1].pending == 1
    assert seen[-1].last_error and seen[-1].last_sync_at is None


async def test_a_wrong_token_is_refused_and_changes_nothing(
    server: RunningServer, open_replica: Open
):
    a = open_replica("a")
    a.put("notes", "n1", {"title": "x"})
    client = SyncClient(a, server.url, token="not-a-token")
    with pytest.raises(RequestRefusedError) as info:
        await client.sync_once()
    await client.stop()
    assert info.value.status == 401 and info.value.code == "unauthorized"
    assert a.pending_count() == 1 and a.refused() == []
    assert await server_log(server) == []


async def test_a_successful_sync_reports_online_with_its_time(
    server: RunningServer, open_replica: Open
):
    a = open_replica("a")
    a.put("notes", "n1", {"title": "x"})
    client = SyncClient(a, server.url, token=TOKEN)
    assert client.status.pending == 1 and client.status.online is False
    await client.sync_once()
    await client.stop()
    status = client.status
    assert status.pending == 0 and status.last_error is None and status.last_sync_at is not None


def test_bad_constructor_arguments_are_refused(open_replica: Open):
    a = open_replica("a")
    with pytest.raises(ValueError, match="url"):
        SyncClient(a)
    with pytest.raises(ValueError, match="token"):
        SyncClient(a, "http://127.0.0.1:1")
    with pytest.raises(ValueError, match="batch_size"):
        SyncClient(a, "http://127.0.0.1:1", token="t", batch_size=0)


async def test_a_callback_that_raises_is_logged_and_sync_goes_on(
    server: RunningServer, open_replica: Open, caplog: pytest.LogCaptureFixture
):
    a, b = open_replica("a"), open_replica("b")
    b.put("notes", "n1", {"title": "from b"})
    first = SyncClient(b, server.url, token=TOKEN)
    await first.sync_once()
    await first.stop()
    a.put("notes", "n1", {"title": "from a"})  # concurrent with b's: one conflict

    def broken(conflicts: list[Conflict]) -> None:
        raise RuntimeError("the app's handler is broken")

    client = SyncClient(a, server.url, token=TOKEN, on_conflicts=broken)
    summary = await client.sync_once()
    await client.stop()
    assert summary.conflicts == 1 and a.pending_count() == 0
    assert [c.field for c in a.conflicts()] == ["title"]  # recorded before the callback ran
    assert "failed; sync goes on" in caplog.text
