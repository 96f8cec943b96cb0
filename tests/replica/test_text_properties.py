"""Property: two replicas editing one text field converge, whatever the delivery order.

Each replica makes random inserts and deletes; now and then (and at the end)
one side's outbox updates reach the other as `Change`s, shuffled, in small
batches, with duplicates, so later edits build on merged documents. Once
everything is delivered both replicas hold the same text.
"""

from __future__ import annotations

import random
import tempfile
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from quietsync.protocol import Change
from quietsync.replica import Replica
from quietsync.replica.replica import sync_port

EDIT = st.tuples(
    st.sampled_from(("a", "b")),
    st.sampled_from(("insert", "delete", "sync")),
    st.integers(0, 1_000),  # position, taken modulo the current length
    st.text(alphabet="xyz", min_size=1, max_size=3),
)


def _edit(replica: Replica, insert: bool, pos: int, text: str) -> None:
    current = (replica.get("docs", "d") or {}).get("body", "")
    if insert or not current:
        index = pos % (len(current) + 1) if current else 0
        replica.text_insert("docs", "d", "body", index, text)
    else:
        index = pos % len(current)
        replica.text_delete("docs", "d", "body", index, min(len(text), len(current) - index))


def _sync(source: Replica, target: Replica, rng: random.Random) -> None:
    """Deliver all of `source`'s updates to `target`, shuffled, with duplicates."""
    changes = [
        Change.from_json({**m.to_json(), "seq": i})  # through the wire form, as a pull would
        for i, m in enumerate(sync_port(source).outbox_batch(1_000))
    ]
    delivery = changes + rng.sample(changes, k=len(changes) // 2)
    rng.shuffle(delivery)
    for i in range(0, len(delivery), 3):
        sync_port(target).apply_remote(delivery[i : i + 3])


@given(st.lists(EDIT, max_size=12), st.randoms(use_true_random=False))
def test_concurrent_text_edits_converge(edits: list[tuple[str, str, int, str]], rng) -> None:
    with (
        tempfile.TemporaryDirectory() as tmp,
        Replica.open(Path(tmp) / "a.db", node_id="a") as a,
        Replica.open(Path(tmp) / "b.db", node_id="b") as b,
    ):
        sides = {"a": a, "b": b}
        for side, action, pos, text in edits:
            me = sides[side]
            if action == "sync":
                _sync(me, b if me is a else a, rng)
            else:
                _edit(me, action == "insert", pos, text)
        _sync(a, b, rng)
        _sync(b, a, rng)
        assert a.get("docs", "d") == b.get("docs", "d")
