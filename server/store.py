"""The storage interface of the server: what a backend must do, and nothing more.

A backend (`server.sqlite_store.SQLiteStore`, `server.postgres_store.PostgresStore`) keeps
**state, not history**. Per space (a user's private space, or a shared one:
`quietsync.protocol.spaces`; who may touch which is `quietsync.server.spaces`'
business, not the store's):

* every field's current state (kind, value or merged Yjs state, stamp, base)
  with the ``seq`` of its last change and the id of the write that made it: a
  pull from cursor ``c`` reads the fields whose seq is above ``c``, so a value
  that was overwritten is never kept or sent again, and a field written a
  thousand times costs one row;
* the head (the highest seq handed out: seqs only grow, and have gaps where a
  field was written again later) and the tombstone horizon (``gc_seq``: a
  cursor below it may have missed a delete that compaction removed);
* one `ClientMark` per pushing client (the highest mutation number seen and
  the outcomes of its last push), which makes retries idempotent;
* the conflicts detected.

And once per database: its history id (see `quietsync.server.sqlite_schema`).

A backend holds NO merge policy: `server.sync.SyncService` decides what to
write and hands it one `BatchWrite` per push, committed in one transaction or
not at all. Every method takes the space id and touches only that space's rows:
isolation between spaces is a property of this interface, not of the handlers.

Pages are bounded in count and in bytes (`max_bytes`); a single value larger
than a page is delivered alone. Backends are synchronous: they are called from
one worker thread (see `server.app`), never concurrently.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Protocol, TypeVar, runtime_checkable

import attrs

from quietsync.conflicts import HLC, Conflict, FieldRef
from quietsync.protocol import Change, Kind, Mutation, WireWrite

__all__ = [
    "BatchWrite",
    "ChangePage",
    "ClientMark",
    "ConflictPage",
    "FieldId",
    "FieldKey",
    "OverwriteTransaction",
    "Store",
    "StoredField",
    "Transaction",
    "WriteTransaction",
    "numbered",
]

FieldKey = tuple[str, str, str]
"""A field as a plain ``(collection, key, field)`` tuple, the way a push names them.

