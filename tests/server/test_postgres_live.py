"""Live changes cross server processes on one PostgreSQL database (LISTEN/NOTIFY): two real
``quietsync serve`` processes, a socket on the first, pushes through the second."""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from quietsync.protocol import REVOKED_CLOSE_CODE
from quietsync.server.live import LiveHub
from quietsync.server.postgres_listen import APPLICATION_NAME, LiveListener
from quietsync.server.postgres_store import LIVE_CHANNEL
from tests.server.helpers import Writer, new_space, push, set_member
from tests.server.processes import ServeProcess, serve_processes
from tests.server.test_live import TIMEOUT, hello, receive, receive_changes

TOKENS = {"token-alice-0123456789": "alice", "token-bob-0123456789": "bob"}
PUSHES = 50


@asynccontextmanager
async def two_servers(pg_url: str, tmp_path: Path) -> AsyncIterator[list[ServeProcess]]:
    tokens = tmp_path / "tokens.json"
    tokens.write_text(json.dumps(TOKENS))
    async with serve_processes(pg_url, 2, "--tokens", str(tokens)) as servers:
        yield servers


def client(server: ServeProcess, token: str) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(base_url=server.url, headers={"Authorization": f"Bearer {token}"})


def seqs(changes: list[dict[str, Any]]) -> list[int]:
    return [int(c["seq"]) for c in changes]


async def arrival(ws: aiohttp.ClientWebSocketResponse) -> tuple[dict[str, Any], float]:
    """The next message of `ws`, and when it arrived (`time.perf_counter`)."""
    message = await receive(ws)
    return message, time.perf_counter()


def quantiles_ms(latencies: list[float]) -> str:
    cuts = statistics.quantiles(latencies, n=100)
    return f"p50 {cuts[49] * 1000:.2f} ms, p99 {cuts[98] * 1000:.2f} ms"


async def test_a_socket_on_one_process_receives_pushes_through_another(
    pg_url: str, tmp_path: Path
) -> None:
    """Each push through process 2 arrives on process 1's socket, in order, once, each
    message continuing the last. Prints the latency from sending the push to the change's
    arrival, on process 1 (across processes) and on process 2 (the same process)."""
    w = Writer("n1")
    async with (
        two_servers(pg_url, tmp_path) as (first, second),
        client(first, "token-alice-0123456789") as on_first,
        client(second, "token-alice-0123456789") as on_second,
    ):
        sockets = [await on_first.ws_connect("/v1/live"), await on_second.ws_connect("/v1/live")]
        cursors = [hello(await receive(ws)) for ws in sockets]
        latencies: list[list[float]] = [[], []]
        received: list[list[dict[str, Any]]] = [[], []]
        for i in range(PUSHES):
            arrivals = [asyncio.create_task(arrival(ws)) for ws in sockets]
            began = time.perf_counter()
            status, _ = await push(on_second, [w.lww(f"k{i}", "n", i)])
            assert status == 200
            for n, (message, at) in enumerate(await asyncio.gather(*arrivals)):
                assert message["type"] == "changes" and message["after"] == cursors[n], message
                cursors[n] = message["cursor"]
                received[n] += message["changes"]
                latencies[n].append(at - began)
        for ws in sockets:
            await ws.close()
    for changes in received:
        assert seqs(changes) == list(range(1, PUSHES + 1))
        assert [c["value"] for c in changes] == list(range(PUSHES))
    print(f"\nlive latency, push sent to change received, {PUSHES} pushes on PostgreSQL:")
    print(f"  across processes: {quantiles_ms(latencies[0])}")
    print(f"  same process:     {quantiles_ms(latencies[1])}")


async def test_a_shared_space_fans_out_pushes_of_both_processes(
    pg_url: str, tmp_path: Path
) -> None:
    """Bob follows a shared space on process 1 while Alice pushes into it through both
    processes in turn: he receives every change once, in seq order, without a gap."""
    w = Writer("n1")
    async with (
        two_servers(pg_url, tmp_path) as servers,
        client(servers[0], "token-bob-0123456789") as bob,
        client(servers[0], "token-alice-0123456789") as alice_first,
        client(servers[1], "token-alice-0123456789") as alice_second,
    ):
        space = await new_space(alice_second)
        assert (await set_member(alice_second, space, "bob", "read"))[0] == 200
        ws = await bob.ws_connect("/v1/live", params={"space": space})
        assert hello(await receive(ws)) == 0
        for i in range(20):
            status, _ = await push(
                (alice_first, alice_second)[i % 2], [w.lww(f"k{i}", "n", i)], space
            )
            assert status == 200
        changes = await receive_changes(ws, 20)
        await ws.close()
    assert seqs(changes) == list(range(1, 21))


