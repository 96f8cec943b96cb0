"""Resync: replicas whose cursor the server cannot continue recover by themselves.

A fresh server, a server restored from an older backup under running
clients, and a server that compacted deletes away past a replica's cursor:
afterwards every replica and the server hold every acknowledged write, no
conflict is reported for identical content, and deleted records are gone
everywhere.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from quietsync.conflicts import canonical_equal, wall_clock_ms
from quietsync.protocol import Change
from quietsync.replica import Replica, SyncClient
from quietsync.replica.replica import sync_port
from quietsync.server.admin import backup_database, restore_database
from quietsync.server.keys import CORE_KEY
from quietsync.testing import RunningServer, running_server
from tests.sync.conftest import TOKEN, wait_status

Open = Callable[[str], Replica]


async def pulled(server: RunningServer) -> dict[tuple[str, str, str], Change]:
    """The server's fields, as a fresh replica pulls them."""
    changes: dict[tuple[str, str, str], Change] = {}
    since = 0
    async with server.client("alice") as http:
        while True:
            async with http.get("/v1/pull", params={"since": since}) as resp:
                body = await resp.json()
            for raw in body["changes"]:
                change = Change.from_json(raw)
                changes[change.collection, change.key, change.field] = change
            since = body["cursor"]
            if not body["has_more"]:
                return changes


def fields_of(replica: Replica, keys: list[str]) -> dict[tuple[str, str, str], object]:
    port = sync_port(replica)
    found = {}
    for key in keys:
        record = replica.get("notes", key) or {}
        for name in record:
            state = port.field_state("notes", key, name)
            assert state is not None
            found["notes", key, name] = (state.write.value, state.write.stamp)
    return found


def identical_conflicts(replica: Replica) -> list[object]:
    return [c for c in replica.conflicts() if canonical_equal(c.winner.value, c.loser.value)]


async def settled(client: SyncClient, history: str | None = None) -> None:
    """Wait until `client` is online with nothing pending (in `history`, if given)."""
    port = sync_port(client.replica)
    await wait_status(
        client, lambda s: s.online and s.pending == 0 and history in (None, port.history)
    )


async def test_a_replica_pointed_at_a_fresh_server_pushes_everything_back(
    tmp_path: Path, open_replica: Open
) -> None:
    a, b = open_replica("a"), open_replica("b")
    async with running_server(tmp_path / "one.db") as first:
        a.put_many("notes", {f"n{i}": {"title": f"t{i}", "n": i} for i in range(20)})
        a.text_insert("notes", "doc", "body", 0, "héllo wörld 😀")
        a.delete("notes", "n3")
        b.put("notes", "n5", {"title": "t5", "from": "b"})  # t5: the same content as a's
        for replica in (a, b):
            client = SyncClient(replica, first.url, token=TOKEN)
            await client.sync_once()
            await client.stop()
        old_history = sync_port(a).history
    keys = [f"n{i}" for i in range(20)] + ["doc"]
    before = fields_of(a, keys)
    async with running_server(tmp_path / "two.db") as second:  # a reset: an empty history
        for replica in (a, b, a):  # a last round, so a hears what b brought back
            client = SyncClient(replica, second.url, token=TOKEN)
            await client.sync_once()
            await client.stop()
            assert replica.pending_count() == 0
        server = await pulled(second)
        new_history = sync_port(a).history
    assert new_history != old_history and sync_port(b).history == new_history
    for (collection, key, field), (value, stamp) in before.items():
        change = server[collection, key, field]
        assert change.stamp >= stamp  # every acknowledged write came back (or a newer one)
        assert change.stamp != stamp or change.kind == "crdt" or change.value == value
    assert a.get("notes", "doc") == {"body": "héllo wörld 😀"} and a.get("notes", "n3") is None
    assert fields_of(a, keys) == fields_of(b, keys)
    assert identical_conflicts(a) == identical_conflicts(b) == []


async def test_a_restored_backup_loses_nothing_acknowledged_under_running_clients(
    tmp_path: Path, open_replica: Open, held_port: int
) -> None:
    db, saved, port = tmp_path / "server.db", tmp_path / "backup.db", held_port
    a, b = open_replica("a"), open_replica("b")
    keys = [f"k{i}" for i in range(12)]
    async with running_server(db, port=port) as server:
        clients = [SyncClient(r, server.url, token=TOKEN) for r in (a, b)]
        for client in clients:
            await client.start()
        a.put_many("notes", {k: {"title": "before", "by": "a"} for k in keys[:6]})
        b.put_many("notes", {k: {"title": "before", "by": "b"} for k in keys[6:]})
        for client in clients:
            await settled(client)
        backup_database(db, saved)  # online, while both clients stay connected
        a.put_many("notes", {k: {"title": "after"} for k in keys[::2]})  # lost by the restore
        b.put("notes", "k1", {"title": "after"})  # the same content as a's: suppressed
        b.delete("notes", "k11")
        for client in clients:
            await settled(client)
        acknowledged = {**fields_of(a, keys), **fields_of(b, keys)}
        history = server.app[CORE_KEY].store.history()
    restore_database(saved, db)
    async with running_server(db, port=port) as restored:  # the same URL, an older state
        new_history = restored.app[CORE_KEY].store.history()
        assert new_history != history
        for client in clients:  # they reconnect by themselves, find a new history, resync
            await settled(client, new_history)
        for client in clients:
            await client.sync_once()  # a last exchange each way: converged
        server = await pulled(restored)
        for client in clients:
            await client.stop()
    for (collection, key, field), (_, stamp) in acknowledged.items():
        change = server[collection, key, field]
        assert change.stamp >= stamp, (key, field)  # nothing acknowledged is lost
    assert a.get("notes", "k11") is None and b.get("notes", "k11") is None
    assert [a.get("notes", k)["title"] for k in keys[:11:2]] == ["after"] * 6  # type: ignore[index]
    assert fields_of(a, keys) == fields_of(b, keys)
    assert identical_conflicts(a) == identical_conflicts(b) == []


async def test_a_cursor_older_than_the_horizon_sweeps_what_the_server_removed(
    tmp_path: Path, open_replica: Open
) -> None:
    a, b = open_replica("a"), open_replica("b")
    async with running_server(tmp_path / "server.db") as server:
        ca, cb = (SyncClient(r, server.url, token=TOKEN) for r in (a, b))
        a.put_many("notes", {k: {"title": k} for k in ("gone", "kept", "edited", "mine")})
        await ca.sync_once()
        await cb.sync_once()
        a.delete("notes", "gone")
        a.delete("notes", "mine")
        a.put("notes", "edited", {"title": "new"})
        await ca.sync_once()
        core = server.app[CORE_KEY]
        assert await core.run(lambda: core.store.collect_tombstones(wall_clock_ms() + 1000)) == 2
        b.put("notes", "mine", {"note": "b still edits it"})  # pending: it must survive
        summary = await cb.sync_once()
        await ca.stop()
        await cb.stop()
    assert summary.pulled >= 2
    assert b.get("notes", "gone") is None  # removed by the server: swept here too
    assert b.get("notes", "edited") == {"title": "new"}
    assert b.get("notes", "mine") == {"note": "b still edits it", "title": "mine"}
    assert not sync_port(b).sweeping and b.pending_count() == 0
