"""Merging pulled (or mirrored) changes into the store, through the merge core.

Policy for remote changes, kept apart from the `Replica` facade:

* LWW changes go through `conflicts.merge_field` with identical-content
  suppression and no conflict reporting: the server reports each conflict
  once for everybody, so a remote change that beats a still-pending local
  write simply wins here. Values are handed to the merge as their canonical
  JSON text, for which plain string equality *is* canonical equality.
* CRDT changes are merged with `conflicts.merge_text_updates` (idempotent); the
  field keeps the highest stamp seen, and its `base` with it.
* A change whose stamp equals the stored one (a duplicate delivery, or the
  log delivering a mirror write the stream tracker already applied) changes
  nothing.

The caller holds the transaction and has already refused drifting stamps.

Must not import `server`.
"""

from __future__ import annotations

from collections.abc import Sequence

from conflicts import (
    HLC,
    Change,
    FieldRef,
    FieldWrite,
    KindMismatchError,
    merge_field,
    merge_text_updates,
    text_of,
)
from replica.records import encode_json
from replica.store import FieldRow, Store
from replica.subscriptions import ChangeEvent

__all__ = ["merge_changes"]


def _stamp(text: str | None) -> HLC | None:
    return None if text is None else HLC.parse(text)


def _merge_lww(row: FieldRow | None, change: Change, node_id: str) -> tuple[FieldRow | None, bool]:
    text = encode_json(f"field {change.field!r} of change {change.id!r}", change.value)
    current = None
    if row is not None:
        current = FieldWrite(row.value, HLC.parse(row.stamp), _stamp(row.base))
    merged = merge_field(
        current,
        FieldWrite(text, change.stamp, change.base),
        ref=FieldRef(change.collection, change.key, change.field),
        suppress_identical=True,
        detected_by=node_id,
    )
    if not merged.changed:
        return None, False
    state = merged.state
    base = None if state.base is None else str(state.base)
    new = FieldRow(
        change.collection,
        change.key,
        change.field,
        "lww",
        state.value,
        None,
        str(state.stamp),
        base,
    )
    return new, row is None or row.value != state.value


def _merge_crdt(row: FieldRow | None, change: Change) -> tuple[FieldRow | None, bool]:
    old = None if row is None else row.state
    state = merge_text_updates(old, change.update or b"")
    stamp, base = str(change.stamp), _stamp_text(change.base)
    if row is not None and HLC.parse(row.stamp) >= change.stamp:
        stamp, base = row.stamp, row.base
    if row is not None and state == old and stamp == row.stamp:
        return None, False
    new = FieldRow(change.collection, change.key, change.field, "crdt", None, state, stamp, base)
    return new, text_of(state) != text_of(old)


def _stamp_text(stamp: HLC | None) -> str | None:
    return None if stamp is None else str(stamp)


def merge_changes(store: Store, node_id: str, changes: Sequence[Change]) -> list[ChangeEvent]:
    """Merge `changes` in order; return one event per record whose visible content changed."""
    changed: dict[tuple[str, str], set[str]] = {}
    for change in changes:
        row = store.field(change.collection, change.key, change.field)
        if row is not None and row.kind != change.kind:
            raise KindMismatchError(change.field, row.kind, change.kind)
        if change.kind == "crdt":
            new, visible = _merge_crdt(row, change)
        else:
            new, visible = _merge_lww(row, change, node_id)
        if new is not None:
            store.write_fields([new])
        if visible:
            changed.setdefault((change.collection, change.key), set()).add(change.field)
    return [ChangeEvent(c, k, frozenset(f), "remote") for (c, k), f in changed.items()]
