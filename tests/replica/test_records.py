"""Local records: put/get/delete/query, stamps and bases, no-op writes, the outbox they feed."""

from __future__ import annotations

import sqlite3

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from quietsync.conflicts import canonical_equal, canonical_json
from quietsync.protocol import DELETED_FIELD
from quietsync.replica import Replica
from quietsync.replica.replica import sync_port
from tests.conflicts.strategies import json_values


def test_put_merges_fields_into_the_record(replica: Replica) -> None:
    replica.put("items", "a", {"title": "t", "n": 1})
    replica.put("items", "a", {"n": 2, "tags": ["x"]})
    assert replica.get("items", "a") == {"title": "t", "n": 2, "tags": ["x"]}
    assert replica.get("items", "missing") is None
    assert replica.get("other", "a") is None


def test_each_changed_field_gets_a_fresh_stamp_and_its_previous_stamp_as_base(
    replica: Replica,
) -> None:
    replica.put("items", "a", {"title": "t"})
    first = sync_port(replica).field_state("items", "a", "title")
    replica.put("items", "a", {"title": "u"})
    second = sync_port(replica).field_state("items", "a", "title")
    assert first is not None and second is not None
    assert first.kind == "lww" and first.write.base is None
    assert second.write.stamp > first.write.stamp
    assert second.write.base == first.write.stamp
    assert second.write.stamp.node == "local"
    assert [(m.value, m.base) for m in sync_port(replica).outbox_batch()] == [
        ("t", None),
        ("u", first.write.stamp),
    ]


def test_a_canonical_equal_put_is_a_no_op(replica: Replica) -> None:
    replica.put("items", "a", {"n": 1, "doc": {"x": 1, "y": [1.5]}})
    before = sync_port(replica).field_state("items", "a", "doc")
    replica.put("items", "a", {"n": 1.0, "doc": {"y": [1.5], "x": 1.0}})
    assert sync_port(replica).field_state("items", "a", "doc") == before
    assert replica.pending_count() == 2


def test_put_many_writes_all_records_in_one_transaction(replica: Replica) -> None:
    replica.put_many("items", {f"k{i}": {"i": i} for i in range(50)})
    assert [replica.get("items", f"k{i}") for i in range(50)] == [{"i": i} for i in range(50)]
    ids = [m.id for m in sync_port(replica).outbox_batch(1000)]
    assert ids == [f"local:{n}" for n in range(1, 51)]


def test_delete_is_a_tombstone_and_a_later_put_revives_the_record(replica: Replica) -> None:
    replica.put("items", "a", {"title": "t"})
    replica.delete("items", "a")
    assert replica.get("items", "a") is None
    tomb = sync_port(replica).field_state("items", "a", DELETED_FIELD)
    assert tomb is not None and tomb.write.value is True
    replica.delete("items", "a")  # already deleted: no new write
    assert replica.pending_count() == 2
    replica.put("items", "a", {"n": 1})
    assert replica.get("items", "a") == {"title": "t", "n": 1}
    last = sync_port(replica).outbox_batch(10)[-2:]
    assert {(m.field, m.value) for m in last} == {("n", 1), (DELETED_FIELD, False)}


def test_delete_of_an_unseen_record_still_syncs(replica: Replica) -> None:
    replica.delete("items", "never-seen-here")
    [mutation] = sync_port(replica).outbox_batch()
    assert (mutation.key, mutation.field, mutation.value) == (
        "never-seen-here",
        DELETED_FIELD,
        True,
    )


@pytest.fixture
def threads(replica: Replica) -> Replica:
    replica.put_many(
        "messages",
        {
            f"m{i}": {"thread_id": f"t{i % 3}", "pos": (i * 7) % 10, "body": f"b{i}"}
            for i in range(30)
        },
    )
    return replica


def test_query_selects_by_equality_and_orders_numerically(threads: Replica) -> None:
    rows = threads.query("messages", where={"thread_id": "t1"}, order_by="pos")
    assert len(rows) == 10
    assert all(r["thread_id"] == "t1" for r in rows)
    assert [r["pos"] for r in rows] == sorted(r["pos"] for r in rows)
    assert threads.query("messages", where={"thread_id": "t1"}, order_by="pos", limit=3) == rows[:3]


