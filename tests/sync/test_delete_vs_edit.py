"""A delete racing with an edit of another field: the delete wins, the edit is reported.

Real server on loopback, real replica files (docs/protocol.md, "Delete versus
edit"). Whichever reaches the server first, an edit stamped after the delete
by a replica that had not seen it is one conflict, listed on every replica;
an edit stamped before the delete is covered by it; a replica that saw the
delete and writes resurrects the record, no conflict.
"""

from __future__ import annotations

from collections.abc import Callable

from quietsync.conflicts import Conflict, wall_clock_ms
from quietsync.replica import Replica, SyncClient
from quietsync.replica.replica import sync_port
from quietsync.testing import RunningServer
from tests.sync.conftest import TOKEN

Open = Callable[[str], Replica]

EDIT = "Crème brûlée 🍮 e\u0301 𝄞"


async def sync(*replicas: Replica, url: str) -> None:
    for replica in replicas:
        client = SyncClient(replica, url, token=TOKEN)
        try:
            await client.sync_once()
        finally:
            await client.stop()


def past_last_stamp_of(replica: Replica) -> None:
    """Return once the wall clock is past `replica`'s last stamp, so that a write another
    replica makes next is stamped after it (within one millisecond, the node ids would
    order the two: "b" after "a"). Waits under a millisecond."""
    last = sync_port(replica).clock.last.wall_ms
    while wall_clock_ms() <= last:
        pass


def delete_conflicts(replica: Replica, key: str) -> list[Conflict]:
    return [c for c in replica.conflicts() if c.key == key and c.field == "_deleted"]


async def test_the_delete_reaches_the_server_first(
    server: RunningServer, open_replica: Open
) -> None:
    a, b, c = open_replica("a"), open_replica("b"), open_replica("c")
    a.put("notes", "n1", {"title": "draft", "body": "hello"})
    await sync(a, b, url=server.url)
    a.delete("notes", "n1")
    b.put("notes", "n1", {"title": EDIT})  # later, not seeing the delete
    await sync(a, b, a, c, url=server.url)  # the delete is applied first; the edit meets it
    for replica in (a, b, c):
        assert replica.get("notes", "n1") is None  # the delete wins everywhere
        (conflict,) = delete_conflicts(replica, "n1")  # once, on every replica
        assert conflict.winner.value is True and conflict.winner.node == "a"
        assert conflict.loser.value == {"title": EDIT} and conflict.loser.node == "b"


async def test_the_edit_reaches_the_server_first(server: RunningServer, open_replica: Open) -> None:
    a, b = open_replica("a"), open_replica("b")
    a.put("notes", "n1", {"title": "draft"})
    await sync(a, b, url=server.url)
    a.delete("notes", "n1")  # not pushed yet
    b.put("notes", "n1", {"title": EDIT})  # later, not seeing the delete
    await sync(b, a, b, url=server.url)  # the edit is applied first; the delete meets it
    for replica in (a, b):
        assert replica.get("notes", "n1") is None
        (conflict,) = delete_conflicts(replica, "n1")
        assert (conflict.winner.node, conflict.loser.node) == ("a", "b")
        assert conflict.loser.value == {"title": EDIT}


async def test_an_edit_before_the_delete_or_after_seeing_it_is_no_conflict(
    server: RunningServer, open_replica: Open
) -> None:
    a, b = open_replica("a"), open_replica("b")
    a.put("notes", "n1", {"title": "draft"})
    await sync(a, b, url=server.url)
    b.put("notes", "n1", {"title": "older edit"})  # stamped before the delete
    past_last_stamp_of(b)
    a.delete("notes", "n1")
    await sync(a, b, a, url=server.url)
    assert a.get("notes", "n1") is None and b.get("notes", "n1") is None
    b.put("notes", "n1", {"title": EDIT})  # b saw the delete: this resurrects the record
    await sync(b, a, url=server.url)
    assert a.get("notes", "n1") == b.get("notes", "n1") == {"title": EDIT}
    assert a.conflicts() == b.conflicts() == []
