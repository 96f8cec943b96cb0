"""The push of plain overwrites (`server.overwrite`): the same outcome as deciding each write.

A push `write_overwrites` takes is written by one conditional upsert, without
its fields read or its writes decided in Python; any other push, or one the
store finds it cannot take whole, is decided write by write. Either way the
answer, the fields stored, their seqs and the conflicts reported are the
same: the property test pushes random histories (new fields, overwrites,
concurrent and identical writes, deletes and edits under them, retries,
repeated ids, drifted stamps) through both paths and compares everything.
The other tests show which path a push took, from the statements SQLite ran.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from quietsync.conflicts import (
    HLC,
    Clock,
    FieldRef,
    Resolvers,
    initial_text_update,
)
from quietsync.protocol import DELETED_FIELD, DecodedPush, Mutation
from quietsync.server.errors import MutationsRefusedError
from quietsync.server.sqlite_store import SQLiteStore
from quietsync.server.sync import SyncService
from tests.server.helpers import decoded

SPACE = "u:alice"
NODES = ("n1", "n2")
FIELDS = [("a", "f"), ("a", "g"), ("b", "f"), ("a", DELETED_FIELD)]
WALL = 100
"""The server's wall clock: stamps above ``WALL + DRIFT`` are refused."""
DRIFT = 50


@contextmanager
def service() -> Iterator[tuple[SyncService, list[str]]]:
    """A service on an in-memory store, and the statements its connection runs."""
    store = SQLiteStore(":memory:")
    statements: list[str] = []
    store.connection.set_trace_callback(statements.append)
    clock = Clock("server", wall=lambda: WALL, max_drift_ms=DRIFT)
    try:
        yield SyncService(store, clock, resolvers=Resolvers(), max_batch=100), statements
    finally:
        store.close()


def lww(mid: str, key: str, field: str, value: object, stamp: HLC, base: HLC | None) -> Any:
    return Mutation(mid, "c", key, field, "lww", stamp, base, value).to_json()


@st.composite
def histories(draw: st.DrawFn) -> list[list[Any]]:
    """Pushes of lww writes, each by one node; a write's base is what a replica would have
    seen (the field's latest stamp), nothing, or something older; now and then a push is
    retried, repeats an id, or carries a stamp past the drift bound."""
    counters = dict.fromkeys(NODES, 0)
    latest: dict[tuple[str, str], HLC] = {}
    order = itertools.count()
    pushes: list[list[Any]] = []
    for _ in range(draw(st.integers(1, 8))):
        if pushes and draw(st.integers(0, 9)) == 0:
            pushes.append(pushes[-1])  # a retry: its answer was lost
            continue
        node, batch = draw(st.sampled_from(NODES)), []
        for _ in range(draw(st.integers(1, 6))):
            key, field = draw(st.sampled_from(FIELDS))
            wall = draw(st.integers(1, WALL + DRIFT + 1) if draw(st.booleans()) else st.just(1))
            stamp = HLC(max(wall, 1), next(order), node)
            seen = draw(st.sampled_from(["latest", "none", "old"]))
            base = {"latest": latest.get((key, field)), "none": None, "old": HLC(0, 0, "n1")}
            value = draw(st.booleans()) if field == DELETED_FIELD else draw(st.sampled_from([0, 1]))
            if draw(st.integers(0, 19)) > 0:  # else the id repeats the node's last one
                counters[node] += 1
            mid = f"{node}:{max(counters[node], 1)}"
            batch.append(lww(mid, key, field, value, stamp, base[seen]))
            latest[key, field] = max(stamp, latest.get((key, field), stamp))
        pushes.append(batch)
    return pushes


def answer(sync: SyncService, push: DecodedPush) -> Any:
    """Everything a push answers and publishes, or the refusals."""
    try:
        result = sync.push(SPACE, push, by="alice")
    except MutationsRefusedError as exc:
        return [(r.index, r.id, r.code, r.reason) for r in exc.refused]
    return (
        result.results,
        [c.to_json() for c in result.conflicts],
        result.suppressed,
        result.cursor,
        [c.to_json() for c in result.changes()],
    )


def state(sync: SyncService) -> Any:
    """Every field stored (with its seq) and every conflict recorded."""
    changes = [c.to_json() for c in sync.pull(SPACE, 0, 10_000).changes]
    conflicts = [c.to_json() for c in sync.conflicts(SPACE, 0, 10_000).conflicts]
    return changes, conflicts


