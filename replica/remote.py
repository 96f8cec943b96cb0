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
into one merge, and writes each changed record once. The caller
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
from replica.layout import StoredField, dump_record, load_record, value_text
from replica.records import encode_json
from replica.store import RecordRow, Store
from replica.subscriptions import ChangeEvent

__all__ = ["merge_changes"]

RecordKey = tuple[str, str]
Fields = dict[str, StoredField]


def _stamp(text: str | None) -> HLC | None:
    return None if text is None else HLC.parse(text)


def _merge_lww(current: StoredField | None, change: Change, node_id: str) -> StoredField | None:
    """The field's new state, or None if `change` leaves it as it is."""
    text = encode_json(f"field {change.field!r} of change {change.id!r}", change.value)
    old = None
    if current is not None:
        old = FieldWrite(current.value, HLC.parse(current.stamp), _stamp(current.base))
    merged = merge_field(
        old,
        FieldWrite(text, change.stamp, change.base),
        ref=FieldRef(change.collection, change.key, change.field),
        suppress_identical=True,
        detected_by=node_id,
    )
    if not merged.changed:
        return None
    state = merged.state
    base = None if state.base is None else str(state.base)
    return StoredField("lww", state.value, str(state.stamp), base)


def _restamp_crdt(current: StoredField | None, change: Change) -> StoredField:
    """The field with the higher of the two stamps (its text is set once its state is merged)."""
    if current is not None and HLC.parse(current.stamp) >= change.stamp:
        return current
    base = None if change.base is None else str(change.base)
    return StoredField("crdt", "" if current is None else current.value, str(change.stamp), base)


def _current(store: Store, changes: Sequence[Change]) -> dict[RecordKey, Fields]:
    keys: dict[str, set[str]] = {}
    for change in changes:
        keys.setdefault(change.collection, set()).add(change.key)
    return {
        (collection, row.key): load_record(row.vals, row.stamps)
        for collection, wanted in keys.items()
        for row in store.records(collection, sorted(wanted))
    }


def merge_changes(store: Store, node_id: str, changes: Sequence[Change]) -> list[ChangeEvent]:
    """Merge `changes` in order; return one event per record whose visible content changed."""
    before = _current(store, changes)
    records: dict[RecordKey, Fields] = {}
    updates: dict[tuple[str, str, str], list[bytes]] = {}
    for change in changes:
        rkey = (change.collection, change.key)
        fields = records.get(rkey)
        if fields is None:
            fields = records[rkey] = dict(before.get(rkey, {}))
        current = fields.get(change.field)
        if current is not None and current.kind != change.kind:
            raise KindMismatchError(change.field, current.kind, change.kind)
        if change.kind == "crdt":
            updates.setdefault((*rkey, change.field), []).append(change.update or b"")
            fields[change.field] = _restamp_crdt(current, change)
        else:
            new = _merge_lww(current, change, node_id)
            if new is not None:
                fields[change.field] = new

    texts = _merge_texts(store, before, records, updates)
    changed: dict[RecordKey, set[str]] = {}
    rows: dict[str, list[RecordRow]] = {}
    for rkey, fields in records.items():
        old = before.get(rkey, {})
        written = {f for f, state in fields.items() if old.get(f) != state or (*rkey, f) in texts}
        if not written:
            continue
        rows.setdefault(rkey[0], []).append(RecordRow(rkey[1], *dump_record(fields)))
        visible = {f for f in written if f not in old or old[f].value != fields[f].value}
        if visible:
            changed[rkey] = visible
    for collection, group in rows.items():
        store.write_records(collection, group)
    for (collection, key, field), state in texts.items():
        store.write_text_states(collection, [(key, field, state)])
    return [ChangeEvent(c, k, frozenset(f), "remote") for (c, k), f in changed.items()]


def _merge_texts(
    store: Store,
    before: dict[RecordKey, Fields],
    records: dict[RecordKey, Fields],
    updates: dict[tuple[str, str, str], list[bytes]],
) -> dict[tuple[str, str, str], bytes]:
    """Merge each CRDT field's updates into its stored state; the states that changed.

    Sets each merged field's text in `records`.
    """
    merged: dict[tuple[str, str, str], bytes] = {}
    for (collection, key, field), field_updates in updates.items():
        existed = field in before.get((collection, key), {})
        old = store.text_state(collection, key, field) if existed else None
        state = merge_text_updates(old, *field_updates)
        fields = records[(collection, key)]
        fields[field] = fields[field]._replace(value=value_text(text_of(state)))
        if state != old:
            merged[(collection, key, field)] = state
    return merged
