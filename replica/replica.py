"""`Replica`: the local, durable copy of a user's records, as the app sees it.

The app's face of a replica file: lifecycle, transactions, reads, writes,
CRDT text, subscriptions, and what the sync reported (conflicts, suppressed
events, refused writes). Local write policy lives in `replica.local`, rows in
`replica.store`, the state both faces share in `replica.core`; what the sync
client and the stream tracker need (outbox, remote changes, cursor) is the
other face, `replica.sync_port.SyncPort`, which they get with `sync_port()`.
The invariants:

1. **Acknowledged means durable.** Every local write is one transaction: the
   new field values with their stamps, and outbox rows holding one mutation
   per changed field. When `put()` returns, the write survives a killed
   process.
2. **A write records what it saw.** Its `base` is the field's stamp in the
   replica at write time (None if the field was never written), which is what
   lets the server tell a conflict from an update.
3. **No-op writes are not writes.** A put whose value is canonical-equal to
   the stored one issues no stamp and no outbox entry: pushing what the
   server already holds would only create suppressed noise. A call that does
   write stamps all its fields with one fresh stamp.
4. Stamps only grow and subscribers hear about committed changes only
   (`replica.core`).

Deletion is the LWW tombstone field ``_deleted`` (`quietsync.protocol.DELETED_FIELD`);
any later local write to the record (a put or a text edit) revives it by
writing ``_deleted: False``. The other fields stay stored under a tombstone.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from contextlib import AbstractContextManager
from os import PathLike
from pathlib import Path
from typing import Any

from quietsync.conflicts import Conflict, wall_clock_ms
from quietsync.protocol import DELETED_FIELD, check_name
from quietsync.replica.core import ReplicaCore
from quietsync.replica.local import encode_records
from quietsync.replica.outbox import RefusedMutation
from quietsync.replica.records import decode_records, encode_json
from quietsync.replica.subscriptions import Callback, Unsubscribe
from quietsync.replica.sync_port import SyncPort

__all__ = ["Replica", "sync_port"]


class Replica:
    """A local replica file, opened by `Replica.open`; see the module docstring."""

    def __init__(self, core: ReplicaCore) -> None:
        self._core = core

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
        return cls(ReplicaCore.open(path, node_id=node_id, max_drift_ms=max_drift_ms, wall=wall))

    def close(self) -> None:
        """Close the file and release it for the next owner; closing twice is harmless."""
        self._core.close()

    def __enter__(self) -> Replica:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def path(self) -> Path:
        return self._core.store.path

    @property
    def node_id(self) -> str:
        return self._core.node_id

    @property
    def closed(self) -> bool:
        return self._core.closed

    def transaction(self) -> AbstractContextManager[None]:
        """Group several calls into one atomic transaction (nesting is allowed).

        Subscribers hear about the changes after the outermost commit; on an
        exception nothing inside is kept and nobody is notified.
        """
        return self._core.transaction()

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
        core = self._core
        with core.transaction():
            core.events += core.writer.put_many(collection, encoded)

    def delete(self, collection: str, key: str) -> None:
        """Delete the record (a tombstone that syncs like any field write)."""
        check_name("collection", collection)
        check_name("key", key)
        core = self._core
        with core.transaction():
            core.events += core.writer.delete(collection, key)

    def get(self, collection: str, key: str) -> dict[str, Any] | None:
        """The record's fields (CRDT text as a plain string); None if absent or deleted."""
        row = self._core.reading().record(collection, key)
        record = None if row is None else decode_records([row.vals])[0]
        if record is not None:
            self._core.texts.patch(collection, key, record)
        return record

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
        texts = self._core.texts
        if texts.any_stale(collection):
            for (key, _), record in zip(rows, decoded, strict=True):
                if record is not None:
                    texts.patch(collection, key, record)
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
        core = self._core
        store = core.reading()
        used = {field for field, _ in conds} | ({order_by} if order_by else set())
        if used & core.texts.stale_field_names(collection):
            with core.transaction():  # SQL must see the current text of what it compares
                core.texts.materialize(collection, used)
        return store.select(collection, conds, order_by, -1 if limit is None else limit)

    # -- CRDT text ---------------------------------------------------------------

    def text_insert(self, collection: str, key: str, field: str, index: int, text: str) -> None:
        """Insert `text` at code point `index` of a CRDT text field (created on first insert).

        Positions are Python ``str`` indexes (code points). The first insert
        into a new field creates it deterministically (`initial_text_update`),
        so two replicas initialising it with the same text converge to one
        copy, not two. Text holding a lone surrogate is a `ValueError`.
        """
        if not isinstance(text, str):
            raise TypeError(f"text to insert must be a str, got {type(text).__name__}")
        if text:
            self.text_edits(collection, key, field, [(index, 0, text)])

    def text_delete(self, collection: str, key: str, field: str, index: int, length: int) -> None:
        """Delete `length` code points at `index` of a CRDT text field."""
        if length:
            self.text_edits(collection, key, field, [(index, length, "")])

    def text_edits(
        self, collection: str, key: str, field: str, ops: Iterable[tuple[int, int, str]]
    ) -> None:
        """Apply many edits to a CRDT text field as one write (one stamp, one update).

        Each op is ``(index, delete_count, insert_text)`` in code points, applied
        in order, each against the text the ones before it left: the form an
        editor's change list or an import takes. A new field's first op must
        insert at 0 without deleting. A bad op (`IndexError`, `TypeError`,
        `ValueError`) leaves the field as it was.
        """
        check_name("collection", collection)
        check_name("key", key)
        check_name("field", field)
        if field == DELETED_FIELD:
            raise ValueError(f"{DELETED_FIELD!r} is the tombstone field, not text")
        edits = [op for op in ops if op[1] or op[2]]
        if not edits:
            return
        core = self._core
        with core.transaction():
            core.events += core.writer.text_edit(collection, key, field, edits)

    def compact(self) -> int:
        """Fold every text field's edits into its snapshot, then rewrite the file smaller.

        The replica compacts a field by itself as its edits accumulate; this
        is for after an import, or before copying the file. Returns how many
        text fields were compacted. Not inside a transaction.
        """
        core = self._core
        if core.store.in_transaction:
            raise RuntimeError("compact() cannot run inside a transaction")
        with core.transaction():
            compacted = core.texts.compact_all()
        core.store.vacuum()
        return compacted

    # -- what sync reported ------------------------------------------------------

    def conflicts(self) -> list[Conflict]:
        """Every conflict the server reported to this replica, oldest first."""
        return [Conflict.from_json(json.loads(b)) for b in self._core.reading().conflicts()]

    def suppressed_count(self) -> int:
        """Concurrent writes of identical content the server counted (never reported)."""
        return int(self._core.reading().meta().get("suppressed", "0"))

    def refused(self) -> list[RefusedMutation]:
        """Writes the server refused for good, with its reasons (set aside, never retried)."""
        self._core.reading()
        return self._core.outbox.refused()

    def pending_count(self) -> int:
        """Local writes not yet acknowledged by the server."""
        self._core.reading()
        return self._core.outbox.pending_count()

    # -- subscriptions ---------------------------------------------------------

    def subscribe(
        self, collection: str, callback: Callback, *, key: str | None = None
    ) -> Unsubscribe:
        """Call `callback(ChangeEvent)` after each commit that changes a matching record."""
        return self._core.subs.subscribe(collection, callback, key=key)


def sync_port(replica: Replica) -> SyncPort:
    """The sync side of `replica`, for the sync client and the stream tracker (not for apps)."""
    return SyncPort(replica._core)
