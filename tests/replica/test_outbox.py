"""The outbox API the sync client uses, the conflict log, and grouped transactions."""

from __future__ import annotations

import sqlite3

import pytest

from quietsync.conflicts import HLC, Conflict, Side
from quietsync.replica import Replica, UnknownMutationError
from quietsync.replica.local import ROW_MUTATIONS
from quietsync.replica.replica import sync_port


def test_batches_come_in_write_order_with_increasing_ids(replica: Replica) -> None:
    for i in range(5):
        replica.put("items", f"k{i}", {"i": i})
    first = sync_port(replica).outbox_batch(3)
    assert [m.key for m in first] == ["k0", "k1", "k2"]
    assert [m.id for m in first] == ["local:1", "local:2", "local:3"]
    assert sync_port(replica).outbox_batch(3) == first  # reading does not consume
    assert replica.pending_count() == 5


def test_pushed_mutations_leave_and_repeated_acks_are_harmless(replica: Replica) -> None:
    for i in range(4):
        replica.put("items", f"k{i}", {"i": i})
    ids = [m.id for m in sync_port(replica).outbox_batch(2)]
    assert sync_port(replica).mark_pushed(ids) == 2
    assert sync_port(replica).mark_pushed(ids) == 0
    assert [m.key for m in sync_port(replica).outbox_batch()] == ["k2", "k3"]
    assert replica.pending_count() == 2


def test_refused_mutations_are_set_aside_and_never_block_later_ones(replica: Replica) -> None:
    for i in range(3):
        replica.put("items", f"k{i}", {"i": i})
    bad = sync_port(replica).outbox_batch(1)[0]
    sync_port(replica).mark_refused(bad.id, "value too large")
    assert [m.key for m in sync_port(replica).outbox_batch()] == ["k1", "k2"]
    [refused] = replica.refused()
    assert refused.mutation == bad and refused.reason == "value too large"
    assert replica.pending_count() == 2
    assert replica.get("items", "k0") == {"i": 0}  # the local value stays


def test_mutation_ids_are_never_reused_even_after_everything_was_pushed(path) -> None:
    with Replica.open(path) as replica:
        replica.put("items", "a", {"x": 1})
        first = sync_port(replica).outbox_batch()[0].id
        sync_port(replica).mark_pushed([first])
    with Replica.open(path) as replica:
        replica.put("items", "a", {"x": 2})
        second = sync_port(replica).outbox_batch()[0].id
    assert int(second.split(":")[1]) > int(first.split(":")[1])


def _conflict(value: str, loser_wall: int = 9) -> Conflict:
    return Conflict(
        collection="items",
        key="a",
        field="title",
        winner=Side({"text": value, "n": 1}, HLC(10, 0, "server")),
        loser=Side("old", HLC(loser_wall, 0, "local")),
        detected_by="server",
    )


def test_reported_conflicts_are_stored_once(replica: Replica) -> None:
    assert sync_port(replica).record_conflicts([_conflict("x"), _conflict("y", 8)]) == 2
    assert sync_port(replica).record_conflicts([_conflict("x")]) == 0
    # the same losing write met again with another winner (a re-push after a
    # restore, one answered by a push and the log): still one conflict (law 5)
    assert sync_port(replica).record_conflicts([_conflict("z")]) == 0
    assert replica.conflicts() == [_conflict("x"), _conflict("y", 8)]


def test_suppressed_events_are_counted(replica: Replica) -> None:
    assert replica.suppressed_count() == 0
    sync_port(replica).add_suppressed(2)
    sync_port(replica).add_suppressed(3)
    assert replica.suppressed_count() == 5


def test_a_grouped_transaction_is_all_or_nothing(replica: Replica) -> None:
    replica.put("items", "a", {"x": 1})
    [mutation] = sync_port(replica).outbox_batch()
    with pytest.raises(RuntimeError), replica.transaction():
        sync_port(replica).mark_pushed([mutation.id])
        sync_port(replica).record_conflicts([_conflict("x")])
        sync_port(replica).add_suppressed(1)
        raise RuntimeError("the push answer could not be handled")
    assert replica.pending_count() == 1
    assert replica.conflicts() == [] and replica.suppressed_count() == 0
    with replica.transaction():
        sync_port(replica).mark_pushed([mutation.id])
        sync_port(replica).add_suppressed(1)
    assert replica.pending_count() == 0 and replica.suppressed_count() == 1


def test_a_failed_step_inside_a_transaction_is_undone_alone(replica: Replica) -> None:
    with replica.transaction():
        replica.put("items", "a", {"x": 1})
        with pytest.raises(TypeError):
            replica.put("items", "b", {"x": object()})
        with pytest.raises(UnicodeError), replica.transaction():
            replica.put("items", "c", {"x": 1})
            raise UnicodeError("inner step fails")
    assert replica.keys("items") == ["a"]
    assert [m.key for m in sync_port(replica).outbox_batch()] == ["a"]


def test_a_put_many_row_can_be_answered_in_parts(replica: Replica) -> None:
    replica.put_many("items", {f"k{i}": {"a": i, "b": -i} for i in range(3)})
    batch = sync_port(replica).outbox_batch(4)  # the row holds 6 mutations: a batch may split it
    assert [(m.key, m.field) for m in batch] == [("k0", "a"), ("k0", "b"), ("k1", "a"), ("k1", "b")]
    assert len({m.stamp for m in batch}) == 1  # one call, one stamp
    sync_port(replica).mark_refused(batch[1].id, "no b for k0")
    assert sync_port(replica).mark_pushed([batch[0].id, batch[2].id]) == 2
    assert [(m.key, m.field) for m in sync_port(replica).outbox_batch()] == [
        ("k1", "b"),
        ("k2", "a"),
        ("k2", "b"),
    ]
    assert replica.pending_count() == 3
    assert [r.mutation for r in replica.refused()] == [batch[1]]
    sync_port(replica).mark_pushed(m.id for m in sync_port(replica).outbox_batch())
    assert replica.pending_count() == 0 and sync_port(replica).outbox_batch() == []


def test_an_id_of_an_answered_position_is_unknown_to_mark_refused(replica: Replica) -> None:
    replica.put_many("items", {"a": {"x": 1}, "b": {"x": 2}})
    first, second = sync_port(replica).outbox_batch()
    sync_port(replica).mark_pushed([first.id])
    with pytest.raises(UnknownMutationError):
        sync_port(replica).mark_refused(first.id, "too late")
    with pytest.raises(UnknownMutationError):
        sync_port(replica).mark_refused("local:99", "never queued")
    assert sync_port(replica).outbox_batch() == [second]


def test_a_large_put_many_is_split_into_rows_of_whole_records(replica: Replica) -> None:
    records = {f"k{i:04}": {"a": i, "b": i, "c": i} for i in range(1_000)}
    replica.put_many("items", records)
    with sqlite3.connect(replica.path) as conn:
        counts = [n for (n,) in conn.execute("SELECT count FROM outbox ORDER BY n")]
    assert sum(counts) == 3_000 and max(counts) <= ROW_MUTATIONS + 2  # whole records
    assert all(c % 3 == 0 for c in counts)
    pending = sync_port(replica).outbox_batch(5_000)
    assert [(m.key, m.field) for m in pending] == [(k, f) for k in records for f in "abc"]
    assert [m.id for m in pending] == [f"local:{n}" for n in range(1, 3_001)]
    assert len({m.stamp for m in pending}) == 1
