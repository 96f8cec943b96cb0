"""Merging pulled (or mirrored) changes into the store, by the merge core's laws.

Policy for remote changes (the sync side's `SyncPort.apply_remote` runs it):

* LWW: the field keeps the write with the highest stamp; an equal stamp is a
  duplicate and changes nothing (laws 1 and 2 of `conflicts.lww`). That is
  all of `conflicts.merge_field` a replica needs: it reports no conflicts
  (the server reports each once, for everybody, so a remote change that
  beats a still-pending local write simply wins here) and has no resolvers.
  Stamps are compared as their stored strings, which sort exactly as the
  stamps do (`conflicts.hlc`); values are stored as canonical JSON text.
  `tests/replica/test_merge_properties.py` checks the result against
  `merge_field` for any delivery order.
* CRDT changes are applied to the field's open document (`replica.texts`;
  idempotent) and stored as appended updates, never as a rewritten
  document; the field keeps the highest stamp seen, and its `base` with it.
* A change whose stamp equals the stored one (a duplicate delivery, or the
  log delivering a mirror write the stream tracker already applied) changes
  nothing.

This is the hot path of every pull, so a call reads each record once (one
query per collection), merges in memory, folds all of a CRDT field's updates
into one merge, and writes each changed record once. The caller
holds the transaction and has already refused drifting stamps.

Must not import `quietsync.server`.
"""

from __future__ import annotations

from collections.abc import Sequence

from quietsync.conflicts import KindMismatchError, check_text_update, merge_text_updates
from quietsync.protocol import Change
from quietsync.replica.layout import StoredField, dump_record, load_record, value_text
from quietsync.replica.records import encode_json
from quietsync.replica.store import RecordRow, Store
from quietsync.replica.subscriptions import ChangeEvent
from quietsync.replica.texts import STALE, TextFields, TextRef

__all__ = ["merge_changes"]

RecordKey = tuple[str, str]
Fields = dict[str, StoredField]


class _Record:
    """The working copy of one record: its fields before, now, and what changed."""

    __slots__ = ("before", "changed", "fields")

    def __init__(self, before: Fields) -> None:
        self.before = before
        self.fields = dict(before)
        self.changed: dict[str, bool] = {}  # field written -> its visible content changed


def _current(
    store: Store, texts: TextFields, changes: Sequence[Change]
) -> dict[RecordKey, _Record]:
    keys: dict[str, set[str]] = {}
    for change in changes:
        keys.setdefault(change.collection, set()).add(change.key)
    records = {}
    for collection, wanted in keys.items():
        for row in store.records(collection, sorted(wanted)):
            fields = load_record(row.vals, row.stamps)
            texts.current(collection, row.key, fields)  # a lagging row's text fields
            records[(collection, row.key)] = _Record(fields)
    return records


def merge_changes(store: Store, texts: TextFields, changes: Sequence[Change]) -> list[ChangeEvent]:
    """Merge `changes` in order; return one event per record whose visible content changed."""
    records = _current(store, texts, changes)
    updates: dict[TextRef, list[bytes]] = {}
    for change in changes:
        rkey = (change.collection, change.key)
        record = records.get(rkey)
        if record is None:
            record = records[rkey] = _Record({})
        name, kind = change.field, change.kind
        current = record.fields.get(name)
        if current is not None and current.kind != kind:
            raise KindMismatchError(name, current.kind, kind)
        if kind == "crdt":  # merged whatever its stamp: applying a Yjs update is idempotent
            updates.setdefault((*rkey, name), []).append(change.update or b"")
        stamp = str(change.stamp)
        if current is not None and stamp <= current.stamp:
            continue  # a duplicate (equal stamp) or a loser: the field keeps its write
        base = None if change.base is None else str(change.base)
        if kind == "crdt":  # the text is set once the state is merged (`_merge_texts`)
            value = '""' if current is None else current.value
            record.fields[name] = StoredField("crdt", value, stamp, base)
            record.changed.setdefault(name, False)
            continue
        text = encode_json(f"field {name!r} of change {change.id!r}", change.value)
        record.fields[name] = StoredField("lww", text, stamp, base)
        old = record.before.get(name)
        record.changed[name] = old is None or old.value != text
    appended = _merge_texts(texts, records, updates)

    rows: dict[str, list[RecordRow]] = {}
    events = []
    for (collection, key), record in records.items():
        if record.changed:
            rows.setdefault(collection, []).append(RecordRow(key, *dump_record(record.fields)))
            visible = frozenset([f for f, seen in record.changed.items() if seen])
            if visible:
                events.append(ChangeEvent(collection, key, visible, "remote"))
    for collection, group in rows.items():
        store.write_records(collection, group)
    for ref, applied in appended:  # after the rows: compaction may rewrite them
        stored = records[ref[:2]].fields[ref[2]]
        texts.appended(ref, applied, stored.stamp, stored.base)
    return events


def _merge_texts(
    texts: TextFields, records: dict[RecordKey, _Record], updates: dict[TextRef, list[bytes]]
) -> list[tuple[TextRef, list[bytes]]]:
    """Apply each CRDT field's updates to its document; what to append once rows are written.

    A new field is stored whole (its text materialised); an existing one gets
    the updates that changed it appended, and its row holds `STALE`.
    """
    appended = []
    for ref, field_updates in updates.items():
        collection, key, field = ref
        record = records[(collection, key)]
        before = record.before.get(field)
        doc = None if before is None else texts.doc(ref)
        if doc is None:
            doc = texts.create(ref, merge_text_updates(None, *field_updates))
            record.fields[field] = record.fields[field]._replace(value=value_text(doc.text))
            record.changed[field] = True
            continue
        text, vector = doc.text, doc.state_vector()
        for update in field_updates:
            check_text_update(update)  # pycrdt alone would take a v2 update for an empty one
            doc.apply(update)
        grew = doc.state_vector() != vector or doc.text != text or doc.has_pending
        if not grew and not (texts.is_stale(ref) and record.fields[field].stamp > before.stamp):
            continue  # nothing new (a delete of what was deleted counts as nothing)
        # Appended: the content, or only a higher stamp of a field whose row lags (the
        # stale field's last update must hold its stamp).
        record.fields[field] = record.fields[field]._replace(value=STALE)
        record.changed[field] = doc.text != text
        appended.append((ref, field_updates if grew else []))
    return appended
