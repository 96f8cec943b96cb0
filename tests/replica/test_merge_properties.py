"""Property: any interleaving of local writes and remote changes ends where the merge core says.

Hypothesis draws a sequence of local puts and deletes, remote changes from two
other nodes (stamped a few seconds either side of the local clock, so they
beat some local writes and lose to others), duplicate deliveries and batches.
Whatever the order, every field must end as the pure fold of
`conflicts.merge_field` over all writes made (local ones as the outbox holds
them, remote ones as sent) predicts, and ``get()`` must show exactly that.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from quietsync.conflicts import HLC, FieldWrite, canonical_equal, merge_field, wall_clock_ms
from quietsync.protocol import DELETED_FIELD, Change
from quietsync.replica import Replica
from quietsync.replica.replica import sync_port

KEYS = ("a", "b")
FIELDS = ("x", "y")
VALUES = st.sampled_from([0, 1, 1.0, "v", {"k": 1}, {"k": 1.0}, None, [1, 2]])

local_put = st.tuples(
    st.just("put"),
    st.sampled_from(KEYS),
    st.dictionaries(st.sampled_from(FIELDS), VALUES, min_size=1),
)
local_delete = st.tuples(st.just("delete"), st.sampled_from(KEYS))
remote = st.tuples(
    st.just("remote"),
    st.lists(
        st.tuples(
            st.sampled_from(KEYS),
            st.sampled_from((*FIELDS, DELETED_FIELD)),
            VALUES,
            st.integers(-3_000, 3_000),  # ms from now: before or after local writes
            st.sampled_from(("r1", "r2")),
        ),
        min_size=1,
        max_size=4,
    ),
)
replay = st.tuples(st.just("replay"), st.integers(0, 100))
OPS = st.lists(st.one_of(local_put, local_delete, remote, replay), max_size=12)


def _expected(writes: list[tuple[str, str, FieldWrite]]) -> dict[str, dict[str, Any] | None]:
    fields: dict[tuple[str, str], FieldWrite] = {}
    for key, field, write in writes:
        fields[key, field] = merge_field(fields.get((key, field)), write).state
    records: dict[str, dict[str, Any] | None] = {}
    for key in KEYS:
        record = {f: fields[key, f].value for f in FIELDS if (key, f) in fields}
        tomb = fields.get((key, DELETED_FIELD))
        deleted = tomb is not None and tomb.value is True
        records[key] = None if deleted or (not record and tomb is None) else record
    return records


@given(OPS)
def test_any_interleaving_matches_the_merge_core(ops: list[tuple[Any, ...]]) -> None:
    now = wall_clock_ms()
    sent: list[Change] = []
    with tempfile.TemporaryDirectory() as tmp, Replica.open(Path(tmp) / "r.db") as replica:
        for op in ops:
            if op[0] == "put":
                # A tombstone value of `True`/other is only ever written by delete().
                replica.put("items", op[1], op[2])
            elif op[0] == "delete":
                replica.delete("items", op[1])
            elif op[0] == "remote":
                batch = []
                for key, field, value, offset, node in op[1]:
                    if field == DELETED_FIELD:
                        value = value == 1  # tombstones hold booleans
                    stamp = HLC(now + offset, len(sent), node)
                    batch.append(
                        Change(
                            id=f"{node}:{len(sent)}",
                            collection="items",
                            key=key,
                            field=field,
                            kind="lww",
                            stamp=stamp,
                            value=value,
                            seq=len(sent),
                        )
                    )
                    sent.append(batch[-1])
                sync_port(replica).apply_remote(batch, cursor=len(sent))
            elif sent:
                sync_port(replica).apply_remote([sent[op[1] % len(sent)]])  # a duplicate delivery
        local = sync_port(replica).outbox_batch(10_000)
        writes = [(m.key, m.field, FieldWrite(m.value, m.stamp, m.base)) for m in local]
        writes += [(c.key, c.field, FieldWrite(c.value, c.stamp, c.base)) for c in sent]
        expected = _expected(writes)
        for key in KEYS:
            actual = replica.get("items", key)
            assert (actual is None) == (expected[key] is None), (key, actual, expected[key])
            if actual is not None:
                assert canonical_equal(actual, expected[key]), (key, actual, expected[key])
            for field in (*FIELDS, DELETED_FIELD):
                state = sync_port(replica).field_state("items", key, field)
                stamps = [w.stamp for k, f, w in writes if (k, f) == (key, field)]
                assert (state.write.stamp if state else None) == max(stamps, default=None)
