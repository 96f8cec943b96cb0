"""The live WebSocket: hello, delivery as changes commit, backlog, slow clients, shutdown."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from quietsync.protocol import private_space
from quietsync.server.keys import CORE_KEY, SYNC_KEY
from quietsync.server.live import MUST_PULL_CLOSE_CODE, LiveHub
from quietsync.testing import RunningServer, running_server
from tests.server.helpers import Writer, decoded, push

TIMEOUT = 10.0


async def receive(ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
    msg = await ws.receive(timeout=TIMEOUT)
    assert msg.type == aiohttp.WSMsgType.TEXT, msg
    return msg.json()


def hello(msg: dict[str, Any]) -> int:
    """The cursor of a hello message (which also names the server's history)."""
    assert msg["type"] == "hello" and isinstance(msg["history"], str), msg
    return int(msg["cursor"])


async def receive_changes(ws: aiohttp.ClientWebSocketResponse, count: int) -> list[dict[str, Any]]:
    """Receive "changes" messages until `count` changes have arrived; each continues the last."""
    changes: list[dict[str, Any]] = []
    cursor = None
    while len(changes) < count:
        msg = await receive(ws)
        assert msg["type"] == "changes"
        assert msg["cursor"] == msg["changes"][-1]["seq"]
        assert cursor is None or msg["after"] == cursor  # no change skipped between messages
        assert all(c["seq"] > msg["after"] for c in msg["changes"])
        cursor = msg["cursor"]
        changes += msg["changes"]
    return changes


async def test_hello_then_each_change_as_it_commits(
    alice: aiohttp.ClientSession, w1: Writer
) -> None:
    await push(alice, [w1.lww("a", "f", 0)])
    async with alice.ws_connect("/v1/live") as ws:
        assert hello(await receive(ws)) == 1
        for i in range(1, 4):
            await push(alice, [w1.lww("a", "f", i), w1.lww("b", "f", i)])
            changes = await receive_changes(ws, 2)
            assert [c["seq"] for c in changes] == [2 * i, 2 * i + 1]
            assert [c["value"] for c in changes] == [i, i]


async def test_since_sends_the_backlog_first_in_order_without_gaps(
    alice: aiohttp.ClientSession, w1: Writer
) -> None:
    await push(alice, [w1.lww(f"k{i}", "f", i) for i in range(7)])
    async with alice.ws_connect("/v1/live", params={"since": 2}) as ws:
        assert hello(await receive(ws)) == 7
        await push(alice, [w1.lww("k", "f", "live")])
        changes = await receive_changes(ws, 6)
        assert [c["seq"] for c in changes] == [3, 4, 5, 6, 7, 8]


async def test_concurrent_pushes_arrive_in_seq_order_without_gaps(
    alice: aiohttp.ClientSession, w1: Writer
) -> None:
    async with alice.ws_connect("/v1/live", params={"since": 0}) as ws:
        await receive(ws)
        writers = [Writer(f"c{i}") for i in range(8)]
        await asyncio.gather(*(push(alice, [w.lww("k", w.node, 1)] * 1) for w in writers))
        changes = await receive_changes(ws, 8)
        assert [c["seq"] for c in changes] == list(range(1, 9))


async def test_changes_of_another_user_are_not_sent(
    alice: aiohttp.ClientSession, bob: aiohttp.ClientSession, w1: Writer
) -> None:
    async with bob.ws_connect("/v1/live") as bob_ws:
        assert hello(await receive(bob_ws)) == 0
        await push(alice, [w1.lww("secret", "f", "alice only")])
        await push(bob, [w1.lww("mine", "f", "bob")])
        [change] = await receive_changes(bob_ws, 1)
        assert change["value"] == "bob"


async def test_token_may_be_given_as_a_query_parameter(server: RunningServer, w1: Writer) -> None:
    async with (
        aiohttp.ClientSession(base_url=server.url) as http,
        http.ws_connect("/v1/live", params={"token": server.token("alice")}) as ws,
    ):
        assert hello(await receive(ws)) == 0


@pytest.mark.parametrize("quietsync_server_options", [{"live_queue_limit": 3}])
async def test_a_client_that_falls_behind_is_told_to_pull(
    alice: aiohttp.ClientSession, w1: Writer
) -> None:
    async with alice.ws_connect("/v1/live") as ws:
        assert hello(await receive(ws)) == 0
        # one commit of 5 changes cannot fit a queue of 3: never buffered, the client must pull
        await push(alice, [w1.lww(f"k{i}", "f", i) for i in range(5)])
        assert await receive(ws) == {"type": "pull", "cursor": 0}
        msg = await ws.receive(timeout=TIMEOUT)
        assert msg.type == aiohttp.WSMsgType.CLOSE
        assert ws.close_code == MUST_PULL_CLOSE_CODE


async def test_shutdown_closes_sockets_cleanly() -> None:
    server_cm = running_server()
    server = await server_cm.__aenter__()
    async with server.client("alice") as http, http.ws_connect("/v1/live") as ws:
        assert hello(await receive(ws)) == 0
        stopping = asyncio.create_task(server_cm.__aexit__(None, None, None))
        msg = await ws.receive(timeout=TIMEOUT)
        assert msg.type == aiohttp.WSMsgType.CLOSE
        assert msg.data == aiohttp.WSCloseCode.GOING_AWAY
        await asyncio.wait_for(stopping, TIMEOUT)


async def test_a_batch_that_overtakes_another_is_preceded_by_the_gap(
    server: RunningServer, alice: aiohttp.ClientSession, w1: Writer
) -> None:
    async with alice.ws_connect("/v1/live") as ws:
        assert hello(await receive(ws)) == 0
        await push(alice, [w1.lww("a", "f", 1)])
        assert [c["seq"] for c in await receive_changes(ws, 1)] == [1]
        # seq 2 commits without being published (as if its publish were still on its way)
        sync, core = server.app[SYNC_KEY], server.app[CORE_KEY]
        body = {"mutations": [w1.lww("b", "f", 2)]}
        await core.run(lambda: sync.push(private_space("alice"), decoded(body["mutations"])))
        await push(alice, [w1.lww("c", "f", 3)])  # seq 3 is published first
        changes = await receive_changes(ws, 2)
        assert [(c["seq"], c["value"]) for c in changes] == [(2, 2), (3, 3)]


async def test_a_backlog_sends_each_field_once_in_its_latest_state(
    alice: aiohttp.ClientSession, w1: Writer
) -> None:
    for value in range(5):
        await push(alice, [w1.lww("a", "f", value), w1.lww(f"k{value}", "f", value)])
    async with alice.ws_connect("/v1/live", params={"since": 0}) as ws:
        assert hello(await receive(ws)) == 10
        msg = await receive(ws)
        assert (msg["after"], msg["cursor"]) == (0, 10)
        assert [(c["seq"], c["key"], c["value"]) for c in msg["changes"]] == [
            (2, "k0", 0),
            (4, "k1", 1),
            (6, "k2", 2),
            (8, "k3", 3),
            (9, "a", 4),  # written five times: sent once, with its last seq
            (10, "k4", 4),
        ]
        await push(alice, [w1.lww("a", "f", "live")])
        [live] = (await receive(ws))["changes"]
        assert (live["seq"], live["value"]) == (11, "live")


@pytest.mark.parametrize("quietsync_server_options", [{"live_queue_max_bytes": 5000}])
async def test_a_commit_of_more_bytes_than_a_queue_holds_makes_the_client_pull(
    alice: aiohttp.ClientSession, w1: Writer
) -> None:
    async with alice.ws_connect("/v1/live") as ws:
        assert hello(await receive(ws)) == 0
        await push(alice, [w1.lww("small", "f", "x" * 100)])
        assert [c["key"] for c in await receive_changes(ws, 1)] == ["small"]
        # one commit of ~8 KB cannot fit a queue of 5,000 bytes: never buffered, pull instead
        await push(alice, [w1.lww(f"k{i}", "f", "x" * 2000) for i in range(4)])
        assert await receive(ws) == {"type": "pull", "cursor": 1}
        msg = await ws.receive(timeout=TIMEOUT)
        assert msg.type == aiohttp.WSMsgType.CLOSE
        assert ws.close_code == MUST_PULL_CLOSE_CODE


def test_a_poke_wakes_only_the_subscriptions_that_have_not_sent_its_seq() -> None:
    """A wake-up from another process is dropped by a socket that sent that seq already
    (its own process's commit); after a lost connection every socket reads once."""
    hub = LiveHub(queue_limit=10, queue_max_bytes=1000)
    ahead = hub.subscribe("alice", "u:alice", web.WebSocketResponse())
    behind = hub.subscribe("alice", "u:alice", web.WebSocketResponse())
    elsewhere = hub.subscribe("bob", "u:bob", web.WebSocketResponse())
    ahead.sent, behind.sent = 5, 4
    hub.poke("u:alice", 5)
    assert (ahead.take_poke(), behind.take_poke(), elsewhere.take_poke()) == (False, True, False)
    assert not behind.take_poke()  # once per poke
    hub.poke_all()
    assert (ahead.take_poke(), behind.take_poke(), elsewhere.take_poke()) == (True, True, True)
