"""What the server stores for a crdt field: its document's own encoding (issue #14).

1. Whatever the order, duplicates and batching of pushed updates (any
   Unicode), the stored state holds the text of a document that applied them
   all, with nothing left pending, and a pull gives it as one change.
2. A push whose writes add nothing (the same updates again, or updates whose
   structs and deletions the state already holds) and carry no higher stamp
   is answered ``duplicate`` and changes nothing; a new deletion is
   ``applied``. Decided on content, so it holds against a state stored the
   old way (merged bytes), which the field's next change compacts.
3. After many edits with deletions the state stays near the author's
   document (where merging the updates as bytes kept every keystroke).
4. A garbage update refuses the whole push, whatever the field holds.

1 runs on both stores: each example on a new in-memory SQLite store, or on a
new space of one PostgreSQL database.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from hypothesis import given
from hypothesis import strategies as st

from quietsync.conflicts import (
    HLC,
    Clock,
    CrdtText,
    FieldRef,
    Resolvers,
    initial_text_update,
    merge_text_updates,
)
from quietsync.protocol import Mutation
from quietsync.server.errors import MutationsRefusedError
from quietsync.server.sqlite_store import SQLiteStore
from quietsync.server.store import BatchWrite, Store, StoredField
from quietsync.server.sync import SyncService
from tests.conflicts.test_text_state import authored_updates, typing
from tests.server.conftest import EmptySpace
from tests.server.helpers import decoded

REF = FieldRef("docs", "paper", "body")
SPACE = "u"


class Server:
    """A `SyncService` over a store, pushed to as one client pushes, in `space`."""

    def __init__(self, store: Store, space: str = SPACE) -> None:
        self.store, self.space = store, space
        self.sync = SyncService(store, Clock("server"), resolvers=Resolvers(), max_batch=1000)
        self._n = 0

    def push(self, *updates: bytes, wall: int = 1) -> list[str]:
        """Push `updates` as crdt writes of `REF` stamped at `wall` (counters 0, 1, ...)."""
        writes = []
        for counter, update in enumerate(updates):
            self._n += 1
            stamp = HLC(wall, counter, "n1")
            ref = (REF.collection, REF.key, REF.field)
            writes.append(Mutation(f"n1:{self._n}", *ref, "crdt", stamp, update=update).to_json())
        return [outcome for _, outcome in self.sync.push(self.space, decoded(writes)).results]

    def stored(self) -> StoredField:
        with self.store.transaction(self.space) as tx:
            [field] = tx.fields([REF]).values()
        return field

    def head(self) -> int:
        return self.sync.cursor(self.space)


@contextmanager
def server() -> Iterator[Server]:
    store = SQLiteStore(":memory:")
    try:
        yield Server(store)
    finally:
        store.close()


@given(authored_updates(), st.data())
def test_any_order_duplicates_and_batching_converge_to_the_documents_text(
    empty_space: EmptySpace, authored: tuple[list[bytes], str], data: st.DataObject
) -> None:
    updates, expected = authored
    deliveries = data.draw(
        st.permutations(updates + data.draw(st.lists(st.sampled_from(updates), max_size=6)))
    )
    with empty_space() as (store, space):
        srv = Server(store, space)
        while deliveries:
            size = data.draw(st.integers(1, len(deliveries)))
            batch, deliveries = deliveries[:size], deliveries[size:]
            srv.push(*batch, wall=data.draw(st.integers(1, 3)))
        doc = CrdtText(srv.stored().state)
        assert (doc.text, doc.has_pending) == (expected, False)
        [change] = srv.sync.pull(srv.space, 0, 10_000).changes
        assert CrdtText(change.update).text == expected
        head = srv.head()
        again = data.draw(st.lists(st.sampled_from(updates), min_size=1, max_size=4))
        assert set(srv.push(*again, wall=0)) == {"duplicate"}  # stamped below the field
        assert srv.head() == head


def test_updates_the_field_holds_are_duplicates_and_a_new_deletion_is_applied() -> None:
    author = CrdtText(client_id=9)
    keystrokes = [author.insert(0, "Ça"), author.insert(2, " 😀 n\u0308"), author.delete(0, 1)]
    with server() as srv:
        assert srv.push(*keystrokes, wall=5) == ["applied"] * 3
        state, head = srv.stored().state, srv.head()
        assert srv.push(*keystrokes, wall=5) == ["duplicate"] * 3  # the same ones again
        assert srv.push(author.state(), wall=4) == ["duplicate"]  # held, inside a bigger one
        assert srv.push(keystrokes[1], keystrokes[0], wall=1) == ["duplicate"] * 2
        assert (srv.stored().state, srv.head()) == (state, head)
        assert srv.push(author.delete(1, 1), wall=1) == ["applied"]  # new, at an older stamp
        assert CrdtText(srv.stored().state).text == "a😀 n\u0308"
        assert srv.stored().stamp == HLC(5, 2, "n1")  # the highest stamp merged stays
        assert srv.push(keystrokes[0], wall=9) == ["applied"]  # nothing new, a higher stamp
        assert srv.stored().stamp.wall_ms == 9


def test_a_deletion_pushed_before_its_text_is_kept_until_the_text_comes() -> None:
    author = CrdtText(client_id=1)
    typed = author.insert(0, "héllo 🏳️‍🌈")
    deleted = author.delete(0, 2)
    with server() as srv:
        srv.push(initial_text_update(REF, "x"))
        assert srv.push(deleted) == ["applied"]
        assert CrdtText(srv.stored().state).has_pending
        assert srv.push(typed) == ["applied"]
        doc = CrdtText(srv.stored().state)
        assert (doc.has_pending, doc.text.count("llo 🏳️‍🌈"), "hé" in doc.text) == (False, 1, False)


def _store_old_state(srv: Server, state: bytes, stamp: HLC) -> None:
    """Store `state` as the field's, as a server that merged bytes did."""
    m = Mutation("old:1", REF.collection, REF.key, REF.field, "crdt", stamp, update=state)
    with srv.store.transaction(SPACE) as tx:
        field = StoredField("crdt", stamp, state=state)
        tx.write(BatchWrite(tx.head() + 1, [m], fields={REF: field}))


