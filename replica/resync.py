"""Resync: what a replica does when the server cannot continue its cursor.

The server answers a pull (or a live socket) with ``409 resync`` when the
replica's cursor means nothing there (``docs/protocol.md``, "Resync"). The
replica starts over from cursor 0 in the server's history, and first does
what the reason calls for:

* **the server lost writes** (``history_changed``: restored from a backup or
  reset; ``cursor_ahead``: it went back in time): `requeue_all` queues every
  field the replica holds as a fresh mutation, with its own stamp and base,
  and pushes them. Merging is by stamps, so what the server still holds makes
  these duplicates or losers that saw the winner, identical content is
  suppressed, and what it lost comes back: nothing acknowledged is lost and
  no conflict is invented (a conflict the server reports again is one it had
  reported before, and the replica stores each once).
* **the server removed deletes the replica may not have seen**
  (``cursor_too_old``: compaction dropped records deleted long ago): a
  *sweep*. Every record is marked (`begin_sweep`), each record the pull from
  0 delivers is unmarked (`note_seen`), and once the pull is complete the
  records still marked, which the server no longer has, are dropped
  (`finish_sweep`), unless a local write to them is still pending (it is
  pushed, and recreates the record). Requeueing here would resurrect them.

Each space resyncs alone (its own cursor, `replica.spaces`): every function
takes the range of stored collection names of the space concerned.

Must not import `quietsync.server`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from quietsync.protocol import Change
from quietsync.replica.layout import StoredField, json_string, load_record, object_text
from quietsync.replica.outbox import Outbox
from quietsync.replica.spaces import CollectionRange
from quietsync.replica.store import OutboxRow, RecordRow, Store
from quietsync.replica.subscriptions import ChangeEvent
from quietsync.replica.texts import TextFields

__all__ = [
    "REQUEUE",
    "SWEEP",
    "begin_sweep",
    "drop_record",
    "finish_sweep",
    "note_seen",
    "requeue_all",
]

REQUEUE = frozenset({"history_changed", "cursor_ahead"})
"""Resync reasons that mean the server may have lost acknowledged writes."""
SWEEP = frozenset({"cursor_too_old"})
"""Resync reasons that mean the server removed deletes the replica may have missed."""


def requeue_all(store: Store, texts: TextFields, outbox: Outbox, within: CollectionRange) -> int:
    """Queue every stored field as a fresh mutation (stamp and base kept); how many.

    One outbox row per record and stamp (a row holds one stamp), in key
    order; a CRDT field carries its whole Yjs state as its update.
    """
    queued = 0
    for collection in store.collections(within):
        rows: list[OutboxRow] = []
        for record in store.scan(collection):
            by_stamp: dict[str, dict[str, StoredField]] = {}
            fields = load_record(record.vals, record.stamps)
            texts.current(collection, record.key, fields)  # a lagging row's text fields
            for name, field in fields.items():
                if field.kind == "crdt":
                    state = texts.state((collection, record.key, name)) or b"\x00\x00"
                    rows.append(_row(outbox, collection, record.key, {name: field}, state))
                else:
                    by_stamp.setdefault(field.stamp, {})[name] = field
            rows += [_row(outbox, collection, record.key, f, None) for f in by_stamp.values()]
        store.append_outbox(rows)
        queued += sum(row.count for row in rows)
    return queued


def _row(
    outbox: Outbox,
    collection: str,
    key: str,
    fields: dict[str, StoredField],
    update: bytes | None,
) -> OutboxRow:
    """An outbox row of one record's `fields`, which share one stamp."""
    crdt = update is not None
    values = {name: None if crdt else field.value for name, field in fields.items()}
    bases = {name: field.base for name, field in fields.items() if field.base is not None}
    stamp = next(iter(fields.values())).stamp
    return outbox.row(
        collection,
        "crdt" if crdt else "lww",
        stamp,
        "{" + f"{json_string(key)}:{object_text(values)}" + "}",
        len(fields),
        json.dumps({key: bases}) if bases else None,
        update,
    )


def begin_sweep(store: Store, within: CollectionRange) -> None:
    """Mark every record of the space: the server has sent none of them yet."""
    store.sweep_begin(within)


def note_seen(store: Store, changes: Iterable[Change]) -> None:
    """Unmark the records these pulled changes belong to: the server has them."""
    keys: dict[str, set[str]] = {}
    for change in changes:
        keys.setdefault(change.collection, set()).add(change.key)
    for collection, seen in keys.items():
        store.sweep_seen(collection, seen)


def finish_sweep(
    store: Store, texts: TextFields, outbox: Outbox, within: CollectionRange
) -> list[ChangeEvent]:
    """Drop the space's records still marked (the server removed them), unless a write
    is pending."""
    pending = outbox.pending_keys()
    events = []
    for collection, key in store.sweep_left(within):
        row = store.record(collection, key)
        if row is None or (collection, key) in pending:
            continue
        events.append(drop_record(store, texts, collection, row))
    store.sweep_end(within)
    return events


def drop_record(store: Store, texts: TextFields, collection: str, row: RecordRow) -> ChangeEvent:
    """Remove a record and its text fields without a trace (no tombstone, nothing queued).

    For records the server no longer has for this replica: swept after a
    resync, or purged with their space (`SyncPort.purge`).
    """
    fields = load_record(row.vals, row.stamps)
    for name, field in fields.items():
        if field.kind == "crdt":
            texts.drop((collection, row.key, name))
    store.drop_record(collection, row.key)
    return ChangeEvent(collection, row.key, frozenset(fields), "remote")
