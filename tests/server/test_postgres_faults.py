"""SIGKILL one of three ``quietsync serve`` processes on one PostgreSQL database while
pushes are in flight: nothing acknowledged is lost, nothing is applied twice, and every
live client converges.

Six pushers, two pinned to each process (separate ports), push batches of new records
with mutation ids as a replica does (``p<i>:<n>``, one push at a time). A push that
fails with the connection (the process died under it, or before it) has an unknown
outcome: the pusher sends the same body, same ids, through a surviving process until it
is answered. One live socket follows the user's space on each process; when its process
dies it reconnects to a survivor with its cursor. And a real replica writes records
while its `SyncClient` pushes them and follows the space, through a TCP relay in front
of the process that dies; the relay then sends new connections to a survivor, as a load
balancer would, and the client retries by itself. Every record is new, so nothing is
overwritten: the server's state is its whole history, one seq per applied write, and a
write applied twice would show as a gap (its field's seq taken again).

The seed fixes the batch sizes, which process dies and after how many acknowledged
pushes; which request the kill interrupts is up to the scheduler, which is the point.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp

from benchmarks.spaces_partial import CountingRelay
from quietsync.replica import Backoff, Replica, SyncClient
from tests.server.helpers import Writer, pull_all
from tests.server.processes import serve_processes
from tests.server.test_live import TIMEOUT, hello

SEED = 17
PROCESSES, PUSHERS = 3, 6
TOKEN = "token-alice-0123456789"
HEADERS = {"Authorization": f"Bearer {TOKEN}"}


class Cluster:
    """The processes' client sessions, and which processes are alive."""

    def __init__(self, sessions: list[aiohttp.ClientSession]) -> None:
        self.sessions = sessions
        self.alive = set(range(len(sessions)))

    def survivor(self, after: int) -> int:
        """The next live process after `after`, in order."""
        return next(
            n % len(self.sessions)
            for n in range(after + 1, after + 1 + len(self.sessions))
            if n % len(self.sessions) in self.alive
        )


class Progress:
    """A count that tasks can wait on."""

    def __init__(self) -> None:
        self.count = 0
        self._moved = asyncio.Event()

    def add(self) -> None:
        self.count += 1
        self._moved.set()

    async def reach(self, count: int) -> None:
        while self.count < count:
            self._moved.clear()
            await self._moved.wait()


class Pusher:
    """Pushes batches of new records through its process; retries a failed push, same ids,
    through a survivor, until answered."""

    def __init__(self, number: int, cluster: Cluster, rng: random.Random) -> None:
        self.name = f"p{number}"
        self.first = self.server = number % PROCESSES
        self._cluster = cluster
        self._writer = Writer(self.name)
        self._rng = rng
        self._n = 0
        self.sent: list[str] = []
        self.acked: list[str] = []
        self.retried = 0

    async def run(self, acked_pushes: Progress, stop: asyncio.Event) -> None:
        while not stop.is_set():
            batch = []
            for _ in range(self._rng.randint(1, 20)):
                self._n += 1
                batch.append(self._writer.lww(f"{self.name}-{self._n}", "v", self._n))
            self.sent += [m["id"] for m in batch]
            await self._push_until_answered({"mutations": batch})
            self.acked += [m["id"] for m in batch]
            acked_pushes.add()

    async def _push_until_answered(self, body: dict[str, Any]) -> None:
        while True:
            http = self._cluster.sessions[self.server]
            try:
                async with http.post("/v1/push", json=body) as resp:
                    assert resp.status == 200, await resp.text()
                    answer = await resp.json()
            except aiohttp.ClientError:
                if self.server in self._cluster.alive:  # not the killed one: a real failure
                    raise
                self.server = self._cluster.survivor(self.server)
                self.retried += 1
                continue
            outcomes = {r["outcome"] for r in answer["results"]}
            assert outcomes == {"applied"}, answer  # new records; a retry gets the same answer
            return


class Follower:
    """A live socket on its process; reconnects to a survivor with its cursor."""

    def __init__(self, server: int, cluster: Cluster) -> None:
        self.server = server
        self._cluster = cluster
        self.cursor = 0
        self.changes: list[dict[str, Any]] = []
        self.reconnects = 0
        self._moved = asyncio.Event()

    async def run(self) -> None:
        while True:
            http = self._cluster.sessions[self.server]
            try:
                async with http.ws_connect("/v1/live", params={"since": self.cursor}) as ws:
                    assert hello(await ws.receive_json()) >= self.cursor
                    async for msg in ws:
                        self._take(msg.json())
            except aiohttp.ClientError:
                pass
            assert self.server not in self._cluster.alive, "a live socket closed on a survivor"
            self.server = self._cluster.survivor(self.server)
            self.reconnects += 1

    def _take(self, message: dict[str, Any]) -> None:
        assert message["type"] == "changes", message
        assert message["after"] == self.cursor, (message["after"], self.cursor)  # no gap
        self.changes += message["changes"]
        self.cursor = message["cursor"]
        self._moved.set()

    async def reach(self, head: int) -> None:
        while self.cursor < head:
            self._moved.clear()
            await self._moved.wait()