def test_query_equality_is_canonical_and_combines_conditions(threads: Replica) -> None:
    threads.put("messages", "x", {"thread_id": "t9", "meta": {"a": 1, "b": 2}, "n": 3})
    assert threads.keys("messages", where={"meta": {"b": 2.0, "a": 1}}) == ["x"]
    assert threads.keys("messages", where={"thread_id": "t9", "n": 3.0}) == ["x"]
    assert threads.keys("messages", where={"thread_id": "t9", "n": 4}) == []


def test_query_skips_deleted_records_and_lists_the_collection_without_where(
    threads: Replica,
) -> None:
    threads.delete("messages", "m1")
    keys = threads.keys("messages", where={"thread_id": "t1"})
    assert "m1" not in keys and len(keys) == 9
    assert len(threads.keys("messages")) == 29
    assert threads.keys("messages", order_by="pos", limit=1) != []
    assert threads.query("nothing-here") == []


def test_query_returns_text_fields_as_strings(replica: Replica) -> None:
    replica.put("notes", "n1", {"folder": "f", "order": 2})
    replica.text_insert("notes", "n1", "body", 0, "hello")
    replica.put("notes", "n2", {"folder": "f", "order": 1})
    assert replica.query("notes", where={"folder": "f"}, order_by="order") == [
        {"folder": "f", "order": 1},
        {"folder": "f", "order": 2, "body": "hello"},
    ]
    assert replica.get("notes", "n1") == {"folder": "f", "order": 2, "body": "hello"}


def test_query_refuses_a_non_json_condition_and_a_negative_limit(replica: Replica) -> None:
    with pytest.raises(TypeError, match="where 'x'"):
        replica.query("items", where={"x": object()})
    with pytest.raises(ValueError, match="limit"):
        replica.query("items", limit=-1)
    assert replica.query("items", limit=0) == []


def test_the_first_query_on_a_field_builds_its_index_once(threads: Replica) -> None:
    """The store names the index with INDEXED BY, so SQLite uses it or fails the query."""

    def indexes() -> set[str]:
        with sqlite3.connect(threads.path) as conn:
            rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")
            return {name for (name,) in rows}

    assert "records_by_thread_id" not in indexes()
    assert len(threads.keys("messages", where={"thread_id": "t1", "pos": 7})) == 1
    assert "records_by_thread_id" in indexes() and "records_by_pos" not in indexes()
    threads.put("messages", "new", {"thread_id": "t1", "pos": 7})  # writes keep it current
    assert threads.keys("messages", where={"thread_id": "t1", "pos": 7}) == ["m1", "new"]


@pytest.mark.parametrize("name", ['say "hi"', "back\\slash", "line\nbreak"])
def test_query_refuses_field_names_json_escapes(replica: Replica, name: str) -> None:
    replica.put("items", "a", {name: 1})
    with pytest.raises(ValueError, match="character JSON escapes"):
        replica.query("items", where={name: 1})
    with pytest.raises(ValueError, match="character JSON escapes"):
        replica.query("items", order_by=name)
    assert replica.get("items", "a") == {name: 1}


@pytest.mark.parametrize("name", ["it's", "a.b", "x y", "é", "[0]", "$.z", "'; DROP TABLE x; --"])
def test_query_finds_fields_with_path_and_sql_syntax_in_their_names(
    replica: Replica, name: str
) -> None:
    replica.put_many("items", {"a": {name: 1, "n": 2}, "b": {name: 2, "n": 1}})
    assert replica.keys("items", where={name: 1}) == ["a"]
    assert replica.keys("items", order_by=name) == ["a", "b"]


def _storable(value: object) -> bool:
    try:
        canonical_json(value)
    except ValueError:  # text with a lone surrogate
        return False
    return True


STORABLE = json_values.filter(_storable)


@settings(max_examples=60)
@given(values=st.lists(STORABLE, min_size=1, max_size=6), data=st.data())
def test_query_equality_is_canonical_equality_for_any_json(
    tmp_path_factory: pytest.TempPathFactory, values: list[object], data: st.DataObject
) -> None:
    """The text SQLite extracts from a stored record is the value's canonical text."""
    probe = data.draw(st.one_of(st.sampled_from(values), STORABLE))
    path = tmp_path_factory.mktemp("q") / "replica.db"
    with Replica.open(path) as replica:
        replica.put_many("items", {f"k{i}": {"v": v} for i, v in enumerate(values)})
        expected = [f"k{i}" for i, v in enumerate(values) if canonical_equal(v, probe)]
        assert sorted(replica.keys("items", where={"v": probe})) == sorted(expected)
