"""Properties of the server's merge policy (`SyncService` over an in-memory store).

1. Whatever the order and the batching of a set of lww writes (each client
   pushing its own in order, as a replica does, the clients interleaved any
   way), the fields the server holds are, for every field, the write with the
   highest stamp.
2. A push that is refused changes nothing; one that is accepted records an
   outcome for each mutation, and the same push again changes nothing more.
3. Whatever the order and the batching of a set of crdt writes, the field the
   server stores holds the text of a document that applied them all, and a
   pull gives it as one change (the merged state), whichever update came
   last. (Applying updates one by one out of causal order with pycrdt's
   ``Doc.apply_update`` alone could lose text: it drops content when several
   updates of one client arrive out of order; the server merges through
   `merge_text_state`, whose `CrdtText` keeps what waits.)
4. The answer to a push (encoded from its schema) is the JSON of its parts,
   whatever the mutation ids hold.

1-3 run on both stores: each example on an empty space of its own, a new
in-memory SQLite store or a new space of one PostgreSQL database (the
module's: a database per example would cost a CREATE DATABASE each).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import attrs
from hypothesis import given
from hypothesis import strategies as st

from quietsync.conflicts import HLC, Clock, Conflict, CrdtText, FieldRef, Outcome, Resolvers, Side
from quietsync.protocol import Mutation
from quietsync.server.errors import RequestError
from quietsync.server.sync import PushResult, SyncService
from tests.server.conftest import EmptySpace
from tests.server.helpers import decoded

NODES = ("n1", "n2", "n3")
FIELDS = [("a", "f"), ("a", "g"), ("b", "f")]


@contextmanager
def service(empty_space: EmptySpace) -> Iterator[tuple[SyncService, str]]:
    """A sync service on an empty space, and the space."""
    with empty_space() as (store, space):
        yield SyncService(store, Clock("server"), resolvers=Resolvers(), max_batch=1000), space


@st.composite
def lww_writes(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Distinct lww writes: each (node, wall) pair at most once, so stamps never collide."""
    stamps = draw(
        st.lists(st.tuples(st.sampled_from(NODES), st.integers(1, 40)), unique=True, max_size=25)
    )
    writes = []
    for node, wall in stamps:
        key, field = draw(st.sampled_from(FIELDS))
        base = draw(st.none() | st.integers(0, 40).map(lambda w: HLC(w, 0, "n1")))
        value = draw(st.integers(0, 3) | st.text(max_size=2) | st.none())
        mutation = Mutation("x:1", "c", key, field, "lww", HLC(wall, 0, node), base, value)
        writes.append(mutation.to_json())
    return numbered(writes)


def numbered(writes: list[dict[str, Any]], start: int = 1) -> list[dict[str, Any]]:
    """`writes` with their ids made ``<node>:<n>``, n growing per node in list (push) order."""
    counters = dict.fromkeys(NODES, start - 1)
    out = []
    for m in writes:
        node = HLC.parse(m["stamp"]).node
        counters[node] += 1
        out.append({**m, "id": f"{node}:{counters[node]}"})
    return out


def replay(sync: SyncService, user: str) -> dict[tuple[str, str], Any]:
    """The field states a pull from 0 leads to (one change per field, in seq order)."""
    state = {}
    for change in sync.pull(user, 0, 10_000).changes:
        state[(change.key, change.field)] = (change.value, change.stamp)
    return state


def splits(items: list[Any], cuts: list[int]) -> list[list[Any]]:
    bounds = sorted({c % (len(items) + 1) for c in cuts} | {0, len(items)})
    return [items[a:b] for a, b in itertools.pairwise(bounds)]


@given(lww_writes(), st.randoms(use_true_random=False), st.lists(st.integers(0, 100)))
def test_the_log_converges_to_the_highest_stamp_per_field(
    empty_space: EmptySpace, writes: list[dict[str, Any]], rnd: Any, cuts: list[int]
) -> None:
    shuffled = writes[:]
    rnd.shuffle(shuffled)
    shuffled = numbered(shuffled)  # each client still pushes its own in order
    expected: dict[tuple[str, str], Any] = {}
    for m in sorted(writes, key=lambda m: HLC.parse(m["stamp"])):
        expected[(m["key"], m["field"])] = (m["value"], HLC.parse(m["stamp"]))
    for order in (writes, shuffled):
        with service(empty_space) as (sync, u):
            for part in splits(order, cuts):
                sync.push(u, decoded(part))
            assert replay(sync, u) == expected


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=8,
)


