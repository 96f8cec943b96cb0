"""The contract every `server.store.Store` backend passes.

A backend's test module subclasses `StoreContract` and provides the `store`
fixture; a backend that persists subclasses `PersistentStoreContract` and also
provides `reopen`. Everything here goes through the `Store` protocol only.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from quietsync.conflicts import HLC, Conflict, FieldRef, Side, initial_text_update
from quietsync.protocol import DELETED_FIELD, Mutation
from quietsync.server.errors import StoreError
from quietsync.server.store import BatchWrite, ClientMark, Store, StoredField

__all__ = ["PersistentStoreContract", "StoreContract"]

REF = FieldRef("notes", "a", "title")
TEXT = FieldRef("notes", "a", "body")
BIG = 1 << 30


def stamp(wall: int, node: str = "n1") -> HLC:
    return HLC(wall, 0, node)


def write(mid: str, value: object, wall: int, *, key: str = "a", field: str = "title") -> Mutation:
    return Mutation(mid, "notes", key, field, "lww", stamp(wall), value=value)


def batch(first_seq: int, *log: Mutation, conflicts: tuple[Conflict, ...] = ()) -> BatchWrite:
    return BatchWrite(first_seq, list(log), conflicts=list(conflicts))


def conflict(value: str, key: str = "a") -> Conflict:
    return Conflict("notes", key, "title", Side(value, stamp(2)), Side("lost", stamp(1)), "server")


def commit(store: Store, user: str, *log: Mutation, **extra: object) -> int:
    """Write `log` as the user's next batch; return its first seq."""
    with store.transaction(user) as tx:
        first = tx.head() + 1
        tx.write(BatchWrite(first, list(log), **extra))  # type: ignore[arg-type]
    return first


def values(store: Store, user: str, since: int = 0) -> list[tuple[int | None, str, object]]:
    return [(c.seq, c.key, c.value) for c in store.changes(user, since, 100, BIG).changes]


