"""Local writes: how a put, a delete or a text edit becomes field rows and outbox entries.

The policy of the replica's own writes (see `replica.replica` for the
invariants it serves):

* one stamp per write call, issued only if the call changes a field: stamps
  need only be unique per field, and a call writes each field at most once;
* a field's `base` is its stamp in the replica at write time (None if new);
* a value canonical-equal to the stored one is not written at all;
* any write to a deleted record also writes the tombstone back to ``False``;
* the first insert into a new text field is `initial_text_update`, so equal
  initial texts written by two replicas are one and the same update.

`LocalWriter` only stages and stores rows; the caller holds the transaction
(everything a call stages is written in it, or nothing is).

Must not import `server`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from conflicts import (
    DELETED_FIELD,
    Clock,
    CrdtText,
    FieldRef,
    KindMismatchError,
    check_name,
    initial_text_update,
)
from replica.outbox import Outbox
from replica.records import FALSE, TRUE, encode_json, yjs_client_id
from replica.store import FieldRow, OutboxRow, Store
from replica.subscriptions import ChangeEvent

__all__ = ["EncodedFields", "LocalWriter", "TextEdit", "encode_fields"]

EncodedFields = list[tuple[str, str]]
"""``(field, canonical JSON text)`` pairs, checked before any transaction opens."""
TextEdit = Callable[[CrdtText], bytes]


def encode_fields(key: str, fields: Mapping[str, Any]) -> EncodedFields:
    """Check names and encode values; `TypeError` names a value that is not JSON."""
    if not isinstance(fields, Mapping):
        raise TypeError(f"fields of {key!r} must be a mapping, got {type(fields).__name__}")
    encoded = []
    for name, value in fields.items():
        check_name("field", name)
        if name == DELETED_FIELD:
            raise ValueError(f"{DELETED_FIELD!r} is the tombstone field: use delete()")
        encoded.append((name, encode_json(f"field {name!r} of record {key!r}", value)))
    return encoded


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


class _Batch:
    """Rows, outbox entries and events staged by one call."""

    def __init__(self, clock: Clock) -> None:
        self.stamp = _CallStamp(clock)
        self.rows: list[FieldRow] = []
        self.entries: list[OutboxRow] = []
        self.events: list[ChangeEvent] = []


class LocalWriter:
    """Stages and stores this replica's own writes (see the module docstring)."""

    def __init__(self, store: Store, clock: Clock, outbox: Outbox, node_id: str) -> None:
        self._store = store
        self._clock = clock
        self._outbox = outbox
        self._client_id = yjs_client_id(node_id)

    def put_many(
        self, collection: str, records: Sequence[tuple[str, EncodedFields]]
    ) -> list[ChangeEvent]:
        current: dict[str, dict[str, FieldRow]] = {key: {} for key, _ in records}
        for row in self._store.records(collection, list(current)):
            current[row.key][row.field] = row
        for key, fields in records:  # every kind is checked before the stamp is issued
            for name, _ in fields:
                if name in current[key] and current[key][name].kind != "lww":
                    raise KindMismatchError(name, current[key][name].kind, "lww")
        batch = _Batch(self._clock)
        for key, fields in records:
            self._stage_lww(batch, collection, key, fields, current[key])
        return self._store_batch(batch)

    def delete(self, collection: str, key: str) -> list[ChangeEvent]:
        tomb = self._store.field(collection, key, DELETED_FIELD)
        current = {} if tomb is None else {DELETED_FIELD: tomb}
        batch = _Batch(self._clock)
        self._stage_lww(batch, collection, key, [(DELETED_FIELD, TRUE)], current)
        return self._store_batch(batch)

    def text_edit(
        self, collection: str, key: str, field: str, edit: TextEdit, initial: str | None
    ) -> list[ChangeEvent]:
        """Apply `edit` to the stored document, or create it with `initial` if there is none."""
        current = {row.field: row for row in self._store.record(collection, key)}
        cur = current.get(field)
        if cur is not None and cur.kind != "crdt":
            raise KindMismatchError(field, cur.kind, "crdt")
        if cur is None:
            if initial is None:
                raise IndexError(f"text field {field!r} of {collection}/{key} is empty")
            update = state = initial_text_update(FieldRef(collection, key, field), initial)
        else:
            doc = CrdtText(cur.state, client_id=self._client_id)
            update = edit(doc)
            state = doc.state()
        batch = _Batch(self._clock)
        stamp, base = batch.stamp.text, None if cur is None else cur.stamp
        batch.rows.append(FieldRow(collection, key, field, "crdt", None, state, stamp, base))
        batch.entries.append(
            self._outbox.entry(collection, key, field, "crdt", stamp, base, update=update)
        )
        batch.events.append(ChangeEvent(collection, key, frozenset({field}), "local"))
        self._stage_lww(batch, collection, key, [], current)  # revives a deleted record
        return self._store_batch(batch)

    def _stage_lww(
        self,
        batch: _Batch,
        collection: str,
        key: str,
        fields: EncodedFields,
        current: Mapping[str, FieldRow],
    ) -> None:
        """Stage the LWW fields that change (the caller checked none is a CRDT field)."""
        tomb = current.get(DELETED_FIELD)
        if tomb is not None and tomb.value == TRUE and all(n != DELETED_FIELD for n, _ in fields):
            fields = [*fields, (DELETED_FIELD, FALSE)]
        changed = set()
        for name, text in fields:
            cur = current.get(name)
            if cur is not None and cur.value == text:  # equal canonical text == canonical_equal
                continue
            stamp, base = batch.stamp.text, None if cur is None else cur.stamp
            batch.rows.append(FieldRow(collection, key, name, "lww", text, None, stamp, base))
            batch.entries.append(
                self._outbox.entry(collection, key, name, "lww", stamp, base, value=text)
            )
            changed.add(name)
        if changed:
            batch.events.append(ChangeEvent(collection, key, frozenset(changed), "local"))

    def _store_batch(self, batch: _Batch) -> list[ChangeEvent]:
        self._store.write_fields(batch.rows)
        self._store.append_outbox(batch.entries)
        return batch.events