@settings(max_examples=150)
@given(histories())
def test_a_push_is_answered_and_stored_the_same_whichever_path_it_takes(
    pushes: list[list[Any]],
) -> None:
    with service() as (fast, _), service() as (slow, _):
        for batch in pushes:
            push = decoded(batch)
            assert push.wire is not None
            assert answer(fast, push) == answer(slow, DecodedPush.of(push.writes))
        assert state(fast) == state(slow)


def ran(statements: list[str], prefix: str) -> int:
    return sum(s.startswith(prefix) for s in statements)


def test_new_fields_and_fields_their_writer_saw_are_written_without_being_read() -> None:
    with service() as (sync, statements):
        first = [lww(f"n1:{i}", f"k{i}", "f", i, HLC(1, i, "n1"), None) for i in range(1, 4)]
        sync.push(SPACE, decoded(first), by="alice")
        seen = HLC(1, 3, "n1")
        statements.clear()
        result = sync.push(
            SPACE, decoded([lww("n2:1", "k3", "f", "new", HLC(2, 0, "n2"), seen)]), by="alice"
        )
        assert result.results == [("n2:1", "applied")] and result.cursor == 4
        assert ran(statements, "SAVEPOINT overwrite") == 1
        assert ran(statements, "ROLLBACK TO") == 0
        assert ran(statements, "WITH w(c, k, f)") == 0  # no field was read
        [change] = sync.pull(SPACE, 3, 10).changes
        assert (change.seq, change.key, change.value, change.base) == (4, "k3", "new", seen)


def test_a_push_holding_a_concurrent_write_is_decided_write_by_write() -> None:
    with service() as (sync, statements):
        sync.push(SPACE, decoded([lww("n1:1", "k", "f", "one", HLC(1, 0, "n1"), None)]), by="alice")
        statements.clear()
        result = sync.push(
            SPACE,
            decoded(
                [
                    lww("n2:1", "new", "f", "x", HLC(2, 0, "n2"), None),
                    lww("n2:2", "k", "f", "two", HLC(2, 1, "n2"), None),  # had not seen "one"
                ]
            ),
            by="alice",
        )
        assert ran(statements, "ROLLBACK TO overwrite") == 1  # the upsert did not take it
        assert result.results == [("n2:1", "applied"), ("n2:2", "applied")]
        [conflict] = result.conflicts
        assert (conflict.winner.value, conflict.loser.value) == ("two", "one")
        pulled = [(c.seq, c.key, c.value) for c in sync.pull(SPACE, 1, 10).changes]
        assert pulled == [(2, "new", "x"), (3, "k", "two")]  # numbered once, in push order


def test_an_edit_of_a_deleted_record_is_decided_and_reported() -> None:
    with service() as (sync, statements):
        delete = lww("n1:1", "k", DELETED_FIELD, True, HLC(2, 0, "n1"), None)
        sync.push(SPACE, decoded([delete]), by="alice")
        statements.clear()
        edit = lww("n2:1", "k", "f", "late", HLC(3, 0, "n2"), None)
        result = sync.push(SPACE, decoded([edit]), by="alice")
        assert ran(statements, "ROLLBACK TO overwrite") == 1
        [conflict] = result.conflicts
        assert (conflict.field, conflict.loser.value) == (DELETED_FIELD, {"f": "late"})


def test_a_retry_and_a_write_onto_a_text_field_are_not_taken() -> None:
    with service() as (sync, statements):
        batch = [lww("n1:1", "k", "f", 1, HLC(1, 0, "n1"), None)]
        sync.push(SPACE, decoded(batch), by="alice")
        statements.clear()
        assert sync.push(SPACE, decoded(batch), by="alice").results == [("n1:1", "applied")]
        assert ran(statements, "SAVEPOINT") == 0  # answered from the mark, nothing written
        text = Mutation("n1:2", "c", "k", "body", "crdt", HLC(2, 0, "n1"),
                        update=initial_text_update(FieldRef("c", "k", "body"), "hi"))  # fmt: skip
        sync.push(SPACE, decoded([text.to_json()]), by="alice")
        statements.clear()
        onto_text = lww("n1:3", "k", "body", "plain", HLC(3, 0, "n1"), HLC(2, 0, "n1"))
        try:
            sync.push(SPACE, decoded([onto_text]), by="alice")
        except MutationsRefusedError as exc:
            assert [r.code for r in exc.refused] == ["kind_mismatch"]
        else:
            raise AssertionError("an lww write onto a text field was taken")
        assert ran(statements, "ROLLBACK TO overwrite") == 1
