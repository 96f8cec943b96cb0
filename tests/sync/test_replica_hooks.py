"""The two small `Replica` additions the sync client needs: `on_outbox` and `forget_field`."""

from __future__ import annotations

from pathlib import Path

import pytest

from quietsync.conflicts import HLC
from quietsync.protocol import Change
from quietsync.replica import Replica
from quietsync.replica.replica import sync_port


def test_on_outbox_fires_once_per_commit_that_queued_writes(replica: Replica):
    calls = []
    unsubscribe = sync_port(replica).on_outbox(lambda: calls.append(replica.pending_count()))
    with replica.transaction():
        replica.put("notes", "a", {"t": 1})
        replica.put("notes", "b", {"t": 2})
        assert calls == []  # not before the commit
    assert calls == [2]
    replica.put("notes", "a", {"t": 1})  # a no-op write queues nothing
    change = Change("x:1", "notes", "c", "t", "lww", HLC(1, 0, "x"), None, 3, None, 1)
    sync_port(replica).apply_remote([change], 1)  # remote changes are not the outbox
    with pytest.raises(RuntimeError), replica.transaction():
        replica.put("notes", "d", {"t": 4})
        raise RuntimeError("rolled back")
    assert calls == [2]
    unsubscribe()
    replica.put("notes", "e", {"t": 5})
    assert calls == [2]


def test_forget_field_drops_local_state_only(replica: Replica):
    replica.text_insert("notes", "a", "body", 0, "local text")
    replica.put("notes", "a", {"title": "kept"})
    pending = replica.pending_count()
    events = []
    replica.subscribe("notes", events.append)
    assert sync_port(replica).forget_field("notes", "a", "body") is True
    assert replica.get("notes", "a") == {"title": "kept"}
    assert replica.pending_count() == pending  # no new write, nothing unqueued
    assert [e.fields for e in events] == [frozenset({"body"})]
    assert sync_port(replica).forget_field("notes", "a", "body") is False


def test_held_by_others_names_other_nodes_writes_that_replaced_queued_ones(replica: Replica):
    replica.put("notes", "a", {"title": "first"})
    replica.put("other", "b", {"n": 1})
    replica.put("notes", "a", {"title": "second"})  # replaces the first, but it is ours
    queued = sync_port(replica).outbox_batch(10)
    assert [m.id for m in queued] == ["local:1", "local:2", "local:3"]
    newer = HLC(queued[-1].stamp.wall_ms + 1, 0, "server")
    remote = Change("server:1", "other", "b", "n", "lww", newer, None, 1, None, 1)
    sync_port(replica).apply_remote([remote], 1)
    found = sync_port(replica).held_by_others(queued)
    assert set(found) == {"local:2"}
    assert found["local:2"].write.stamp == newer and found["local:2"].write.value == 1


def test_writes_queued_before_the_last_remote_change_are_still_checked(replica: Replica):
    """Held-value checks skip only writes queued after the latest remote change."""
    replica.put("other", "b", {"n": 1})
    newer = HLC(sync_port(replica).outbox_batch()[0].stamp.wall_ms + 1, 0, "server")
    sync_port(replica).apply_remote(
        [Change("server:1", "other", "b", "n", "lww", newer, None, 2, None, 1)]
    )
    replica.put("other", "c", {"n": 3})  # queued after the remote change
    first, second = sync_port(replica).outbox_batch()
    assert set(sync_port(replica).held_by_others([first, second])) == {first.id}
    with Replica.open(replica.path.with_name("other.db")) as fresh:
        fresh.put("other", "b", {"n": 1})
        assert sync_port(fresh).held_by_others(sync_port(fresh).outbox_batch()) == {}


def test_after_reopening_every_pending_write_is_checked(tmp_path: Path):
    with Replica.open(tmp_path / "r.db") as replica:
        replica.put("other", "b", {"n": 1})
        newer = HLC(sync_port(replica).outbox_batch()[0].stamp.wall_ms + 1, 0, "server")
        change = Change("server:1", "other", "b", "n", "lww", newer, None, 2, None, 1)
        sync_port(replica).apply_remote([change])
    with Replica.open(tmp_path / "r.db") as reopened:
        [queued] = sync_port(reopened).outbox_batch()
        assert sync_port(reopened).held_by_others([queued])[queued.id].write.stamp == newer
