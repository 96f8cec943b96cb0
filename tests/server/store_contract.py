"""The contract every `server.store.Store` backend passes.

A backend's test module subclasses `StoreContract` and provides the `store`
fixture; a backend that persists subclasses `PersistentStoreContract` and also
provides `reopen`. Everything here goes
through the `Store` protocol only.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from quietsync.conflicts import HLC, Conflict, FieldRef, Side, initial_text_update
from quietsync.protocol import Change
from quietsync.server.errors import StoreError
from quietsync.server.store import BatchWrite, Store, StoredField

__all__ = ["PersistentStoreContract", "StoreContract"]

REF = FieldRef("notes", "a", "title")
TEXT = FieldRef("notes", "a", "body")


def stamp(wall: int, node: str = "n1") -> HLC:
    return HLC(wall, 0, node)


def change(mid: str, value: object, wall: int, seq: int) -> Change:
    return Change(mid, REF.collection, REF.key, REF.field, "lww", stamp(wall), value=value, seq=seq)


def batch(*changes: Change, conflicts: tuple[Conflict, ...] = ()) -> BatchWrite:
    """One write logging `changes` (numbered consecutively, as their seqs say)."""
    first = changes[0].seq if changes else 1
    assert first is not None
    assert [c.seq for c in changes] == list(range(first, first + len(changes)))
    outcomes = {c.id: "applied" for c in changes}
    return BatchWrite(first, list(changes), outcomes=outcomes, conflicts=list(conflicts))


def conflict(value: str) -> Conflict:
    return Conflict("notes", "a", "title", Side(value, stamp(2)), Side("lost", stamp(1)), "server")


class StoreContract:
    """Behaviour shared by every backend; subclasses provide the `store` fixture."""

    def test_an_empty_store(self, store: Store) -> None:
        assert store.cursor("alice") == 0
        page = store.changes("alice", 0, 10)
        assert (page.changes, page.cursor, page.has_more) == ([], 0, False)
        assert store.conflicts("alice", 0, 10).conflicts == []
        assert store.last_stamp() is None

    def test_each_user_has_a_log_of_their_own(self, store: Store) -> None:
        written = [change("n1:1", "x", 1, 1), change("n1:2", "y", 2, 2)]
        with store.transaction("alice") as tx:
            assert tx.head() == 0
            tx.write(batch(*written))
        with store.transaction("bob") as tx:
            assert tx.head() == 0
            tx.write(batch(bobs := change("n1:1", "z", 3, 1)))
        with store.transaction("alice") as tx:
            assert tx.head() == 2
        assert (store.cursor("alice"), store.cursor("bob")) == (2, 1)
        assert store.changes("alice", 0, 10).changes == written
        assert store.changes("bob", 0, 10).changes == [bobs]
        assert store.last_stamp() == stamp(3)

    def test_a_seq_is_never_written_twice(self, store: Store) -> None:
        with store.transaction("alice") as tx:
            tx.write(batch(change("n1:1", "x", 1, 1)))
        with pytest.raises(StoreError), store.transaction("alice") as tx:
            tx.write(batch(change("n1:2", "y", 2, 1)))
        assert [c.value for c in store.changes("alice", 0, 10).changes] == ["x"]

    def test_pages_follow_the_cursor(self, store: Store) -> None:
        with store.transaction("alice") as tx:
            tx.write(batch(*(change(f"n1:{i}", i, i + 1, i + 1) for i in range(5))))
        first = store.changes("alice", 0, 2)
        assert ([c.value for c in first.changes], first.cursor, first.has_more) == ([0, 1], 2, True)
        last = store.changes("alice", 4, 2)
        assert ([c.value for c in last.changes], last.cursor, last.has_more) == ([4], 5, False)
        assert store.changes("alice", 5, 2).cursor == 5

    def test_fields_and_outcomes_are_per_user(self, store: Store) -> None:
        update = initial_text_update(TEXT, "hi")
        fields = {
            REF: StoredField("lww", stamp(2), stamp(1), value={"nested": [1, None, "x"]}),
            TEXT: StoredField("crdt", stamp(3), state=update),
        }
        with store.transaction("alice") as tx:
            tx.write(BatchWrite(1, fields=fields, outcomes={"n1:1": "dropped"}))
        with store.transaction("alice") as tx:
            assert tx.fields([REF, TEXT, FieldRef("notes", "b", "x")]) == fields
            assert tx.outcomes(["n1:1", "n1:2"]) == {"n1:1": "dropped"}
        with store.transaction("bob") as tx:
            assert tx.fields([REF, TEXT]) == {}
            assert tx.outcomes(["n1:1"]) == {}

    def test_an_lww_write_logged_is_its_fields_state(self, store: Store) -> None:
        with store.transaction("alice") as tx:
            tx.write(batch(change("n1:1", "x", 1, 1), change("n1:2", {"y": [1]}, 2, 2)))
        with store.transaction("alice") as tx:
            assert tx.fields([REF]) == {REF: StoredField("lww", stamp(2), value={"y": [1]})}

    def test_fields_are_answered_keyed_as_asked(self, store: Store) -> None:
        with store.transaction("alice") as tx:
            tx.write(batch(change("n1:1", "x", 1, 1)))
        state = StoredField("lww", stamp(1), value="x")
        key = (REF.collection, REF.key, REF.field)
        with store.transaction("alice") as tx:
            assert tx.fields([key, ("notes", "b", "x")]) == {key: state}
            assert tx.fields([REF]) == {REF: state}

    def test_an_error_inside_a_transaction_writes_nothing(self, store: Store) -> None:
        with pytest.raises(RuntimeError), store.transaction("alice") as tx:
            tx.write(batch(change("n1:1", "x", 1, 1), conflicts=(conflict("x"),)))
            raise RuntimeError("after the write, before the commit")
        assert store.cursor("alice") == 0
        assert store.conflicts("alice", 0, 10).conflicts == []
        with store.transaction("alice") as tx:
            assert tx.fields([REF]) == {}
            assert tx.outcomes(["n1:1"]) == {}

    def test_conflicts_are_per_user_and_paged(self, store: Store) -> None:
        with store.transaction("alice") as tx:
            tx.write(batch(conflicts=(conflict("a1"), conflict("a2"), conflict("a3"))))
        with store.transaction("bob") as tx:
            tx.write(batch(conflicts=(conflict("b1"),)))
        first = store.conflicts("alice", 0, 2)
        assert [c.winner.value for c in first.conflicts] == ["a1", "a2"]
        assert first.has_more
        rest = store.conflicts("alice", first.cursor, 2)
        assert ([c.winner.value for c in rest.conflicts], rest.has_more) == (["a3"], False)
        assert [c.winner.value for c in store.conflicts("bob", 0, 10).conflicts] == ["b1"]


class PersistentStoreContract(StoreContract):
    """The contract of a backend that persists; subclasses also provide `reopen`."""

    def test_committed_writes_survive_reopening(
        self, store: Store, reopen: Callable[[Store], Store]
    ) -> None:
        with store.transaction("alice") as tx:
            tx.write(batch(written := change("n1:1", "x", 1, 1), conflicts=(conflict("x"),)))
        again = reopen(store)
        assert again.changes("alice", 0, 10).changes == [written]
        assert again.cursor("alice") == 1
        assert len(again.conflicts("alice", 0, 10).conflicts) == 1