def test_an_old_merged_bytes_state_is_judged_on_content_and_compacted_by_a_change() -> None:
    author = CrdtText(client_id=4)
    keystrokes = typing(author, random.Random(4), 2_000)
    old = merge_text_updates(None, *keystrokes)
    with server() as srv:
        _store_old_state(srv, old, HLC(10, 0, "n1"))
        assert srv.push(*keystrokes[:50], author.state(), wall=2) == ["duplicate"] * 51
        assert srv.stored().state == old  # nothing added: left as it was
        assert srv.push(author.insert(0, "𝔄"), wall=11) == ["applied"]
        state = srv.stored().state
        assert state is not None and len(state) <= 1.5 * len(author.state()) < len(old)
        assert CrdtText(state).text == author.text


def test_many_edits_with_deletions_stay_near_the_documents_size() -> None:
    author = CrdtText(client_id=12)
    keystrokes = typing(author, random.Random(12), 3_000)
    with server() as srv:
        for start in range(0, len(keystrokes), 25):  # a replica's pushes, as it types
            srv.push(*keystrokes[start : start + 25])
        state = srv.stored().state
        assert state is not None
        assert len(state) <= 1.5 * len(author.state())
        assert len(state) <= 1.5 * len(CrdtText(state).state())
        assert CrdtText(state).text == author.text


@pytest.mark.parametrize(
    "garbage",
    [b"garbage!", b"\x00\x00" + "😀".encode(), initial_text_update(REF, "é") + b"\x01"],
)
def test_a_garbage_update_refuses_the_whole_push(garbage: bytes) -> None:
    author = CrdtText(client_id=2)
    with server() as srv:
        srv.push(author.insert(0, "kept ç"))
        before, head = srv.stored(), srv.head()
        with pytest.raises(MutationsRefusedError) as refused:
            srv.push(author.insert(0, "new "), garbage)
        assert [(r.index, r.code) for r in refused.value.refused] == [(1, "bad_crdt_update")]
        assert (srv.stored(), srv.head()) == (before, head)
