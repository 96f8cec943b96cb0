"""The two small `Replica` additions the sync client needs: `on_outbox` and `forget_field`."""

from __future__ import annotations

import pytest

from conflicts import HLC, Change
from replica import Replica


def test_on_outbox_fires_once_per_commit_that_queued_writes(replica: Replica):
    calls = []
    unsubscribe = replica.on_outbox(lambda: calls.append(replica.pending_count()))
    with replica.transaction():
        replica.put("notes", "a", {"t": 1})
        replica.put("notes", "b", {"t": 2})
        assert calls == []  # not before the commit
    assert calls == [2]
    replica.put("notes", "a", {"t": 1})  # a no-op write queues nothing
    change = Change("x:1", "notes", "c", "t", "lww", HLC(1, 0, "x"), None, 3, None, 1)
    replica.apply_remote([change], 1)  # remote changes are not the outbox
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
    assert replica.forget_field("notes", "a", "body") is True
    assert replica.get("notes", "a") == {"title": "kept"}
    assert replica.pending_count() == pending  # no new write, nothing unqueued
    assert [e.fields for e in events] == [frozenset({"body"})]
    assert replica.forget_field("notes", "a", "body") is False


def test_superseded_names_the_writes_that_replaced_queued_ones(replica: Replica):
    replica.put("notes", "a", {"title": "first"})
    replica.put("other", "b", {"n": 1})
    replica.put("notes", "a", {"title": "second"})  # replaces the first locally
    queued = replica.outbox_batch(10)
    assert [m.id for m in queued] == ["local:1", "local:2", "local:3"]
    newer = HLC(queued[-1].stamp.wall_ms + 1, 0, "server")
    remote = Change("server:1", "other", "b", "n", "lww", newer, None, 1, None, 1)
    replica.apply_remote([remote], 1)
    found = replica.superseded(queued)
    assert set(found) == {"local:1", "local:2"}
    assert found["local:1"].write.value == "second"
    assert found["local:2"].write.stamp == newer and found["local:2"].write.value == 1