class ReplicaWriter:
    """A replica putting a few new records each time the pushers progress; its
    `SyncClient` pushes and follows live through `relay`."""

    def __init__(self, path: Path, relay: CountingRelay, rng: random.Random) -> None:
        self.replica = Replica.open(path, node_id="r1")
        self.statuses: list[bool] = []  # online, at each status change
        self.client = SyncClient(
            self.replica,
            relay.url,
            token=TOKEN,
            backoff=Backoff(base=0.01, cap=0.05),
            on_status=lambda status: self.statuses.append(status.online),
        )
        self._rng = rng
        self.written = 0
        self._moved = asyncio.Event()
        self.replica.subscribe("notes", lambda _event: self._moved.set())

    async def run(self, pushed: Progress, stop: asyncio.Event) -> None:
        while not stop.is_set():
            for _ in range(self._rng.randint(1, 5)):
                self.written += 1
                self.replica.put("notes", f"r1-{self.written}", {"v": self.written})
            await pushed.reach(pushed.count + 1)

    async def reach(self, keys: set[str]) -> None:
        """Until the replica holds exactly `keys` (it pulls what others pushed)."""
        while set(self.replica.keys("notes")) != keys:
            self._moved.clear()
            await self._moved.wait()

    async def drained(self) -> None:
        """Until every local write was acknowledged."""
        async for status in self.client.statuses():
            if status.pending == 0:
                return


async def test_sigkill_of_one_process_loses_and_doubles_nothing(
    pg_url: str, tmp_path: Path
) -> None:
    rng = random.Random(SEED)
    victim, kill_after = rng.randrange(PROCESSES), rng.randint(15, 30)
    tokens = tmp_path / "tokens.json"
    tokens.write_text(json.dumps({TOKEN: "alice"}))
    async with serve_processes(pg_url, PROCESSES, "--tokens", str(tokens)) as servers:
        sessions = [aiohttp.ClientSession(base_url=s.url, headers=HEADERS) for s in servers]
        cluster = Cluster(sessions)
        relay = await CountingRelay(port(servers[victim].url)).__aenter__()
        writer = ReplicaWriter(tmp_path / "r1.db", relay, random.Random(rng.random()))
        try:
            await writer.client.start()
            followers = [Follower(n, cluster) for n in range(PROCESSES)]
            following = [asyncio.create_task(f.run()) for f in followers]
            pushers = [Pusher(n, cluster, random.Random(rng.random())) for n in range(PUSHERS)]
            acked, stop = Progress(), asyncio.Event()
            pushing = [asyncio.create_task(p.run(acked, stop)) for p in pushers]
            pushing.append(asyncio.create_task(writer.run(acked, stop)))
            await asyncio.wait_for(acked.reach(kill_after), TIMEOUT)
            cluster.alive.discard(victim)
            relay.port = port(servers[cluster.survivor(victim)].url)
            servers[victim].proc.kill()  # SIGKILL, with its pushers' requests in flight
            assert await asyncio.wait_for(servers[victim].proc.wait(), TIMEOUT) == -9
            await asyncio.wait_for(acked.reach(kill_after + 3 * PUSHERS), TIMEOUT)
            stop.set()
            acked.add()  # the replica's writer may wait for one more push
            await asyncio.wait_for(asyncio.gather(*pushing), TIMEOUT)
            await asyncio.wait_for(writer.drained(), TIMEOUT)

            changes = await pull_all(sessions[cluster.survivor(victim)])
            head = len(changes)
            await asyncio.wait_for(asyncio.gather(*(f.reach(head) for f in followers)), TIMEOUT)
            await asyncio.wait_for(writer.reach({c["key"] for c in changes}), TIMEOUT)
            records = {k: writer.replica.get("notes", k) for k in writer.replica.keys("notes")}
            for task in following:
                task.cancel()
            await asyncio.gather(*following, return_exceptions=True)
        finally:
            await writer.client.stop()
            writer.replica.close()
            await relay.__aexit__(None, None, None)
            for http in sessions:
                await http.close()

    sent = [mid for p in pushers for mid in p.sent]
    sent += [f"r1:{n}" for n in range(1, writer.written + 1)]  # the replica's outbox ids
    assert all(p.acked == p.sent for p in pushers)  # every push was answered in the end
    counts = Counter(c["id"] for c in changes)
    assert counts == Counter(sent), f"seed {SEED}: a write lost or applied twice"
    assert [c["seq"] for c in changes] == list(range(1, head + 1)), "seqs with a gap"
    assert all(p.retried >= 1 for p in pushers if p.first == victim)  # moved to a survivor
    for follower in followers:
        assert [(c["seq"], c["id"]) for c in follower.changes] == [
            (c["seq"], c["id"]) for c in changes
        ]
    assert followers[victim].reconnects == 1
    assert records == {c["key"]: {"v": c["value"]} for c in changes}  # the replica converged
    online = [n for n, up in enumerate(writer.statuses) if up]
    assert online and False in writer.statuses[online[0] :]  # it lost the victim, came back


def port(url: str) -> int:
    return int(url.rsplit(":", 1)[1])
