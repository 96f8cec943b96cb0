"""`SyncPort`: what the sync machinery needs from a replica, kept off the app's API.

The sync client and the stream tracker get one with `sync_port(replica)`
(`quietsync.replica.replica`); an app never needs it. Through it they read
the outbox, record what the server answered, and merge remote changes:

1. **Remote changes merge by the core's laws.** `apply_remote` keeps each
   LWW field's highest stamp (laws 1-2 of `quietsync.conflicts.lww`, see
   `quietsync.replica.remote`) and merges CRDT text with
   `merge_text_updates`, and stores the pull cursor in the same transaction;
   it never reports conflicts (the server reports each once, for everybody).
   A stamp too far ahead refuses the whole call, which then changes nothing.
2. **Removed only when answered.** `mark_pushed` removes what the server
   acknowledged; `mark_refused` sets a mutation aside for good, with the
   server's reason (`Replica.refused()` lists them).
3. **Server reports land once.** `record_conflicts` stores each conflict
   once, whether a push answer or the user's conflict log brought it
   (`record_conflict_page` also moves the replica's position in that log,
   `quietsync.replica.conflict_feed`); `add_suppressed` counts
   identical-content events.
4. **A cursor belongs to a history.** The server history the cursor was
   pulled in is stored with it (`history`); when the server cannot continue
   the cursor, `restart` starts over from 0 in the server's history, after
   requeueing every field or while sweeping records the server removed
   (`quietsync.replica.resync`).
5. **One port, one space.** A port is bound to one space (`space`; the
   private one by default): its cursor, history, conflict position, sweep,
   outbox batches and remote changes are that space's alone, and the names
   it hands out and takes in are the space's own collection names (the
   stored, qualified ones stay inside: `quietsync.replica.spaces`). Outbox
   acknowledgements go by mutation id, which is unique across spaces.
6. **A space lost is purged, its writes set aside.** `purge` removes a
   shared space's records, texts, conflicts and sync state, and moves its
   pending writes to `Replica.refused()` with the reason given: never
   silently lost.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager

import attrs

from quietsync.conflicts import Clock, Conflict, KindMismatchError, canonical_json
from quietsync.protocol import DELETED_FIELD, KINDS, Change, Mutation
from quietsync.replica import resync
from quietsync.replica.core import ReplicaCore
from quietsync.replica.layout import StoredField, dump_record, load_record, value_text
from quietsync.replica.records import FieldState, field_state
from quietsync.replica.remote import merge_changes
from quietsync.replica.spaces import (
    PRIVATE,
    SHARED,
    SpaceKey,
    collection_range,
    meta_key,
    qualify,
    unqualify,
)
from quietsync.replica.store import RecordRow
from quietsync.replica.subscriptions import ChangeEvent, Unsubscribe

__all__ = ["SyncPort"]

_SYNC_STATE = ("cursor", "history", "sweep", "conflict_position", "conflict_history")
"""The meta names of a space's sync state (`replica.spaces.meta_key` scopes them)."""


