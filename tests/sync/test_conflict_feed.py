"""Every replica of a user lists the user's conflicts: the losing one, a new one, after a resync.

Real servers on loopback, real replica files. The server reports a conflict
to the replica whose push caused it; the others follow the user's conflict
log after each pull, each conflict once per replica, and the app hears about
each new one once through ``on_conflicts``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from quietsync.conflicts import Conflict, canonical_json
from quietsync.replica import ProtocolError, Replica, SyncClient
from quietsync.replica.transport import ConflictPage
from quietsync.testing import RunningServer, running_server
from tests.sync.conftest import TOKEN, FlakyTransport

Open = Callable[[str], Replica]

TITLES = {"a": "Café ☕ from a", "b": "👩🏽‍💻 e\u0301té from b 𝄞"}


def bodies(conflicts: list[Conflict]) -> list[str]:
    return sorted(canonical_json(c.to_json()) for c in conflicts)


class Heard:
    """What one replica's app was told through ``on_conflicts``."""

    def __init__(self) -> None:
        self.conflicts: list[Conflict] = []

    def __call__(self, conflicts: list[Conflict]) -> None:
        self.conflicts += conflicts


async def sync(replica: Replica, url: str, heard: Heard | None = None) -> None:
    client = SyncClient(replica, url, token=TOKEN, on_conflicts=heard)
    try:
        await client.sync_once()
    finally:
        await client.stop()


async def conflict_between(a: Replica, b: Replica, url: str, key: str, heard: dict) -> None:
    """a and b write `key`'s title without seeing each other's write, then both sync."""
    for name, replica in (("a", a), ("b", b)):
        replica.put("notes", key, {"title": TITLES[name], "by": name})
    await sync(a, url, heard["a"])
    await sync(b, url, heard["b"])  # b's push meets a's write: the server reports it to b


async def test_the_losing_and_a_new_replica_list_the_conflict_once(
    tmp_path: Path, open_replica: Open
) -> None:
    a, b = open_replica("a"), open_replica("b")
    heard = {"a": Heard(), "b": Heard(), "c": Heard()}
    async with running_server(tmp_path / "server.db") as server:
        await conflict_between(a, b, server.url, "n1", heard)
        assert len(b.conflicts()) == 2  # title and by, reported to the pusher
        await sync(a, server.url, heard["a"])  # a's writes lost: a lists them too
        c = open_replica("c")
        await sync(c, server.url, heard["c"])  # a brand-new replica of the same user
        for replica in (a, b, c):  # syncing again adds nothing: each conflict once
            await sync(replica, server.url, heard[replica.node_id])
    expected = bodies(b.conflicts())
    assert {c.loser.value for c in b.conflicts()} == {TITLES["a"], "a"}
    for name, replica in (("a", a), ("b", b), ("c", c)):
        assert bodies(replica.conflicts()) == expected, name
        assert bodies(heard[name].conflicts) == expected, name  # told once, each of them


async def test_a_resync_neither_duplicates_nor_misses_conflicts(
    tmp_path: Path, open_replica: Open
) -> None:
    a, b = open_replica("a"), open_replica("b")
    heard = {"a": Heard(), "b": Heard()}
    async with running_server(tmp_path / "one.db") as first:
        await conflict_between(a, b, first.url, "n1", heard)
        await sync(a, first.url, heard["a"])
    before = bodies(a.conflicts())
    assert len(before) == 2 and bodies(b.conflicts()) == before
    async with running_server(tmp_path / "two.db") as second:  # a new history, an empty log
        for replica in (a, b):  # both resync: they push back what they hold
            await sync(replica, second.url, heard[replica.node_id])
        assert bodies(a.conflicts()) == bodies(b.conflicts()) == before  # nothing twice
        # the new log starts at position 1 again: a replica that kept its old
        # position would skip the next conflict
        await conflict_between(a, b, second.url, "n2", heard)
        await sync(a, second.url, heard["a"])
    after = bodies(b.conflicts())
    assert len(after) == 4 and set(before) < set(after)
    assert bodies(a.conflicts()) == after
    for name in ("a", "b"):
        assert bodies(heard[name].conflicts) == after, name


class StuckLog(FlakyTransport):
    """The real transport, but the conflict log claims more without moving on."""

    asked = 0

    async def conflicts(self, since: int, limit: int, space: str | None = None) -> ConflictPage:
        self.asked += 1
        return ConflictPage([], since, has_more=True)


async def test_a_conflict_log_that_does_not_move_on_is_a_protocol_error(
    server: RunningServer, replica: Replica
) -> None:
    transport = StuckLog(server.url)
    client = SyncClient(replica, transport=transport)
    replica.put("notes", "n1", {"title": "ünïcode 🎉"})
    try:
        with pytest.raises(ProtocolError, match="conflict log"):
            await client.sync_once()
    finally:
        await client.stop()
    assert transport.asked == 1  # asked once, not in a loop
    assert replica.pending_count() == 0  # the push went through before
    assert client.status.last_error is not None and "conflict log" in client.status.last_error
