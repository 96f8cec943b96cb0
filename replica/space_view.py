"""`SpaceView`: the records and texts of one space of a replica, as the app sees them.

`Replica` is the view of the private space (and more: the file's lifecycle,
what sync reported); `Replica.space(id)` is the view of a shared space, with
the same calls: put, put_many, delete, get, keys, query, the CRDT text edits,
subscribe and the space's conflicts. Each view qualifies the app's collection
names with its space (`quietsync.replica.spaces`, the one module that knows
how), so two spaces never share a record, however their collections and keys
are named; everything else (the invariants of `quietsync.replica.replica`)
is the same for every space, because it is the same code.

Must not import `quietsync.server`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from quietsync.conflicts import Conflict
from quietsync.protocol import DELETED_FIELD, check_name
from quietsync.replica.core import ReplicaCore
from quietsync.replica.local import encode_records
from quietsync.replica.records import decode_records, encode_json
from quietsync.replica.spaces import PRIVATE, SpaceKey, qualify, unqualify
from quietsync.replica.subscriptions import Callback, ChangeEvent, Unsubscribe

__all__ = ["SpaceView"]


class SpaceView:
    """The records of space `space_id` of an open replica (see the module docstring).

    Get one with `Replica.space(space_id)`; it is valid while the replica is open.
    """

    def __init__(self, core: ReplicaCore, space: SpaceKey = PRIVATE) -> None:
        self._core = core
        self._space = space

    @property
    def space_id(self) -> str | None:
        """The shared space's id (None: the private space)."""
        return self._space

    def _stored(self, collection: str) -> str:
        """The stored name of this space's `collection` (checked: `WireError` if bad)."""
        return qualify(self._space, check_name("collection", collection))

    # -- records ---------------------------------------------------------------

    def put(self, collection: str, key: str, fields: Mapping[str, Any]) -> None:
        """Merge `fields` into the record, each field stamped; one transaction."""
        self.put_many(collection, {key: fields})

    def put_many(self, collection: str, records: Mapping[str, Mapping[str, Any]]) -> None:
        """`put` for many records of one collection, in one transaction.

        Every value is checked before anything is written: a value that is not
        JSON is a `TypeError` naming it, and nothing is written.
        """
        collection = self._stored(collection)
        encoded = encode_records(records)
        core = self._core
        with core.transaction():
            core.events += core.writer.put_many(collection, encoded)

    def delete(self, collection: str, key: str) -> None:
        """Delete the record (a tombstone that syncs like any field write)."""
        collection = self._stored(collection)
        check_name("key", key)
        core = self._core
        with core.transaction():
            core.events += core.writer.delete(collection, key)

    def get(self, collection: str, key: str) -> dict[str, Any] | None:
        """The record's fields (CRDT text as a plain string); None if absent or deleted."""
        collection = self._stored(collection)
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
        return [key for key, _ in self._select(self._stored(collection), where, order_by, limit)]

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
        collection = self._stored(collection)
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
        """`query`'s rows of the stored collection `collection`."""
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
        collection = self._stored(collection)
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

    # -- what sync reported and subscriptions ---------------------------------------

    def conflicts(self) -> list[Conflict]:
        """Every conflict the server reported in this space, oldest first."""
        found = []
        for body in self._core.reading().conflicts():
            obj = json.loads(body)
            if obj.pop("space", None) == self._space:
                found.append(Conflict.from_json(obj))
        return found

    def subscribe(
        self, collection: str, callback: Callback, *, key: str | None = None
    ) -> Unsubscribe:
        """Call `callback(ChangeEvent)` after each commit that changes a matching record.

        The event names the collection as this space knows it.
        """
        stored = self._stored(collection)
        if self._space is None:
            return self._core.subs.subscribe(stored, callback, key=key)

        def in_space(event: ChangeEvent) -> object:
            return callback(attrs.evolve(event, collection=unqualify(event.collection)[1]))

        return self._core.subs.subscribe(stored, in_space, key=key)