async def test_a_lost_listen_connection_is_opened_again_and_misses_nothing(
    pg_url: str, tmp_path: Path
) -> None:
    """Process 1's LISTEN connection is killed; what process 2 commits meanwhile still
    reaches process 1's socket (every socket reads the store once on reconnect)."""
    w = Writer("n1")
    async with (
        two_servers(pg_url, tmp_path) as (first, second),
        client(first, "token-alice-0123456789") as on_first,
        client(second, "token-alice-0123456789") as on_second,
    ):
        ws = await on_first.ws_connect("/v1/live")
        hello(await receive(ws))
        db = await asyncpg.connect(pg_url)
        try:
            killed = await db.fetch(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE application_name = $1 AND datname = current_database()",
                APPLICATION_NAME,
            )
        finally:
            await db.close()
        assert len(killed) == 2  # one per process
        for i in range(5):
            assert (await push(on_second, [w.lww(f"k{i}", "n", i)]))[0] == 200
        changes = await receive_changes(ws, 5)
        await ws.close()
    assert seqs(changes) == list(range(1, 6))


class RecordingHub(LiveHub):
    """A hub that queues the wake-ups it is given, for the test to await."""

    def __init__(self) -> None:
        super().__init__(queue_limit=10, queue_max_bytes=1000)
        self.pokes: asyncio.Queue[tuple[str, int] | None] = asyncio.Queue()

    def poke(self, space: str, seq: int) -> None:
        self.pokes.put_nowait((space, seq))

    def poke_all(self) -> None:
        self.pokes.put_nowait(None)


async def test_the_listener_pokes_every_socket_after_listening_again(pg_url: str) -> None:
    """A notification is a poke of its space; a killed LISTEN connection is replaced, and
    then every socket is poked once, as commits may have gone unheard meanwhile."""
    hub = RecordingHub()
    listener = LiveListener(pg_url, hub, lambda: None)
    await listener.start()
    db = await asyncpg.connect(pg_url)
    try:
        await db.execute("SELECT pg_notify($1, 's:with space 7')", LIVE_CHANNEL)
        assert await asyncio.wait_for(hub.pokes.get(), TIMEOUT) == ("s:with space", 7)
        await db.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1"
            " AND datname = current_database()",
            APPLICATION_NAME,
        )
        assert await asyncio.wait_for(hub.pokes.get(), TIMEOUT) is None
        await db.execute("SELECT pg_notify($1, 'u:alice 8')", LIVE_CHANNEL)
        assert await asyncio.wait_for(hub.pokes.get(), TIMEOUT) == ("u:alice", 8)
    finally:
        await db.close()
        await listener.stop()


async def test_the_listener_drops_the_notifications_of_its_own_store_connection(
    pg_url: str,
) -> None:
    """A commit of this process's store connection is not a poke (the process published
    it to its sockets itself); one of any other connection is. Notifications come in
    commit order, so the first poke being the second commit's shows the first dropped."""
    hub = RecordingHub()
    own, other = await asyncpg.connect(pg_url), await asyncpg.connect(pg_url)
    listener = LiveListener(pg_url, hub, own.get_server_pid)
    await listener.start()
    try:
        await own.execute("SELECT pg_notify($1, 'u:alice 1')", LIVE_CHANNEL)
        await other.execute("SELECT pg_notify($1, 'u:alice 2')", LIVE_CHANNEL)
        assert await asyncio.wait_for(hub.pokes.get(), TIMEOUT) == ("u:alice", 2)
        assert hub.pokes.empty()
    finally:
        await listener.stop()
        await own.close()
        await other.close()


async def test_a_removal_through_one_process_closes_the_socket_on_another(
    pg_url: str, tmp_path: Path
) -> None:
    """Revocation crosses processes: bob follows a shared space on process 1; alice
    removes him through process 2; his socket closes with 4003 within a second and his
    private socket on process 1 hears that his spaces changed."""
    async with (
        two_servers(pg_url, tmp_path) as (first, second),
        client(second, "token-alice-0123456789") as alice,
        client(first, "token-bob-0123456789") as bob,
    ):
        space = await new_space(alice)
        assert (await set_member(alice, space, "bob", "read"))[0] == 200
        shared = await bob.ws_connect("/v1/live", params={"space": space})
        private = await bob.ws_connect("/v1/live")
        hello(await receive(shared))
        hello(await receive(private))
        started = time.perf_counter()
        async with alice.delete(f"/v1/spaces/{space}/members/bob") as resp:
            assert resp.status == 204
        closed = await asyncio.wait_for(shared.receive(), TIMEOUT)
        assert (closed.type, closed.data) == (aiohttp.WSMsgType.CLOSE, REVOKED_CLOSE_CODE)
        assert time.perf_counter() - started < 1.0
        assert await receive(private) == {"type": "spaces"}
        await private.close()
