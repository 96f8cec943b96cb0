"""`BatchWrite.final_writes`: what a store writes of one push."""

from __future__ import annotations

from quietsync.conflicts import HLC, FieldRef, initial_text_update
from quietsync.protocol import Mutation
from quietsync.server.store import BatchWrite, StoredField

BODY = FieldRef("notes", "a", "body")
OTHER = FieldRef("notes", "b", "body")


def crdt(mid: str, ref: FieldRef, wall: int) -> Mutation:
    update = initial_text_update(ref, mid)
    return Mutation(
        mid, ref.collection, ref.key, ref.field, "crdt", HLC(wall, 0, "n1"), update=update
    )


def lww(mid: str, wall: int) -> Mutation:
    return Mutation(mid, "notes", "a", "title", "lww", HLC(wall, 0, "n1"), value=mid)


def test_a_crdt_field_is_written_once_under_its_last_seq_and_lww_writes_all_stay() -> None:
    log = [crdt("n1:1", BODY, 1), lww("n1:2", 2), crdt("n1:3", BODY, 3), crdt("n1:4", OTHER, 4)]
    log.append(lww("n1:5", 5))
    merged = StoredField("crdt", HLC(3, 0, "n1"), state=b"merged")
    batch = BatchWrite(10, log, fields={BODY: merged, OTHER: merged})
    assert [(seq, m.id) for seq, m in batch.final_writes()] == [
        (11, "n1:2"),
        (12, "n1:3"),
        (13, "n1:4"),
        (14, "n1:5"),
    ]
    assert [c.seq for c in batch.changes()] == [10, 11, 12, 13, 14]  # live still sees each


def test_without_crdt_writes_every_write_is_final() -> None:
    batch = BatchWrite(1, [lww("n1:1", 1), lww("n1:2", 2)])
    assert [(seq, m.id) for seq, m in batch.final_writes()] == [(1, "n1:1"), (2, "n1:2")]