@st.composite
def mixed_batches(draw: st.DrawFn) -> list[Any]:
    """Valid writes with junk mixed in: random JSON, or a valid write with one member broken."""
    batch: list[Any] = draw(lww_writes())
    valid = batch[:] or [{"id": "x"}]
    for _ in range(draw(st.integers(0, 2))):
        junk = draw(
            JSON
            | st.builds(
                lambda m, k, v: {**m, k: v},
                st.sampled_from(valid),
                st.sampled_from(["id", "kind", "stamp", "base", "key"]),
                JSON,
            )
        )
        batch.insert(draw(st.integers(0, len(batch))), junk)
    return batch


@given(lww_writes(), mixed_batches())
def test_a_push_is_all_or_nothing_and_idempotent(
    empty_space: EmptySpace, first: list[dict[str, Any]], batch: list[Any]
) -> None:
    with service(empty_space) as (sync, u):
        sync.push(u, decoded(first))
        before = (replay(sync, u), sync.cursor(u), sync.conflicts(u, 0, 1000))
        try:
            result = sync.push(u, decoded(batch))
        except RequestError:
            assert (replay(sync, u), sync.cursor(u), sync.conflicts(u, 0, 1000)) == before
            return
        assert [mid for mid, _ in result.results] == [m["id"] for m in batch]
        after = (replay(sync, u), sync.cursor(u), sync.conflicts(u, 0, 1000))
        again = sync.push(u, decoded(batch))
        assert again.results == result.results
        assert (replay(sync, u), sync.cursor(u), sync.conflicts(u, 0, 1000)) == after


@st.composite
def text_edits(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Crdt writes of one text field by up to three replicas, each editing its own copy."""
    ref = FieldRef("c", "a", "body")
    docs = {node: CrdtText(client_id=n + 1) for n, node in enumerate(NODES)}
    writes: list[dict[str, Any]] = []
    for i in range(draw(st.integers(1, 8))):
        node = draw(st.sampled_from(NODES))
        doc = docs[node]
        if writes and draw(st.booleans()):  # sync this replica with something already written
            other = draw(st.sampled_from(writes))
            doc.apply(Mutation.from_json(other).update or b"")
        if len(doc) and draw(st.booleans()):
            start = draw(st.integers(0, len(doc) - 1))
            update = doc.delete(start, draw(st.integers(1, len(doc) - start)))
        else:
            update = doc.insert(draw(st.integers(0, len(doc))), draw(st.text("xyz", min_size=1)))
        stamp = HLC(i + 1, 0, node)
        writes.append(Mutation("x:1", *attrs.astuple(ref), "crdt", stamp, update=update).to_json())
    return numbered(writes)


@given(text_edits(), st.randoms(use_true_random=False), st.lists(st.integers(0, 100)))
def test_crdt_writes_converge_whatever_the_order_and_batching(
    empty_space: EmptySpace, writes: list[dict[str, Any]], rnd: Any, cuts: list[int]
) -> None:
    expected = CrdtText()
    for m in writes:
        expected.apply(Mutation.from_json(m).update or b"")
    shuffled = writes[:]
    rnd.shuffle(shuffled)
    shuffled = numbered(shuffled)  # each client still pushes its own in order
    with empty_space() as (store, u):
        sync = SyncService(store, Clock("server"), resolvers=Resolvers(), max_batch=1000)
        for part in splits(shuffled, cuts):  # any order: what waits is kept
            sync.push(u, decoded(part))
        with store.transaction(u) as tx:
            [stored] = tx.fields([FieldRef("c", "a", "body")]).values()
        assert CrdtText(stored.state).text == expected.text
    with service(empty_space) as (sync, u):
        for part in splits(writes, cuts):
            sync.push(u, decoded(part))
        [change] = sync.pull(u, 0, 10_000).changes  # one field, one change: its merged state
        assert CrdtText(change.update).text == expected.text


@given(
    st.lists(st.tuples(st.text(min_size=1), st.sampled_from([o.value for o in Outcome]))),
    st.lists(JSON, max_size=2),
    st.integers(0, 10**6),
    st.integers(0, 10**12),
)
def test_the_answer_to_a_push_is_the_json_of_its_parts(
    results: list[tuple[str, str]], values: list[Any], suppressed: int, cursor: int
) -> None:
    stamp = HLC(1, 0, "n1")
    conflicts = [
        Conflict("c", 'k"é', "f", Side(v, stamp), Side("lost", stamp), "s") for v in values
    ]
    text = PushResult(
        results, conflicts, suppressed, cursor, "h" * 32, "u:alice", cursor + 1, list
    ).to_json_bytes()
    assert json.loads(text) == {
        "results": [{"id": mid, "outcome": outcome} for mid, outcome in results],
        "conflicts": [c.to_json() for c in conflicts],
        "suppressed": suppressed,
        "cursor": cursor,
        "history": "h" * 32,
    }
