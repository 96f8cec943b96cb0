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

This is the hot path of every pull, so a call reads each record once (one
query per collection), merges in memory, folds all of a CRDT field's updates
into one merge, and writes every changed field in one statement. The caller
holds the transaction and has already refused drifting stamps.

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

Ref = tuple[str, str, str]


def _stamp(text: str | None) -> HLC | None:
    return None if text is None else HLC.parse(text)


def _merge_lww(row: FieldRow | None, change: Change, node_id: str) -> FieldRow | None:
    """The field's new row, or None if `change` leaves it as it is."""
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
        return None
    state = merged.state
    base = None if state.base is None else str(state.base)
    return FieldRow(
        change.collection,
        change.key,
        change.field,
        "lww",
        state.value,
        None,
        str(state.stamp),
        base,
    )


def _restamp_crdt(row: FieldRow | None, change: Change) -> FieldRow:
    """The field's row with the higher of the two stamps (its state is merged later)."""
    if row is not None and HLC.parse(row.stamp) >= change.stamp:
        return row
    base = None if change.base is None else str(change.base)
    state = None if row is None else row.state
    return FieldRow(
        change.collection, change.key, change.field, "crdt", None, state, str(change.stamp), base
    )


def _current_rows(store: Store, changes: Sequence[Change]) -> dict[Ref, FieldRow]:
    keys: dict[str, set[str]] = {}
    for change in changes:
        keys.setdefault(change.collection, set()).add(change.key)
    return {
        (row.collection, row.key, row.field): row
        for collection, wanted in keys.items()
        for row in store.records(collection, sorted(wanted))
    }


def merge_changes(store: Store, node_id: str, changes: Sequence[Change]) -> list[ChangeEvent]:
    """Merge `changes` in order; return one event per record whose visible content changed."""
    before = _current_rows(store, changes)
    rows = dict(before)
    updates: dict[Ref, list[bytes]] = {}
    for change in changes:
        ref = (change.collection, change.key, change.field)
        row = rows.get(ref)
        if row is not None and row.kind != change.kind:
            raise KindMismatchError(change.field, row.kind, change.kind)
        if change.kind == "crdt":
            updates.setdefault(ref, []).append(change.update or b"")
            rows[ref] = _restamp_crdt(row, change)
        else:
            new = _merge_lww(row, change, node_id)
            if new is not None:
                rows[ref] = new

    changed: dict[tuple[str, str], set[str]] = {}
    written = []
    for ref, row in rows.items():
        old = before.get(ref)
        if ref in updates:
            state = merge_text_updates(row.state, *updates[ref])
            if old is not None and state == old.state and row.stamp == old.stamp:
                continue
            row = FieldRow(*ref, "crdt", None, state, row.stamp, row.base)
            visible = old is None or text_of(state) != text_of(old.state)
        elif row is old:
            continue
        else:
            visible = old is None or old.value != row.value
        written.append(row)
        if visible:
            changed.setdefault(ref[:2], set()).add(ref[2])
    store.write_fields(written)
    return [ChangeEvent(c, k, frozenset(f), "remote") for (c, k), f in changed.items()]
