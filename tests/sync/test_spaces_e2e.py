"""Spaces end to end: two users, real replicas, the real server on loopback.

Against ``docs/protocol.md`` "Spaces" (the wire contract of issue #16): a
space shared by alice and bob converges (LWW and CRDT text, non-ASCII); a
replica syncing one chosen space gets only that one; a membership added
while a client runs is pulled from 0; a membership removed purges the space
and sets its unsynced writes aside. Skipped on a server without
``GET /v1/spaces``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from quietsync.replica import Replica, SyncClient
from quietsync.testing import RunningServer, running_server
from tests.sync.conftest import wait_status

USERS = {"alice": "token-alice-0123456789", "bob": "token-bob-0123456789ab"}
WAIT = 10.0


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[RunningServer]:
    async with running_server(users=USERS, db_path=tmp_path / "server.db") as running:
        async with running.client("alice") as http:
            if (await http.get("/v1/spaces")).status == 404:
                pytest.skip("this server has no spaces (GET /v1/spaces is 404)")
        yield running


async def create_space(server: RunningServer, owner: str, name: str) -> str:
    async with server.client(owner) as http:
        resp = await http.post("/v1/spaces", json={"name": name})
        assert resp.status == 201, await resp.text()
        return str((await resp.json())["id"])


async def set_member(server: RunningServer, space: str, user: str, role: str | None) -> None:
    async with server.client("alice") as http:
        path = f"/v1/spaces/{space}/members/{user}"
        resp = await (http.delete(path) if role is None else http.put(path, json={"role": role}))
        assert resp.status in (200, 204), await resp.text()


def client(replica: Replica, server: RunningServer, user: str, **kwargs: Any) -> SyncClient:
    return SyncClient(replica, server.url, token=server.token(user), **kwargs)


async def sync_once(replica: Replica, server: RunningServer, user: str, **kwargs: Any) -> None:
    once = client(replica, server, user, **kwargs)
    try:
        await once.sync_once()
    finally:
        await once.stop()


async def until(view: Any, check: Callable[[], bool]) -> None:
    """Wait (on the space's ``notes`` change events, no polling) until `check()` holds."""
    changed = asyncio.Event()
    unsubscribe = view.subscribe("notes", lambda _: changed.set())
    try:
        async with asyncio.timeout(WAIT):
            while not check():
                await changed.wait()
                changed.clear()
    finally:
        unsubscribe()


async def test_two_users_sharing_a_space_converge(server: RunningServer, tmp_path: Path) -> None:
    space = await create_space(server, "alice", "Équipe 🚀")
    await set_member(server, space, "bob", "write")
    with (
        Replica.open(tmp_path / "a.db") as a,
        Replica.open(tmp_path / "b.db") as b,
    ):
        a.space(space).put("notes", "n1", {"title": "café ☕"})
        a.space(space).text_insert("notes", "n1", "body", 0, "Grüße 𝄞")
        async with client(a, server, "alice"), client(b, server, "bob"):
            shared_b = b.space(space)
            first = {"title": "café ☕", "body": "Grüße 𝄞"}
            await until(shared_b, lambda: shared_b.get("notes", "n1") == first)
            b.space(space).text_insert("notes", "n1", "body", 0, "e\u0301 ")
            b.space(space).put("notes", "n1", {"title": "thé 🍵"})
            a.space(space).text_insert("notes", "n1", "body", len("Grüße 𝄞"), " 😀")
            want = {"title": "thé 🍵", "body": "e\u0301 Grüße 𝄞 😀"}
            await until(a.space(space), lambda: a.space(space).get("notes", "n1") == want)
            await until(b.space(space), lambda: b.space(space).get("notes", "n1") == want)
        assert a.get("notes", "n1") is None and b.get("notes", "n1") is None


async def test_each_space_has_its_own_conflict_log(server: RunningServer, tmp_path: Path) -> None:
    space = await create_space(server, "alice", "Équipe")
    await set_member(server, space, "bob", "write")
    with (
        Replica.open(tmp_path / "laptop.db") as laptop,
        Replica.open(tmp_path / "phone.db") as phone,
        Replica.open(tmp_path / "bob.db") as bob,
    ):
        laptop.put("notes", "mine", {"title": "à moi"})  # alice's private space
        phone.put("notes", "mine", {"title": "pour moi"})
        laptop.space(space).put("notes", "ours", {"title": "à nous"})
        bob.space(space).put("notes", "ours", {"title": "for us"})
        for replica, user in ((laptop, "alice"), (phone, "alice"), (bob, "bob"), (laptop, "alice")):
            await sync_once(replica, server, user)
        assert [c.key for c in laptop.conflicts()] == ["mine"]
        assert [c.key for c in laptop.space(space).conflicts()] == ["ours"]
        assert [(c.winner.user, c.loser.user) for c in laptop.space(space).conflicts()] in (
            [("alice", "bob")],
            [("bob", "alice")],
        )


async def test_a_replica_syncing_one_space_gets_only_that_space(
    server: RunningServer, tmp_path: Path
) -> None:
    one, other = [await create_space(server, "alice", n) for n in ("one", "other")]
    with Replica.open(tmp_path / "writer.db") as writer:
        writer.put("notes", "k", {"v": "private"})
        writer.space(one).put("notes", "k", {"v": "one"})
        writer.space(other).put("notes", "k", {"v": "other"})
        await sync_once(writer, server, "alice")
    with Replica.open(tmp_path / "reader.db") as reader:
        await sync_once(reader, server, "alice", spaces=[one])
        assert reader.space(one).get("notes", "k") == {"v": "one"}
        assert reader.get("notes", "k") is None
        assert reader.space(other).get("notes", "k") is None


async def test_a_space_added_mid_way_is_pulled_from_zero(
    server: RunningServer, tmp_path: Path
) -> None:
    space = await create_space(server, "alice", "later")
    with Replica.open(tmp_path / "a.db") as a, Replica.open(tmp_path / "b.db") as b:
        a.space(space).put_many("notes", {f"k{i} 🔑": {"n": i} for i in range(50)})
        await sync_once(a, server, "alice")
        async with client(b, server, "bob") as bob:
            await wait_status(bob, lambda s: s.online)
            assert space not in bob.status.spaces
            await set_member(server, space, "bob", "read")
            await until(b.space(space), lambda: len(b.space(space).keys("notes")) == 50)
        assert b.space(space).get("notes", "k7 🔑") == {"n": 7}


async def test_removal_purges_the_space_and_sets_unsynced_writes_aside(
    server: RunningServer, tmp_path: Path
) -> None:
    space = await create_space(server, "alice", "shared")
    await set_member(server, space, "bob", "write")
    with Replica.open(tmp_path / "b.db") as b:
        b.space(space).put("notes", "synced", {"v": "ok ✓"})
        await sync_once(b, server, "bob")
        b.space(space).put("notes", "unsynced", {"v": "pas encore"})  # bob is offline
        await set_member(server, space, "bob", None)
        bob = client(b, server, "bob")
        try:
            await bob.sync_once()
        finally:
            await bob.stop()
        assert b.space(space).keys("notes") == []
        refused = [(r.mutation.key, r.reason, r.space) for r in b.refused()]
        assert refused == [("unsynced", "space_revoked", space)]
        assert b.pending_count() == 0 and space not in bob.status.spaces
