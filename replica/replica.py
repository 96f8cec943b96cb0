"""`Replica`: the local, durable copy of a user's records, and the only door to it.

The facade: lifecycle, transactions, reads, the outbox and conflict log for
the sync client, subscriptions. Local write policy lives in `replica.local`,
the merge of remote changes in `replica.remote`, rows in `replica.store`.
The invariants they keep together:

1. **Acknowledged means durable.** Every local write is one transaction: the
   new field values with their stamps, and outbox rows holding one mutation
   per changed field.
   When `put()` returns, the write survives a killed process.
2. **Stamps only grow.** Local writes are stamped by the replica's `Clock`; the
   clock's high-water mark and the last mutation number are persisted in the
   same transaction, so a reopened replica never reissues a stamp or an id.
3. **A write records what it saw.** Its `base` is the field's stamp in the
   replica at write time (None if the field was never written), which is what
   lets the server tell a conflict from an update.
4. **No-op writes are not writes.** A put whose value is canonical-equal to
   the stored one issues no stamp and no outbox entry: pushing what the
   server already holds would only create suppressed noise. A call that does
   write stamps all its fields with one fresh stamp.
5. **Remote changes merge by the core's laws.** `apply_remote` keeps each
   LWW field's highest stamp (laws 1-2 of `conflicts.lww`, see
   `replica.remote`) and merges CRDT text with `merge_text_updates`, and
   stores the pull cursor in the same transaction; it never reports conflicts
   (the server reports each once, for everybody). A stamp too far ahead
   refuses the whole call, which then changes nothing.
6. **Subscribers hear about committed changes only**, after the outermost
   transaction commits; a failing subscriber never undoes a write.

Deletion is the LWW tombstone field ``_deleted`` (`conflicts.DELETED_FIELD`);
any later local write to the record (a put or a text edit) revives it by
writing ``_deleted: False``. The other fields stay stored under a tombstone.

Must not import `server`.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from os import PathLike
from pathlib import Path
from typing import Any

from quietsync.conflicts import (
    HLC,
    Clock,
    Conflict,
    KindMismatchError,
    canonical_json,
    validate_node_id,
    wall_clock_ms,
)
from quietsync.protocol import DELETED_FIELD, KINDS, Change, Mutation, check_name
from quietsync.replica.errors import NodeIdMismatchError, ReplicaClosedError
from quietsync.replica.layout import StoredField, dump_record, load_record
from quietsync.replica.local import LocalWriter, TextEdit, encode_records
from quietsync.replica.lockfile import LockFile
from quietsync.replica.outbox import Outbox, RefusedMutation
from quietsync.replica.records import FieldState, decode_records, encode_json, field_state
from quietsync.replica.remote import merge_changes
from quietsync.replica.store import RecordRow, SqliteStore, Store
from quietsync.replica.subscriptions import Callback, ChangeEvent, Subscriptions, Unsubscribe

__all__ = ["Replica"]


class Replica:
    """A local replica file, opened by `Replica.open`; see the module docstring."""

    def __init__(self, store: Store, lock: LockFile, node_id: str, clock: Clock) -> None:
        self._store = store
        self._lock = lock
        self._clock = clock
        self._outbox = Outbox(store, node_id, int(store.meta().get("mutation_n", "0")))
        self._subs = Subscriptions()
        self._outbox_listeners: list[Callable[[], object]] = []
        self._events: list[ChangeEvent] = []
        self._writer = LocalWriter(store, clock, self._outbox, node_id)
        # The last mutation number queued before the latest `apply_remote` (every
        # pending one, at open): see `held_by_others`. Too high is only slower.
        self._remote_mark = self._outbox.last_n
        self._closed = False
        self.node_id = node_id

    # -- lifecycle -------------------------------------------------------------

    @classmethod
    def open(
        cls,
        path: str | PathLike[str],
        *,
        node_id: str | None = None,
        max_drift_ms: int = 60_000,
        wall: Callable[[], int] = wall_clock_ms,
    ) -> Replica:
        """Create or reopen the replica at `path` (see `replica.errors` for refusals).

        The node id is generated once and stored; passing a different one for
        an existing file is a `NodeIdMismatchError`. `wall` is the clock's
        source of milliseconds: tests give a replica a skewed clock with it.
        """
        if node_id is not None:
            validate_node_id(node_id)
        path = Path(path)
        lock = LockFile.acquire(path)
        try:
            store = SqliteStore.open(path)
        except BaseException:
            lock.release()
            raise
        try:
            meta = store.meta()
            stored = meta.get("node_id")
            if stored is None:
                stored = node_id or f"n{secrets.token_hex(8)}"
                with store.transaction():
                    store.set_meta({"node_id": stored})
            elif node_id is not None and node_id != stored:
                raise NodeIdMismatchError(path, stored, node_id)
            last = HLC.parse(meta["clock"]) if "clock" in meta else None
            clock = Clock(stored, max_drift_ms=max_drift_ms, wall=wall, last=last)
        except BaseException:
            store.close()
            lock.release()
            raise
        return cls(store, lock, stored, clock)

    def close(self) -> None:
        """Close the file and release it for the next owner; closing twice is harmless."""
        if not self._closed:
            self._closed = True
            self._store.close()
            self._lock.release()

    def __enter__(self) -> Replica:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def path(self) -> Path:
        return self._store.path

    @property
    def clock(self) -> Clock:
        return self._clock

    @property
    def closed(self) -> bool:
        return self._closed

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Group several calls into one atomic transaction (nesting is allowed).

        Subscribers hear about the changes after the outermost commit; on an
        exception nothing inside is kept and nobody is notified.
        """
        if self._closed:
            raise ReplicaClosedError(f"replica {self.path} is closed")
        outer = not self._store.in_transaction
        mark = len(self._events)
        last_n = self._outbox.last_n
        try:
            with self._store.transaction():
                yield
                if outer:
                    self._store.set_meta(
                        {"clock": str(self._clock.last), "mutation_n": str(self._outbox.last_n)}
                    )
        except BaseException:
            del self._events[mark:]
            raise
        if outer:
            events, self._events = self._events, []
            self._subs.notify(events)
            if self._outbox.last_n != last_n:
                for listener in list(self._outbox_listeners):
                    listener()

    def _reading(self) -> Store:
        if self._closed:
            raise ReplicaClosedError(f"replica {self.path} is closed")
        return self._store

    # -- records ---------------------------------------------------------------

    def put(self, collection: str, key: str, fields: Mapping[str, Any]) -> None:
        """Merge `fields` into the record, each field stamped; one transaction."""
        self.put_many(collection, {key: fields})

    def put_many(self, collection: str, records: Mapping[str, Mapping[str, Any]]) -> None:
        """`put` for many records of one collection, in one transaction.

        Every value is checked before anything is written: a value that is not
        JSON is a `TypeError` naming it, and nothing is written.
        """
        check_name("collection", collection)
        encoded = encode_records(records)
        with self.transaction():
            self._events += self._writer.put_many(collection, encoded)

    def delete(self, collection: str, key: str) -> None:
        """Delete the record (a tombstone that syncs like any field write)."""
        check_name("collection", collection)
        check_name("key", key)
        with self.transaction():
            self._events += self._writer.delete(collection, key)

    def get(self, collection: str, key: str) -> dict[str, Any] | None:
        """The record's fields (CRDT text as a plain string); None if absent or deleted."""
        row = self._reading().record(collection, key)
        return None if row is None else decode_records([row.vals])[0]

    def keys(
        self,
        collection: str,
        where: Mapping[str, Any] | None = None,
        order_by: str | None = None,
        limit: int | None = None,
    ) -> list[str]:
        """The keys of the records `query()` returns, in the same order."""
        return [key for key, _ in self._select(collection, where, order_by, limit)]

    def query(
        self,
        collection: str,
        where: Mapping[str, Any] | None = None,
        order_by: str | None = None,
        limit: int | None = None,
    ) -> list[dict[str, Any]]:
        """Live records whose LWW fields equal `where`, sorted by `order_by`, at most `limit`.

        Equality is canonical (``1 == 1.0``, key order irrelevant); a record
        without a `where` field does not match, and a CRDT text field matches
        its current text. The first query on a `where` field builds an index
        on it (kept in the file), so later ones are one index range scan: a
        thread's 1,000 messages out of 100k records in a few milliseconds.
        Field names holding ``"``, ``\\`` or a control character cannot be queried
        (`ValueError`).
        """
        rows = self._select(collection, where, order_by, limit)
        decoded = decode_records([vals for _, vals in rows])
        return [record for record in decoded if record is not None]

    def _select(
        self,
        collection: str,
        where: Mapping[str, Any] | None,
        order_by: str | None,
        limit: int | None,
    ) -> list[tuple[str, str]]:
        conds = [(f, encode_json(f"where {f!r}", v)) for f, v in (where or {}).items()]
        if limit is not None and limit < 0:
            raise ValueError(f"limit must be >= 0, got {limit}")
        store = self._reading()
        return store.select(collection, conds, order_by, -1 if limit is None else limit)

    def field_state(self, collection: str, key: str, field: str) -> FieldState | None:
        """The stored winner of one field (the stream tracker compares stamps with it)."""
        row = self._reading().record(collection, key)
        stored = None if row is None else load_record(row.vals, row.stamps).get(field)
        return None if stored is None else self._field_state(collection, key, field, stored)

    def _field_state(
        self, collection: str, key: str, field: str, stored: StoredField
    ) -> FieldState:
        crdt = stored.kind == "crdt"
        state = self._store.text_state(collection, key, field) if crdt else None
        return field_state(stored, state)

    # -- CRDT text ---------------------------------------------------------------

    def text_insert(self, collection: str, key: str, field: str, index: int, text: str) -> None:
        """Insert `text` at `index` of a CRDT text field (created on first insert).

        The first insert into a new field creates it deterministically
        (`initial_text_update`), so two replicas initialising it with the same
        text converge to one copy, not two.
        """
        if not isinstance(text, str):
            raise TypeError(f"text to insert must be a str, got {type(text).__name__}")
        if text:
            initial = text if index == 0 else None  # a new field starts empty
            self._text_edit(collection, key, field, lambda doc: doc.insert(index, text), initial)

    def text_delete(self, collection: str, key: str, field: str, index: int, length: int) -> None:
        """Delete `length` characters at `index` of a CRDT text field."""
        if length:
            self._text_edit(collection, key, field, lambda doc: doc.delete(index, length), None)

    def _text_edit(
        self, collection: str, key: str, field: str, edit: TextEdit, initial: str | None
    ) -> None:
        check_name("collection", collection)
        check_name("key", key)
        check_name("field", field)
        if field == DELETED_FIELD:
            raise ValueError(f"{DELETED_FIELD!r} is the tombstone field, not text")
        with self.transaction():
            self._events += self._writer.text_edit(collection, key, field, edit, initial)

    # -- remote changes ------------------------------------------------------------

    def apply_remote(
        self, changes: Iterable[Change], cursor: int | None = None
    ) -> list[ChangeEvent]:
        """Merge pulled changes (or mirror writes, ``seq=None``) and store `cursor`, atomically.

        Returns one event per record whose content changed (subscribers get the
        same, after commit). Any refusal (a stamp more than the clock's
        `max_drift_ms` ahead: `ClockDriftError`; a kind mismatch; bad CRDT
        bytes) changes nothing, not even the cursor.
        """
        changes = list(changes)
        bound = self._clock.drift_bound()  # one wall clock read for the whole call
        for change in changes:
            if not isinstance(change, Change):
                raise TypeError(f"apply_remote takes Change objects, got {type(change).__name__}")
            if change.kind not in KINDS:
                raise ValueError(f"change {change.id!r} has unknown kind {change.kind!r}")
            if change.field == DELETED_FIELD and change.kind != "lww":
                raise KindMismatchError(DELETED_FIELD, "lww", change.kind)
            if change.stamp.wall_ms > bound:
                self._clock.check_drift(change.stamp)  # refuses it (or the clock moved on)
        if cursor is not None and (type(cursor) is not int or cursor < 0):
            raise ValueError(f"cursor must be a non-negative int, got {cursor!r}")
        if changes:
            self._remote_mark = self._outbox.last_n
        with self.transaction():
            events = merge_changes(self._store, changes)
            if changes:  # observing the highest stamp leaves the clock where all would
                self._clock.observe(max(change.stamp for change in changes))
            if cursor is not None:
                self._store.set_meta({"cursor": str(cursor)})
            self._events.extend(events)
        return events

    @property
    def cursor(self) -> int:
        """The pull cursor stored by the last `apply_remote` that carried one (0: none yet)."""
        return int(self._reading().meta().get("cursor", "0"))

    # -- outbox (for the sync client) ------------------------------------------

    def outbox_batch(self, limit: int = 100) -> list[Mutation]:
        """The oldest pending mutations, in write order (refused ones never return)."""
        self._reading()
        return self._outbox.batch(limit)

    def mark_pushed(self, ids: Iterable[str]) -> int:
        """Remove mutations the server acknowledged; returns how many were pending."""
        with self.transaction():
            return self._outbox.mark_pushed(ids)

    def mark_refused(self, mutation_id: str, reason: str) -> None:
        """Set a mutation aside for good with the server's reason (see `refused()`)."""
        with self.transaction():
            self._outbox.mark_refused(mutation_id, reason)

    def held_by_others(self, mutations: Sequence[Mutation]) -> dict[str, FieldState]:
        """For each mutation whose field now holds another node's write, that write (by id).

        The sync client's check of what the server already holds. Only a
        remote change applied after a mutation was queued can put another
        node's write into its field, so mutations queued since the last
        `apply_remote` are answered without reading anything; the others
        cost one query per collection.
        """
        store = self._reading()
        by_collection: dict[str, list[Mutation]] = {}
        for m in mutations:
            if self._outbox.number(m.id) <= self._remote_mark:
                by_collection.setdefault(m.collection, []).append(m)
        found: dict[str, FieldState] = {}
        for collection, group in by_collection.items():
            rows = {r.key: r for r in store.records(collection, sorted({m.key for m in group}))}
            stamps = {key: json.loads(row.stamps) for key, row in rows.items()}  # all most need
            for m in group:
                entry = stamps.get(m.key, {}).get(m.field)
                if entry is None or entry[0] == str(m.stamp):
                    continue
                stored = load_record(rows[m.key].vals, rows[m.key].stamps)[m.field]
                state = self._field_state(collection, m.key, m.field, stored)
                if state.write.stamp.node != self.node_id:
                    found[m.id] = state
        return found

    def forget_field(self, collection: str, key: str, field: str) -> bool:
        """Drop a field's local state without writing anything (no stamp, no outbox entry).

        For the sync client only: after the server refused a field's kind, the
        local field (created locally, so it holds nothing from the server) must
        give way to the server's version, which the next pull brings. Pending
        entries of the field stay queued. True if there was such a field.
        """
        with self.transaction():
            dropped = self._drop_field(collection, key, field)
            if dropped:
                self._events.append(ChangeEvent(collection, key, frozenset({field}), "remote"))
            return dropped

    def _drop_field(self, collection: str, key: str, field: str) -> bool:
        row = self._store.record(collection, key)
        fields = {} if row is None else load_record(row.vals, row.stamps)
        if fields.pop(field, None) is None:
            return False
        self._store.drop_text_state(collection, key, field)
        if fields:
            self._store.write_records(collection, [RecordRow(key, *dump_record(fields))])
        else:
            self._store.drop_record(collection, key)
        return True

    def refused(self) -> list[RefusedMutation]:
        self._reading()
        return self._outbox.refused()

    def pending_count(self) -> int:
        self._reading()
        return self._outbox.pending_count()

    def on_outbox(self, listener: Callable[[], object]) -> Unsubscribe:
        """Call `listener()` after each commit that added outbox entries (the sync client's cue).

        One listener for every collection, so a live sync client pushes soon
        after any local write without subscribing to collections it cannot know.
        """
        self._outbox_listeners.append(listener)

        def unsubscribe() -> None:
            if listener in self._outbox_listeners:
                self._outbox_listeners.remove(listener)

        return unsubscribe

    # -- conflict log ----------------------------------------------------------

    def record_conflicts(self, conflicts: Iterable[Conflict]) -> int:
        """Store conflicts the server reported, each once; returns how many were new."""
        bodies = [canonical_json(c.to_json()) for c in conflicts]
        with self.transaction():
            return self._store.add_conflicts(bodies)

    def conflicts(self) -> list[Conflict]:
        """Every conflict recorded, oldest first."""
        return [Conflict.from_json(json.loads(b)) for b in self._reading().conflicts()]

    def add_suppressed(self, count: int) -> None:
        """Add identical-content events the server counted (and did not report)."""
        if type(count) is not int or count < 0:
            raise ValueError(f"count must be a non-negative int, got {count!r}")
        with self.transaction():
            total = self.suppressed_count() + count
            self._store.set_meta({"suppressed": str(total)})

    def suppressed_count(self) -> int:
        return int(self._reading().meta().get("suppressed", "0"))

    # -- subscriptions ---------------------------------------------------------

    def subscribe(
        self, collection: str, callback: Callback, *, key: str | None = None
    ) -> Unsubscribe:
        """Call `callback(ChangeEvent)` after each commit that changes a matching record."""
        return self._subs.subscribe(collection, callback, key=key)
