"""Local writes: how a put, a delete or a text edit becomes record rows and outbox rows.

The policy of the replica's own writes (see `replica.replica` for the
invariants it serves):

* one stamp per write call, issued only if the call changes a field: stamps
  need only be unique per field, and a call writes each field at most once;
* a field's `base` is its stamp in the replica at write time (None if new);
* a value canonical-equal to the stored one is not written at all;
* any write to a deleted record also writes the tombstone back to ``False``;
* the first insert into a new text field is `initial_text_update`, so equal
  initial texts written by two replicas are one and the same update; a text
  edit appends its own update (`replica.texts`), never the whole document;
* what one call writes goes into few outbox rows (whole records, at most
  `ROW_MUTATIONS` mutations each), all under the call's stamp.

A record written for the first time takes a fast path: its canonical JSON
text, computed once when the call checked its values, is both the stored
``vals`` and its part of the outbox row. Only records that already exist are
split into fields and compared.

`LocalWriter` only stages and stores rows; the caller holds the transaction
(everything a call stages is written in it, or nothing is).

Must not import `quietsync.server`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from quietsync.conflicts import (
    Clock,
    FieldRef,
    KindMismatchError,
    TextOp,
    canonical_json,
    initial_text_update,
    join_updates,
)
from quietsync.protocol import (
    DELETED_FIELD,
    MAX_NESTING,
    check_name,
    nested_too_deep,
    too_deep_message,
)
from quietsync.replica.layout import (
    StoredField,
    dump_record,
    json_string,
    load_record,
    new_row_stamps,
    object_text,
    value_text,
)
from quietsync.replica.outbox import Outbox
from quietsync.replica.records import FALSE, TRUE, encode_json
from quietsync.replica.store import OutboxRow, RecordRow, Store
from quietsync.replica.subscriptions import ChangeEvent
from quietsync.replica.texts import STALE, TextFields

__all__ = ["EncodedRecord", "LocalWriter", "encode_records"]


class EncodedRecord(NamedTuple):
    """A record's new fields, checked and encoded before any transaction opens."""

    key: str
    names: tuple[str, ...]
    text: str  # the canonical JSON object of the fields

    def field_texts(self) -> dict[str, str]:
        """Each field's canonical text (only writes to existing records need them)."""
        return {name: value_text(value) for name, value in json.loads(self.text).items()}


def encode_records(records: Mapping[str, Mapping[str, Any]]) -> list[EncodedRecord]:
    """Check names and encode values; `TypeError` names a value that is not JSON.

    Field names are checked once per distinct set of names: the records of a
    batch mostly share theirs.
    """
    shapes: set[tuple[str, ...]] = set()
    encoded = []
    for key, fields in records.items():
        check_name("key", key)
        if not isinstance(fields, Mapping):
            raise TypeError(f"fields of {key!r} must be a mapping, got {type(fields).__name__}")
        names = tuple(fields)
        if names not in shapes:
            for name in names:
                check_name("field", name)
            if DELETED_FIELD in names:
                raise ValueError(f"{DELETED_FIELD!r} is the tombstone field: use delete()")
            shapes.add(names)
        encoded.append(EncodedRecord(key, names, _record_text(key, fields)))
    return encoded


def _record_text(key: str, fields: Mapping[str, Any]) -> str:
    """The record's canonical text; `TypeError` naming the first field that cannot be sent.

    A value nested deeper than the protocol's `MAX_NESTING` is refused here, so
    a replica never queues a write the server would refuse. Such a value takes
    more than two brackets a level, so a shorter record skips that walk.
    """
    try:
        text = canonical_json(fields if type(fields) is dict else dict(fields))
    except (TypeError, ValueError, RecursionError):
        _check_nesting(key, fields)
        for name, value in fields.items():  # name the first culprit
            encode_json(f"field {name!r} of record {key!r}", value)
        raise
    if len(text) > 2 * MAX_NESTING:
        _check_nesting(key, fields)
    return text


def _check_nesting(key: str, fields: Mapping[str, Any]) -> None:
    for name, value in fields.items():
        if nested_too_deep(value):
            raise TypeError(f"field {name!r} of record {key!r}: {too_deep_message('the value')}")


class _CallStamp:
    """The one stamp of one write call, issued when the call first writes a field."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._text: str | None = None

    @property
    def text(self) -> str:
        if self._text is None:
            self._text = str(self._clock.now())
        return self._text


ROW_MUTATIONS = 256
"""Whole records go into one outbox row until it holds this many mutations.

