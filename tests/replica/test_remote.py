"""apply_remote: merging pulled changes and mirror writes through the merge core."""

from __future__ import annotations

from quietsync.conflicts import HLC, wall_clock_ms
from quietsync.protocol import DELETED_FIELD
from quietsync.replica import ChangeEvent, Replica
from quietsync.replica.replica import sync_port
from tests.replica.conftest import Server


def test_pulled_changes_are_merged_and_the_cursor_stored(replica: Replica, server: Server) -> None:
    events = sync_port(replica).apply_remote(
        [server.change("a", "title", "t"), server.change("a", "n", 1), server.change("b", "x", 2)],
        cursor=3,
    )
    assert replica.get("items", "a") == {"title": "t", "n": 1}
    assert sync_port(replica).cursor == 3
    assert events == [
        ChangeEvent("items", "a", frozenset({"title", "n"}), "remote"),
        ChangeEvent("items", "b", frozenset({"x"}), "remote"),
    ]
    assert replica.pending_count() == 0  # remote changes are never pushed back


def test_a_duplicate_delivery_is_a_no_op(replica: Replica, server: Server) -> None:
    change = server.change("a", "title", "t")
    sync_port(replica).apply_remote([change], cursor=1)
    state = sync_port(replica).field_state("items", "a", "title")
    assert sync_port(replica).apply_remote([change, change], cursor=2) == []
    assert sync_port(replica).field_state("items", "a", "title") == state
    assert sync_port(replica).cursor == 2


def test_a_remote_change_beating_a_pending_local_write_wins_locally(
    replica: Replica, server: Server
) -> None:
    replica.put("items", "a", {"title": "mine"})
    later = HLC(sync_port(replica).clock.last.wall_ms + 1_000, 0, "server")
    events = sync_port(replica).apply_remote(
        [server.change("a", "title", "theirs", stamp=later)], 1
    )
    assert replica.get("items", "a") == {"title": "theirs"}
    assert events[0].fields == {"title"}
    assert replica.conflicts() == []  # the server reports conflicts, not the replica
    assert replica.pending_count() == 1  # the local write still goes out (the server decides)


def test_a_remote_change_older_than_the_local_value_is_dropped(
    replica: Replica, server: Server
) -> None:
    old = HLC(wall_clock_ms() - 10_000, 0, "server")
    replica.put("items", "a", {"title": "mine"})
    assert sync_port(replica).apply_remote([server.change("a", "title", "old", stamp=old)], 1) == []
    assert replica.get("items", "a") == {"title": "mine"}


def test_remote_stamps_advance_the_local_clock(replica: Replica, server: Server) -> None:
    ahead = HLC(wall_clock_ms() + 30_000, 5, "server")
    sync_port(replica).apply_remote([server.change("a", "title", "t", stamp=ahead)])
    replica.put("items", "a", {"title": "after"})
    state = sync_port(replica).field_state("items", "a", "title")
    assert state is not None and state.write.stamp > ahead and state.write.base == ahead


def test_a_mirror_write_makes_the_later_log_delivery_a_duplicate(
    replica: Replica, server: Server
) -> None:
    mirror = server.change("m1", "content", "streamed text", mirror=True)
    assert mirror.seq is None
    events = sync_port(replica).apply_remote([mirror])
    assert events == [ChangeEvent("items", "m1", frozenset({"content"}), "remote")]
    assert sync_port(replica).cursor == 0  # a mirror write carries no cursor
    logged = server.change("m1", "content", "streamed text", stamp=mirror.stamp)
    assert sync_port(replica).apply_remote([logged], cursor=9) == []
    assert replica.get("items", "m1") == {"content": "streamed text"}
    assert sync_port(replica).cursor == 9


def test_a_remote_tombstone_deletes_and_a_remote_revival_restores(
    replica: Replica, server: Server
) -> None:
    sync_port(replica).apply_remote([server.change("a", "title", "t")])
    sync_port(replica).apply_remote([server.change("a", DELETED_FIELD, True)])
    assert replica.get("items", "a") is None
    sync_port(replica).apply_remote([server.change("a", DELETED_FIELD, False)])
    assert replica.get("items", "a") == {"title": "t"}


def test_remote_text_updates_merge_idempotently_with_local_edits(
    replica: Replica, server: Server
) -> None:
    replica.text_insert("items", "d", "body", 0, "hello")
    [local] = sync_port(replica).outbox_batch()
    theirs = server.text("d", "body", "world ")
    events = sync_port(replica).apply_remote([theirs])
    text = replica.get("items", "d")["body"]
    assert sorted([text.replace("world ", ""), text.replace("hello", "")]) == ["hello", "world "]
    assert events == [ChangeEvent("items", "d", frozenset({"body"}), "remote")]
    assert sync_port(replica).apply_remote([theirs]) == []  # the same update twice: no change
    state = sync_port(replica).field_state("items", "d", "body")
    assert state is not None and state.kind == "crdt"
    assert state.write.stamp == max(theirs.stamp, local.stamp)


def test_identical_initial_text_from_two_replicas_is_one_copy(
    replica: Replica, path, server: Server
) -> None:
    with Replica.open(path.with_name("other.db"), node_id="other") as other:
        other.text_insert("items", "d", "body", 0, "same start")
        [theirs] = sync_port(other).outbox_batch()
    replica.text_insert("items", "d", "body", 0, "same start")
    change = server.change("d", "body", update=theirs.update, stamp=theirs.stamp)
    sync_port(replica).apply_remote([change])
    assert replica.get("items", "d") == {"body": "same start"}