A push builds one per mutation and hashes it several times; a tuple costs a
fifth of what an attrs `FieldRef` does for both.
"""

FieldId = TypeVar("FieldId", FieldRef, FieldKey)
"""Either way of naming a field: `Transaction.fields` answers in the one it was asked in."""


@attrs.frozen
class StoredField:
    """A field's state: its kind, the winning write's stamp and base, and its content.

    `value` is the JSON value of an lww field; `state` the merged Yjs state of a
    crdt field (the other one is None). `writer` is the user whose push wrote
    it (None: the server's own write, or stored before writers were kept).
    """

    kind: Kind
    stamp: HLC
    base: HLC | None = None
    value: object = None
    state: bytes | None = None
    writer: str | None = None


@attrs.frozen
class ClientMark:
    """What a store remembers of one pushing client: enough to answer any retry.

    Mutation ids are ``<client>:<n>`` with ``n`` growing for the life of the
    client, and a client pushes its writes in order, one batch at a time. So
    an id at or below `hw` was seen: a retry of the last push (the usual one:
    its answer was lost) is answered with the outcomes recorded in `last`
    (runs of ``(first n, last n, outcome)``), any older one ``duplicate``.
    Neither is merged again.
    """

    hw: int = 0
    last: tuple[tuple[int, int, str], ...] = ()

    def outcome(self, n: int) -> str | None:
        """The recorded answer for mutation number `n`; None if it was never seen."""
        if n > self.hw:
            return None
        for first, last, outcome in self.last:
            if first <= n <= last:
                return outcome
        return "duplicate"

    @classmethod
    def after(cls, previous: ClientMark | None, outcomes: Iterable[tuple[int, str]]) -> ClientMark:
        """The mark once a push answered `outcomes` (``(n, outcome)`` in push order)."""
        runs: list[tuple[int, int, str]] = []
        first = last = 0
        current = ""
        for n, outcome in sorted(outcomes):  # n grows: a run is extended by locals, no tuples
            if outcome != current or n != last + 1:
                if current:
                    runs.append((first, last, current))
                first, current = n, outcome
            last = n
        if current:
            runs.append((first, last, current))
        hw = 0 if previous is None else previous.hw
        return cls(max(hw, last), tuple(runs))


@attrs.frozen
class BatchWrite:
    """Everything one push (or one job flush) writes; committed atomically.

    Each write of `log` becomes its field's new state with the next seq, from
    `first_seq` (the caller's ``Transaction.head() + 1``); a field written
    twice keeps the later write (its earlier seq is never seen again). An lww
    write of `log` needs nothing in `fields`; a crdt write's field takes the
    merged state given in `fields`. `marks` are the clients' new marks.
    `writer` is the user who pushed the batch (None for the server's own
    writes): every field written keeps it as its writer.

    The log holds plain `Mutation`s rather than numbered `Change`s, and a push
    builds no `StoredField` for an lww write: at 1,000 writes a push those
    objects were a tenth of its time (with the cyclic GC walking them).
    `changes` numbers the log when somebody needs it (live sockets).
    """

    first_seq: int
    log: list[Mutation] = attrs.Factory(list)
    fields: dict[FieldRef, StoredField] = attrs.Factory(dict)
    marks: dict[str, ClientMark] = attrs.Factory(dict)
    conflicts: list[Conflict] = attrs.Factory(list)
    writer: str | None = None

    @property
    def last_seq(self) -> int:
        """The seq of the last write of `log` (``first_seq - 1`` when it is empty)."""
        return self.first_seq + len(self.log) - 1

    def final_writes(self) -> Iterator[tuple[int, Mutation]]:
        """Each write of `log` with its seq, what a store writes: of a crdt field only
        its last write, since every write of that field carries the one merged state.

        Writing that state once per write made a push of 1,000 keystrokes write
        a 200 KB document 1,000 times (minutes for the automerge-paper trace).
        An lww field written twice in one push is rare and upserted twice.
        """
        if not self.fields:  # no crdt write
            yield from enumerate(self.log, self.first_seq)
            return
        numbered = list(enumerate(self.log, self.first_seq))
        last = {(m.collection, m.key, m.field): seq for seq, m in numbered if m.kind == "crdt"}
        for seq, m in numbered:
            if m.kind != "crdt" or last[m.collection, m.key, m.field] == seq:
                yield seq, m

    def changes(self) -> list[Change]:
        """`log` as the numbered `Change`s it becomes (what live sockets are sent)."""
        return numbered(self.log, self.first_seq)


def numbered(log: Iterable[Mutation], first_seq: int) -> list[Change]:
    """The writes of `log` as the `Change`s they become, numbered from `first_seq`."""
    return [
        Change(m.id, m.collection, m.key, m.field, m.kind, m.stamp, m.base, m.value, m.update, seq)
        for seq, m in enumerate(log, first_seq)
    ]


@attrs.frozen
class ChangePage:
    """A page of a space's changed fields, as changes, in seq order.

    `cursor`: every change up to it is in this page or was overwritten later
    (the last seq returned while `has_more`; the head at the end).
    """

    changes: list[Change]
    cursor: int
    has_more: bool


@attrs.frozen
class ConflictPage:
    """A page of a space's conflicts: `cursor` is an opaque position for the next page."""

    conflicts: list[Conflict]
    cursor: int
    has_more: bool


class Transaction(Protocol):
    """One space inside one open write transaction."""

    def marks(self, clients: Collection[str]) -> dict[str, ClientMark]:
        """The marks of these clients (absent: never pushed)."""
        ...

    def fields(self, refs: Collection[FieldId]) -> dict[FieldId, StoredField]:
        """The stored state of each of these fields (absent if never written), keyed as asked."""
        ...

    def records(self, keys: Collection[tuple[str, str]]) -> dict[FieldKey, StoredField]:
        """Every stored field of these records (``(collection, key)``), keyed by field."""
        ...

    def head(self) -> int:
        """The highest seq handed out in the space (0: none), as of this transaction."""
        ...

    def write(self, batch: BatchWrite) -> None:
        """Write `batch` (its changes numbered from ``head() + 1``)."""
        ...


@runtime_checkable
class OverwriteTransaction(Transaction, Protocol):
    """A `Transaction` that writes a push of plain overwrites without reading it first.

    What most pushes are: lww writes, none of them a delete, each one onto a
    field that is new or that it overwrites (`conflicts.lww.overwrites`), of
    records that are not deleted.
    Optional: `server.overwrite` uses it when a store has it (SQLite does:
    one conditional upsert), and decides every push in Python otherwise.
    """

    def overwrite(
        self,
        first_seq: int,
        writes: Sequence[WireWrite],
        marks: dict[str, ClientMark],
        writer: str | None,
    ) -> bool:
        """Write each of `writes` as its field's new state (numbered from `first_seq`,
        written by `writer`), `marks` and the head, if every write overwrites its field
        (the field is absent, or an lww field stamped below the write and at or below its
        base) and no record written is deleted (its ``_deleted`` field holds true).
        Otherwise write nothing at all and return False."""
        ...


class WriteTransaction(Protocol):
    """One open write transaction over any number of spaces.

    Features that write into several spaces at once (the jobs flusher:
    every job with news, of every space, in one fsync) use it; a
    backend's companion stores (the jobs table) write their own rows inside it.
    """

    def space(self, space: str) -> Transaction:
        """`space` inside this transaction (write it at most once per transaction)."""
        ...


class Store(Protocol):
    """A server storage backend (see the module docstring)."""

    def transaction(self, space: str) -> AbstractContextManager[Transaction]:
        """Open a write transaction on `space`: commit on exit, roll back on error."""
        ...

    def write_transaction(self) -> AbstractContextManager[WriteTransaction]:
        """One write transaction over every space: commit on exit, roll back on error."""
        ...

    def changes(self, space: str, since: int, limit: int, max_bytes: int) -> ChangePage:
        """The fields changed after `since`: at most `limit`, about `max_bytes` (at least one)."""
        ...

    def cursor(self, space: str) -> int:
        """The space's head: the highest seq handed out (0: none yet)."""
        ...

    def horizon(self, space: str) -> int:
        """The space's tombstone horizon: a cursor below it may have missed a removed delete."""
        ...

    def history(self) -> str:
        """The id of this database's history (a restored backup has another)."""
        ...

    def conflicts(self, space: str, since: int, limit: int, max_bytes: int) -> ConflictPage:
        """Up to `limit` of `space`'s conflicts after position `since`, oldest first."""
        ...

    def last_stamp(self) -> HLC | None:
        """The highest stamp stored, so a restarted server clock never goes back."""
        ...

    def collect_tombstones(self, deleted_before_ms: int) -> int:
        """Remove every record deleted before `deleted_before_ms` (wall clock of the tombstone).

        Each space's horizon rises past the seqs removed, so a replica that may
        not have seen such a delete is told to resync. Returns how many
        records went.
        """
        ...

    def close(self) -> None: ...