A push batch reads (and parses) every row it takes mutations from, so a
row's size bounds the work of a small batch: one row for a 100k-record
`put_many` would make each batch of a slow push parse all of it.
"""


class _LwwRow:
    """One outbox row being filled: the ``"key":{...}`` members of its fields text."""

    def __init__(self) -> None:
        self.members: list[str] = []
        self.bases: dict[str, dict[str, str]] = {}
        self.count = 0


class _Batch:
    """Record rows, text states, outbox rows and events staged by one call.

    The call's LWW writes collect into outbox rows of at most `ROW_MUTATIONS`
    mutations (whole records), numbered when they are stored.
    """

    def __init__(self, clock: Clock) -> None:
        self.stamp = _CallStamp(clock)
        self.rows: list[RecordRow] = []
        self.entries: list[OutboxRow] = []
        self.events: list[ChangeEvent] = []
        self.lww_rows: list[_LwwRow] = []

    def add_lww(self, key: str, fields_text: str, count: int, bases: dict[str, str]) -> None:
        if not self.lww_rows or self.lww_rows[-1].count >= ROW_MUTATIONS:
            self.lww_rows.append(_LwwRow())
        row = self.lww_rows[-1]
        row.members.append(f"{json_string(key)}:{fields_text}")
        row.count += count
        if bases:
            row.bases[key] = bases


class LocalWriter:
    """Stages and stores this replica's own writes (see the module docstring)."""

    def __init__(self, store: Store, clock: Clock, outbox: Outbox, texts: TextFields) -> None:
        self._store = store
        self._clock = clock
        self._outbox = outbox
        self._texts = texts

    def put_many(self, collection: str, records: Sequence[EncodedRecord]) -> list[ChangeEvent]:
        stored = {
            row.key: load_record(row.vals, row.stamps)
            for row in self._store.records(collection, [r.key for r in records])
        }
        if self._texts.any_stale(collection):
            for key, fields in stored.items():
                self._texts.current(collection, key, fields)
        for record in records:  # every kind is checked before the stamp is issued
            current = stored.get(record.key)
            for name in record.names if current else ():
                if name in current and current[name].kind != "lww":
                    raise KindMismatchError(name, current[name].kind, "lww")
        batch = _Batch(self._clock)
        self._stage_new(batch, collection, [r for r in records if r.key not in stored and r.names])
        for record in records:
            if record.key in stored:
                texts = record.field_texts()
                self._stage_lww(batch, collection, record.key, texts, stored[record.key])
        return self._store_batch(collection, batch)

    def delete(self, collection: str, key: str) -> list[ChangeEvent]:
        batch = _Batch(self._clock)
        self._stage_lww(batch, collection, key, {DELETED_FIELD: TRUE}, self._load(collection, key))
        return self._store_batch(collection, batch)

    def text_edit(
        self, collection: str, key: str, field: str, ops: Sequence[TextOp]
    ) -> list[ChangeEvent]:
        """Apply `ops` to the field's document in one write (see `Replica.text_edits`).

        A new field is created by its first op, which must insert at 0
        without deleting: that text becomes `initial_text_update`. An edit
        appends its own update with its stamp (`replica.texts`). When the
        record is live and its row already lags behind the field, that and the
        outbox row are all it writes (the path of every keystroke but the
        first after a compaction); otherwise the record row is written too,
        with `STALE` for the text.
        """
        ref = (collection, key, field)
        if self._texts.is_stale(ref) and self._store.text_row_flags(*ref) == (False, "crdt"):
            return self._append_edit(ref, ops)
        current = self._load(collection, key)
        cur = current.get(field)
        if cur is not None and cur.kind != "crdt":
            raise KindMismatchError(field, cur.kind, "crdt")
        doc = None if cur is None else self._texts.doc(ref)
        initial = None
        if doc is None:
            if not ops or ops[0][:2] != (0, 0):
                raise IndexError(f"text field {field!r} of {collection}/{key} is empty")
            initial = initial_text_update(FieldRef(*ref), ops[0][2])
            doc = self._texts.create(ref, initial)  # its record row holds its text
            ops = ops[1:]
        edit = doc.edit(ops) if ops else b""
        if not edit and initial is None:
            return []  # nothing changed (e.g. an empty insert)
        batch = _Batch(self._clock)
        stamp, base = batch.stamp.text, None if cur is None else cur.stamp
        fields = dict(current)
        fields[field] = StoredField("crdt", STALE if edit else value_text(doc.text), stamp, base)
        update = join_updates(initial, edit) if initial and edit else initial or edit
        batch.entries.append(self._crdt_row(collection, key, field, stamp, base, update))
        batch.events.append(ChangeEvent(collection, key, frozenset({field}), "local"))
        self._stage_lww(batch, collection, key, {}, fields, always_write=True)
        events = self._store_batch(collection, batch)
        if edit:
            self._texts.appended(ref, [edit], stamp, base)  # after the row: it may compact
        return events

    def _append_edit(self, ref: tuple[str, str, str], ops: Sequence[TextOp]) -> list[ChangeEvent]:
        """The lean path of `text_edit`: an update row and an outbox row."""
        collection, key, field = ref
        doc = self._texts.doc(ref)
        assert doc is not None  # a stale field has a document
        edit = doc.edit(ops)
        if not edit:
            return []
        stamp = str(self._clock.now())
        base = self._texts.latest_stamp(ref)
        self._store.append_outbox([self._crdt_row(collection, key, field, stamp, base, edit)])
        self._texts.appended(ref, [edit], stamp, base)
        return [ChangeEvent(collection, key, frozenset({field}), "local")]

    def _crdt_row(
        self, collection: str, key: str, field: str, stamp: str, base: str | None, update: bytes
    ) -> OutboxRow:
        bases = None if base is None else object_text({key: object_text({field: f'"{base}"'})})
        fields = object_text({key: object_text({field: None})})
        return self._outbox.row(collection, "crdt", stamp, fields, 1, bases, update)

    def _load(self, collection: str, key: str) -> dict[str, StoredField]:
        row = self._store.record(collection, key)
        if row is None:
            return {}
        fields = load_record(row.vals, row.stamps)
        self._texts.current(collection, key, fields)
        return fields

    def _stage_new(self, batch: _Batch, collection: str, records: list[EncodedRecord]) -> None:
        """Records that were never stored: each encoded text is both row and outbox part.

        The hot loop of a batch import, kept tight; records of one batch mostly
        share their field names, so their stamps text is built once per shape.
        """
        if not records:
            return
        stamp = batch.stamp.text
        shapes: dict[tuple[str, ...], str] = {}
        rows, events = batch.rows, batch.events
        for record in records:
            names = record.names
            stamps = shapes.get(names)
            if stamps is None:
                stamps = shapes[names] = new_row_stamps(names, stamp)
            rows.append(RecordRow(record.key, record.text, stamps))
            batch.add_lww(record.key, record.text, len(names), {})
            events.append(ChangeEvent(collection, record.key, frozenset(names), "local"))

    def _stage_lww(
        self,
        batch: _Batch,
        collection: str,
        key: str,
        texts: Mapping[str, str],
        current: Mapping[str, StoredField],
        *,
        always_write: bool = False,
    ) -> None:
        """Stage the LWW fields that change (the caller checked none is a CRDT field).

        `always_write` stores the record even if no LWW field changes (a text
        edit staged its CRDT field into `current` already).
        """
        tomb = current.get(DELETED_FIELD)
        if tomb is not None and tomb.value == TRUE and DELETED_FIELD not in texts:
            texts = {**texts, DELETED_FIELD: FALSE}
        changed = {
            name: text
            for name, text in texts.items()
            if name not in current or current[name].value != text  # text equality is canonical
        }
        if not changed and not always_write:
            return
        fields = dict(current)
        if changed:
            stamp = batch.stamp.text
            bases = {name: current[name].stamp for name in changed if name in current}
            for name, text in changed.items():
                fields[name] = StoredField("lww", text, stamp, bases.get(name))
            batch.add_lww(key, object_text(changed), len(changed), bases)
            batch.events.append(ChangeEvent(collection, key, frozenset(changed), "local"))
        batch.rows.append(RecordRow(key, *dump_record(fields)))

    def _store_batch(self, collection: str, batch: _Batch) -> list[ChangeEvent]:
        for lww in batch.lww_rows:
            fields = "{" + ",".join(lww.members) + "}"
            bases = json.dumps(lww.bases) if lww.bases else None
            row = self._outbox.row(collection, "lww", batch.stamp.text, fields, lww.count, bases)
            batch.entries.append(row)
        self._store.write_records(collection, batch.rows)
        self._store.append_outbox(batch.entries)
        return batch.events