class SyncPort:
    """The sync side of one replica's space `space` (see the module docstring)."""

    def __init__(self, core: ReplicaCore, space: SpaceKey = PRIVATE) -> None:
        self._core = core
        self.space = space
        self._range = collection_range(space)

    def _meta(self, name: str) -> str:
        return meta_key(self.space, name)

    def _stored(self, collection: str) -> str:
        return qualify(self.space, collection)

    @property
    def node_id(self) -> str:
        return self._core.node_id

    @property
    def clock(self) -> Clock:
        return self._core.clock

    @property
    def closed(self) -> bool:
        return self._core.closed

    def transaction(self) -> AbstractContextManager[None]:
        return self._core.transaction()

    def pending_count(self) -> int:
        self._core.reading()
        return self._core.outbox.pending_count()

    # -- remote changes ------------------------------------------------------------

    def apply_remote(
        self, changes: Iterable[Change], cursor: int | None = None, history: str | None = None
    ) -> list[ChangeEvent]:
        """Merge pulled changes (or mirror writes, ``seq=None``) and store `cursor`, atomically.

        `history` is the server history the cursor belongs to (stored with it).
        Returns one event per record whose content changed (subscribers get the
        same, after commit). Any refusal (a stamp more than the clock's
        `max_drift_ms` ahead: `ClockDriftError`; a kind mismatch; bad CRDT
        bytes) changes nothing, not even the cursor.
        """
        core = self._core
        changes = list(changes)
        bound = core.clock.drift_bound()  # one wall clock read for the whole call
        for change in changes:
            if not isinstance(change, Change):
                raise TypeError(f"apply_remote takes Change objects, got {type(change).__name__}")
            if change.kind not in KINDS:
                raise ValueError(f"change {change.id!r} has unknown kind {change.kind!r}")
            if change.field == DELETED_FIELD and change.kind != "lww":
                raise KindMismatchError(DELETED_FIELD, "lww", change.kind)
            if change.stamp.wall_ms > bound:
                core.clock.check_drift(change.stamp)  # refuses it (or the clock moved on)
        if cursor is not None and (type(cursor) is not int or cursor < 0):
            raise ValueError(f"cursor must be a non-negative int, got {cursor!r}")
        if changes:
            core.remote_mark = core.outbox.last_n
        if self.space is not None:
            changes = [attrs.evolve(c, collection=self._stored(c.collection)) for c in changes]
        with core.transaction():
            events = merge_changes(core.store, core.texts, changes)
            if changes:  # observing the highest stamp leaves the clock where all would
                core.clock.observe(max(change.stamp for change in changes))
            if cursor is not None:
                core.store.set_meta({self._meta("cursor"): str(cursor)})
            if history is not None:
                core.store.set_meta({self._meta("history"): history})
            if changes and self.sweeping:
                resync.note_seen(core.store, changes)
            core.events.extend(events)
        return events

    @property
    def cursor(self) -> int:
        """The pull cursor stored by the last `apply_remote` that carried one (0: none yet)."""
        return int(self._core.reading().meta().get(self._meta("cursor"), "0"))

    @property
    def history(self) -> str | None:
        """The server history the cursor belongs to (None: not known yet)."""
        return self._core.reading().meta().get(self._meta("history"))

    @property
    def sweeping(self) -> bool:
        """True while a resync sweeps records the server may have removed."""
        return self._core.reading().meta().get(self._meta("sweep")) == "1"

    def restart(self, history: str, reason: str) -> int:
        """Start over from cursor 0 in `history`, as resync `reason` calls for; how many
        mutations were queued again (module docstring, rule 4)."""
        core = self._core
        queued = 0
        with core.transaction():
            if reason in resync.REQUEUE:
                queued = resync.requeue_all(core.store, core.texts, core.outbox, self._range)
            elif reason in resync.SWEEP:
                resync.begin_sweep(core.store, self._range)
                core.store.set_meta({self._meta("sweep"): "1"})
            core.store.set_meta({self._meta("cursor"): "0", self._meta("history"): history})
        return queued

    def finish_sweep(self) -> list[ChangeEvent]:
        """After a complete pull from 0: drop the records the server no longer has."""
        core = self._core
        with core.transaction():
            events = resync.finish_sweep(core.store, core.texts, core.outbox, self._range)
            core.store.set_meta({self._meta("sweep"): "0"})
            core.events.extend(events)
        return events

    def field_state(self, collection: str, key: str, field: str) -> FieldState | None:
        """The stored winner of one field (the stream tracker compares stamps with it)."""
        collection = self._stored(collection)
        row = self._core.reading().record(collection, key)
        stored = None if row is None else load_record(row.vals, row.stamps).get(field)
        return None if stored is None else self._field_state(collection, key, field, stored)

    def _field_state(
        self, collection: str, key: str, field: str, stored: StoredField
    ) -> FieldState:
        if stored.kind != "crdt":
            return field_state(stored, None)
        texts, ref = self._core.texts, (collection, key, field)
        if texts.is_stale(ref):  # the row lags: text and stamp come from the updates
            fields = {field: stored}
            texts.current(collection, key, fields)
            stored = fields[field]._replace(value=value_text(texts.text(ref)))
        return field_state(stored, texts.state(ref))

    # -- the outbox ------------------------------------------------------------------

    def outbox_batch(self, limit: int = 100) -> list[Mutation]:
        """The space's oldest pending mutations, in write order (refused ones never return)."""
        self._core.reading()
        batch = self._core.outbox.batch(limit, self._range)
        if self.space is None:
            return batch
        return [attrs.evolve(m, collection=self._own(m.collection)) for m in batch]

    def _own(self, stored: str) -> str:
        """The space's own name of a collection stored under `stored`."""
        return stored[len(self._range.low) :]

    def mark_pushed(self, ids: Iterable[str]) -> int:
        """Remove mutations the server acknowledged; returns how many were pending."""
        with self._core.transaction():
            return self._core.outbox.mark_pushed(ids)

    def mark_refused(self, mutation_id: str, reason: str) -> None:
        """Set a mutation aside for good with the server's reason (see `Replica.refused()`)."""
        with self._core.transaction():
            self._core.outbox.mark_refused(mutation_id, reason)

    def on_outbox(self, listener: Callable[[], object]) -> Unsubscribe:
        """Call `listener()` after each commit that added outbox entries (the sync client's cue).

        One listener for every collection, so a live sync client pushes soon
        after any local write without subscribing to collections it cannot know.
        """
        return self._core.on_outbox(listener)

    def held_by_others(self, mutations: Sequence[Mutation]) -> dict[str, FieldState]:
        """For each mutation whose field now holds another node's write, that write (by id).

        The sync client's check of what the server already holds. Only a
        remote change applied after a mutation was queued can put another
        node's write into its field, so mutations queued since the last
        `apply_remote` are answered without reading anything; the others
        cost one query per collection.
        """
        core = self._core
        store = core.reading()
        by_collection: dict[str, list[Mutation]] = {}
        for m in mutations:
            if core.outbox.number(m.id) <= core.remote_mark:
                by_collection.setdefault(self._stored(m.collection), []).append(m)
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
                if state.write.stamp.node != core.node_id:
                    found[m.id] = state
        return found

    def forget_field(self, collection: str, key: str, field: str) -> bool:
        """Drop a field's local state without writing anything (no stamp, no outbox entry).

        After the server refused a field's kind, the local field (created
        locally, so it holds nothing from the server) must give way to the
        server's version, which the next pull brings. Pending entries of the
        field stay queued. True if there was such a field.
        """
        core = self._core
        collection = self._stored(collection)
        with core.transaction():
            row = core.store.record(collection, key)
            fields = {} if row is None else load_record(row.vals, row.stamps)
            if fields.pop(field, None) is None:
                return False
            core.texts.drop((collection, key, field))
            if fields:
                core.store.write_records(collection, [RecordRow(key, *dump_record(fields))])
            else:
                core.store.drop_record(collection, key)
            core.events.append(ChangeEvent(collection, key, frozenset({field}), "remote"))
            return True

    # -- what the server reported ----------------------------------------------------

    def _body(self, conflict: Conflict) -> str:
        """How the conflict log stores `conflict` (a shared space's carry its id)."""
        body = conflict.to_json()
        if self.space is not None:
            body["space"] = self.space
        return canonical_json(body)

    def record_conflicts(self, conflicts: Iterable[Conflict]) -> int:
        """Store conflicts the server reported, each once; returns how many were new."""
        bodies = [self._body(c) for c in conflicts]
        with self._core.transaction():
            return len(self._core.store.add_conflicts(bodies))

    @property
    def conflict_position(self) -> int:
        """This replica's position in the user's conflict log (0: from the start).

        A position belongs to the server history it was read in; once the
        replica's history changed (a resync), the log is read again from 0.
        """
        meta = self._core.reading().meta()
        if meta.get(self._meta("conflict_history")) != meta.get(self._meta("history"), ""):
            return 0
        return int(meta.get(self._meta("conflict_position"), "0"))

    def record_conflict_page(self, conflicts: Sequence[Conflict], position: int) -> list[Conflict]:
        """Store a page of the conflict log and the position after it, atomically;
        returns the conflicts new to this replica (the others it already had)."""
        if type(position) is not int or position < 0:
            raise ValueError(f"position must be a non-negative int, got {position!r}")
        core = self._core
        by_body = {self._body(c): c for c in conflicts}
        with core.transaction():
            new = core.store.add_conflicts(list(by_body))
            history = core.store.meta().get(self._meta("history"), "")
            core.store.set_meta(
                {
                    self._meta("conflict_position"): str(position),
                    self._meta("conflict_history"): history,
                }
            )
        return [by_body[body] for body in new]

    def add_suppressed(self, count: int) -> None:
        """Add identical-content events the server counted (and did not report)."""
        if type(count) is not int or count < 0:
            raise ValueError(f"count must be a non-negative int, got {count!r}")
        core = self._core
        with core.transaction():
            total = int(core.store.meta().get("suppressed", "0")) + count
            core.store.set_meta({"suppressed": str(total)})

    # -- losing a space --------------------------------------------------------------

    def purge(self, reason: str) -> list[Mutation]:
        """Forget this shared space: its records, texts, conflicts and sync state, in one
        transaction; its pending writes are set aside with `reason` and returned.

        Subscribers hear of every record removed (origin ``remote``). Adding the
        space again later pulls it from 0.
        """
        space = self.space
        if space is None:
            raise ValueError("the private space cannot be purged")
        core = self._core
        with core.transaction():
            refused = core.outbox.set_aside(self._range, reason)
            for collection in core.store.collections(self._range):
                for row in list(core.store.scan(collection)):
                    core.events.append(resync.drop_record(core.store, core.texts, collection, row))
            core.store.drop_range(self._range)
            core.store.drop_conflicts(space)
            core.store.delete_meta(self._meta(name) for name in _SYNC_STATE)
        return [attrs.evolve(m, collection=self._own(m.collection)) for m in refused]

    def local_spaces(self) -> set[str]:
        """The shared spaces this replica holds records or pending writes of."""
        return {unqualify(c)[0] for c in self._core.reading().collections(SHARED)} - {PRIVATE}