class StoreContract:
    """Behaviour shared by every backend; subclasses provide the `store` fixture."""

    def test_an_empty_store(self, store: Store) -> None:
        assert (store.cursor("alice"), store.horizon("alice")) == (0, 0)
        page = store.changes("alice", 0, 10, BIG)
        assert (page.changes, page.cursor, page.has_more) == ([], 0, False)
        assert store.conflicts("alice", 0, 10, BIG).conflicts == []
        assert store.last_stamp() is None
        assert isinstance(store.history(), str) and store.history()

    def test_each_user_has_a_space_of_their_own(self, store: Store) -> None:
        commit(store, "alice", write("n1:1", "x", 1, key="a"), write("n1:2", "y", 2, key="b"))
        commit(store, "bob", write("n1:1", "z", 3))
        assert (store.cursor("alice"), store.cursor("bob")) == (2, 1)
        assert values(store, "alice") == [(1, "a", "x"), (2, "b", "y")]
        assert values(store, "bob") == [(1, "a", "z")]
        assert store.last_stamp() == stamp(3)

    def test_a_field_keeps_only_its_latest_write(self, store: Store) -> None:
        """State, not history: an overwritten value is neither kept nor sent again."""
        commit(store, "alice", write("n1:1", "first", 1), write("n1:2", "other", 2, key="b"))
        commit(store, "alice", write("n1:3", "second", 3), write("n1:4", "third", 4))
        assert store.cursor("alice") == 4
        assert values(store, "alice") == [(2, "b", "other"), (4, "a", "third")]
        assert values(store, "alice", since=2) == [(4, "a", "third")]
        [latest] = store.changes("alice", 2, 10, BIG).changes
        assert (latest.id, latest.stamp) == ("n1:4", stamp(4))  # the write that made it

    def test_a_seq_is_never_written_twice(self, store: Store) -> None:
        commit(store, "alice", write("n1:1", "x", 1))
        with pytest.raises(StoreError), store.transaction("alice") as tx:
            tx.write(batch(1, write("n1:2", "y", 2, key="other")))
        assert values(store, "alice") == [(1, "a", "x")]

    def test_pages_follow_the_cursor_and_end_at_the_head(self, store: Store) -> None:
        commit(store, "alice", *(write(f"n1:{i}", i, i + 1, key=f"k{i}") for i in range(5)))
        commit(store, "alice", write("n1:9", "again", 9, key="k4"))  # seq 5 is overwritten
        first = store.changes("alice", 0, 2, BIG)
        assert ([c.value for c in first.changes], first.cursor, first.has_more) == ([0, 1], 2, True)
        last = store.changes("alice", 2, 2, BIG)
        assert ([c.value for c in last.changes], last.cursor, last.has_more) == ([2, 3], 4, True)
        end = store.changes("alice", 4, 2, BIG)
        assert ([c.value for c in end.changes], end.cursor, end.has_more) == (["again"], 6, False)
        assert store.changes("alice", 6, 2, BIG).cursor == 6

    def test_pages_are_bounded_in_bytes_and_a_big_value_goes_alone(self, store: Store) -> None:
        sizes = [1000, 1000, 1000, 5000, 10]
        commit(
            store,
            "alice",
            *(write(f"n1:{i}", "x" * n, i + 1, key=f"k{i}") for i, n in enumerate(sizes)),
        )
        pages, since = [], 0
        while True:
            page = store.changes("alice", since, 100, 2500)
            pages.append([len(str(c.value)) for c in page.changes])
            since = page.cursor
            if not page.has_more:
                break
        assert pages == [[1000, 1000], [1000], [5000], [10]]
        assert since == 5

    def test_fields_and_marks_are_per_user(self, store: Store) -> None:
        update = initial_text_update(TEXT, "hi")
        text_write = Mutation(
            "n1:2", TEXT.collection, TEXT.key, TEXT.field, "crdt", stamp(3), update=update
        )
        fields = {TEXT: StoredField("crdt", stamp(3), state=update)}
        marks = {"n1": ClientMark(2, ((1, 2, "applied"),))}
        commit(
            store,
            "alice",
            write("n1:1", {"nested": [1, None, "x"]}, 2),
            text_write,
            fields=fields,
            marks=marks,
        )
        with store.transaction("alice") as tx:
            assert tx.fields([REF, TEXT, FieldRef("notes", "b", "x")]) == {
                REF: StoredField("lww", stamp(2), value={"nested": [1, None, "x"]}),
                TEXT: StoredField("crdt", stamp(3), state=update),
            }
            assert tx.marks(["n1", "n2"]) == marks
        with store.transaction("bob") as tx:
            assert tx.fields([REF, TEXT]) == {}
            assert tx.marks(["n1"]) == {}
        [_, text] = store.changes("alice", 0, 10, BIG).changes
        assert (text.kind, text.update, text.seq) == ("crdt", update, 2)

    def test_a_marks_update_replaces_the_clients_mark(self, store: Store) -> None:
        commit(store, "alice", marks={"n1": ClientMark(2, ((1, 2, "applied"),))})
        commit(store, "alice", marks={"n1": ClientMark(5, ((4, 5, "dropped"),))})
        with store.transaction("alice") as tx:
            assert tx.marks(["n1"]) == {"n1": ClientMark(5, ((4, 5, "dropped"),))}

    def test_fields_are_answered_keyed_as_asked(self, store: Store) -> None:
        commit(store, "alice", write("n1:1", "x", 1))
        state = StoredField("lww", stamp(1), value="x")
        key = (REF.collection, REF.key, REF.field)
        with store.transaction("alice") as tx:
            assert tx.fields([key, ("notes", "b", "x")]) == {key: state}
            assert tx.fields([REF]) == {REF: state}

    def test_an_error_inside_a_transaction_writes_nothing(self, store: Store) -> None:
        with pytest.raises(RuntimeError), store.transaction("alice") as tx:
            tx.write(
                BatchWrite(
                    1,
                    [write("n1:1", "x", 1)],
                    marks={"n1": ClientMark(1, ((1, 1, "applied"),))},
                    conflicts=[conflict("x")],
                )
            )
            raise RuntimeError("after the write, before the commit")
        assert store.cursor("alice") == 0
        assert store.conflicts("alice", 0, 10, BIG).conflicts == []
        with store.transaction("alice") as tx:
            assert tx.fields([REF]) == {}
            assert tx.marks(["n1"]) == {}

    def test_one_write_transaction_spans_users_all_or_nothing(self, store: Store) -> None:
        with pytest.raises(RuntimeError), store.write_transaction() as tx:
            tx.space("alice").write(batch(1, write("j:1", "a", 1)))
            tx.space("bob").write(batch(1, write("j:2", "b", 1)))
            raise RuntimeError("before the commit")
        assert (store.cursor("alice"), store.cursor("bob")) == (0, 0)
        with store.write_transaction() as tx:
            tx.space("alice").write(batch(1, write("j:1", "a", 1)))
            tx.space("bob").write(batch(1, write("j:2", "b", 1)))
        assert values(store, "alice") == [(1, "a", "a")] and values(store, "bob") == [(1, "a", "b")]

    def test_conflicts_are_per_user_and_paged(self, store: Store) -> None:
        commit(store, "alice", conflicts=[conflict(v, key=v) for v in ("a1", "a2", "a3")])
        commit(store, "bob", conflicts=[conflict("b1")])
        first = store.conflicts("alice", 0, 2, BIG)
        assert [c.winner.value for c in first.conflicts] == ["a1", "a2"]
        assert first.has_more
        rest = store.conflicts("alice", first.cursor, 2, BIG)
        assert ([c.winner.value for c in rest.conflicts], rest.has_more) == (["a3"], False)
        assert [c.winner.value for c in store.conflicts("bob", 0, 10, BIG).conflicts] == ["b1"]
        commit(store, "alice", conflicts=[conflict("a1", key="a1")])  # the same loser again
        assert len(store.conflicts("alice", 0, 10, BIG).conflicts) == 3  # reported once (law 5)
        one_by_one = store.conflicts("alice", 0, 10, 10)  # each body is larger: one a page
        assert ([c.winner.value for c in one_by_one.conflicts], one_by_one.has_more) == (
            ["a1"],
            True,
        )

    def test_old_tombstones_are_collected_and_the_horizon_rises(self, store: Store) -> None:
        def tombstone(mid: str, key: str, wall: int) -> Mutation:
            return Mutation(mid, "notes", key, DELETED_FIELD, "lww", stamp(wall), value=True)

        commit(
            store,
            "alice",
            write("n1:1", "old", 1_000, key="gone"),
            write("n1:2", "x", 1_001, key="kept"),
        )
        commit(store, "alice", tombstone("n1:3", "gone", 2_000), tombstone("n1:4", "recent", 9_000))
        commit(store, "bob", write("n1:1", "bob's", 1_000, key="gone"))
        assert store.collect_tombstones(deleted_before_ms=5_000) == 1
        assert [key for _, key, _ in values(store, "alice")] == ["kept", "recent"]
        assert (store.horizon("alice"), store.cursor("alice")) == (3, 4)  # past the removed seqs
        assert values(store, "bob") == [(1, "gone", "bob's")] and store.horizon("bob") == 0
        assert store.collect_tombstones(deleted_before_ms=5_000) == 0


class PersistentStoreContract(StoreContract):
    """The contract of a backend that persists; subclasses also provide `reopen`."""

    def test_committed_writes_survive_reopening(
        self, store: Store, reopen: Callable[[Store], Store]
    ) -> None:
        history = store.history()
        commit(
            store,
            "alice",
            write("n1:1", "x", 1),
            conflicts=[conflict("x")],
            marks={"n1": ClientMark(1)},
        )
        again = reopen(store)
        assert values(again, "alice") == [(1, "a", "x")]
        assert again.cursor("alice") == 1
        assert len(again.conflicts("alice", 0, 10, BIG).conflicts) == 1
        assert again.history() == history  # a reopened database is the same history
        with again.transaction("alice") as tx:
            assert tx.marks(["n1"]) == {"n1": ClientMark(1)}
