"""Delete versus edit: what becomes of an edit that the delete of its record did not see.

A record is deleted by its tombstone, an lww field holding ``True``; its other
fields stay stored under it (a put on a deleted record writes the tombstone
back to ``False`` under the put's stamp, which resurrects it). Fields merge
one by one (`conflicts.lww`), so an edit of another field racing with a
delete used to vanish under the tombstone with nobody told. The rule:

1. **The delete wins.** The record stays deleted; the edit is kept under the
   tombstone, like every field of a deleted record, and nothing resurrects
   it but a write that saw the delete (in a chat or notes app, a deleted
   message or note must not come back because another device edited it).
2. **An edit the delete did not cover is reported.** A write stamped after
   the tombstone was made by a writer that had not seen the delete: one that
   had would have resurrected the record, and that newer ``False`` would have
   won. Each such write is one `Conflict` on the tombstone field: the winner
   is the tombstone (``True``, its stamp), the loser the edit: the fields
   that write set (one write, one stamp) and their values, so the user sees
   what the delete hid.
3. **An edit stamped before the tombstone is covered by it**, as the older
   of two writes is by last-writer-wins: the delete is the newer write.

`uncovered_edits` looks at stamps only, so the same writes are reported
whichever arrives first (the edit, then the delete, or the reverse).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from quietsync.conflicts.conflict import Conflict, FieldRef, Side
from quietsync.conflicts.hlc import HLC
from quietsync.conflicts.lww import FieldWrite

__all__ = ["uncovered_edits"]


def uncovered_edits(
    tombstone: FieldWrite | None,
    fields: Mapping[str, FieldWrite],
    changed: Collection[str],
    *,
    ref: FieldRef,
    detected_by: str = "",
) -> list[Conflict]:
    """The conflicts a merge step makes visible between a record's delete and its edits.

    `tombstone` is the record's tombstone after the step (None: never
    written), `fields` its other fields after the step, `changed` the names
    the step wrote (the tombstone's name, `ref.field`, among them if it
    wrote it). A new winning delete is checked against every field; an
    existing one only against the fields just written, so each uncovered
    edit is reported by the step that uncovered it. One conflict per write
    (stamp), in stamp order; none while the record is not deleted.
    """
    if tombstone is None or tombstone.value is not True:
        return []
    names = fields.keys() if ref.field in changed else [n for n in changed if n in fields]
    by_write: dict[HLC, dict[str, Any]] = {}
    for name in names:
        write = fields[name]
        if name != ref.field and write.stamp > tombstone.stamp:
            by_write.setdefault(write.stamp, {})[name] = write.value
    return [
        Conflict(
            collection=ref.collection,
            key=ref.key,
            field=ref.field,
            winner=Side(True, tombstone.stamp),
            loser=Side(dict(sorted(values.items())), stamp),
            detected_by=detected_by,
        )
        for stamp, values in sorted(by_write.items())
    ]
