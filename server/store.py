"""The storage interface of the server: what a backend must do, and nothing more.

A backend (`server.sqlite_store.SQLiteStore` today, PostgreSQL later) keeps,
per user: the change log (monotonic ``seq`` from 1, no gaps), the state of
every field, the outcome recorded for every mutation id seen, and the
conflicts detected. It holds NO merge policy: `server.sync.SyncService`
decides what to write and hands the backend one `BatchWrite` per push, which
the backend commits in one transaction, or not at all.

Every method takes the user id and touches only that user's rows: isolation
between users is a property of this interface, not of the handlers.

Backends are synchronous: they are called from one worker thread (see
`server.app`), never concurrently.
"""

from __future__ import annotations

from collections.abc import Collection
from contextlib import AbstractContextManager
from typing import Protocol, TypeVar

import attrs

from quietsync.conflicts import HLC, Conflict, FieldRef
from quietsync.protocol import Change, Kind, Mutation

__all__ = [
    "BatchWrite",
    "ChangePage",
    "ConflictPage",
    "FieldId",
    "FieldKey",
    "Store",
    "StoredField",
    "Transaction",
    "WriteTransaction",
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
    crdt field (the other one is None).
    """

    kind: Kind
    stamp: HLC
    base: HLC | None = None
    value: object = None
    state: bytes | None = None


@attrs.frozen
class BatchWrite:
    """Everything one push writes; committed atomically by `Transaction.write`.

    `log` is appended to the change log, its writes numbered consecutively
    from `first_seq` (the caller's ``Transaction.head() + 1``; the backend
    refuses a seq it already holds). Every lww write in `log` is also its
    field's new state (a later write to the same field wins), so lww fields
    need no entry in `fields`, which sets states as given: a crdt field's
    merged state. `outcomes` records the outcome of every mutation id of the
    batch.

    The log holds plain `Mutation`s rather than numbered `Change`s, and a push
    builds no `StoredField` for an lww write: at 1,000 writes a push those
    objects were a tenth of its time (with the cyclic GC walking them).
    `changes` numbers the log when somebody needs it (live sockets).
    """

    first_seq: int
    log: list[Mutation] = attrs.Factory(list)
    fields: dict[FieldRef, StoredField] = attrs.Factory(dict)
    outcomes: dict[str, str] = attrs.Factory(dict)
    conflicts: list[Conflict] = attrs.Factory(list)

    @property
    def last_seq(self) -> int:
        """The seq of the last write of `log` (``first_seq - 1`` when it is empty)."""
        return self.first_seq + len(self.log) - 1

    def changes(self) -> list[Change]:
        """`log` as the numbered `Change`s it becomes."""
        return [
            Change(
                m.id, m.collection, m.key, m.field, m.kind, m.stamp, m.base, m.value, m.update, seq
            )
            for seq, m in enumerate(self.log, self.first_seq)
        ]


@attrs.frozen
class ChangePage:
    """A page of a user's change log: `cursor` is the seq of the last change (or `since`)."""

    changes: list[Change]
    cursor: int
    has_more: bool


@attrs.frozen
class ConflictPage:
    """A page of a user's conflicts: `cursor` is an opaque position for the next page."""

    conflicts: list[Conflict]
    cursor: int
    has_more: bool


class Transaction(Protocol):
    """One user's space inside one open write transaction."""

    def outcomes(self, mutation_ids: Collection[str]) -> dict[str, str]:
        """The recorded outcome of each of these ids seen before (absent if never seen)."""
        ...

    def fields(self, refs: Collection[FieldId]) -> dict[FieldId, StoredField]:
        """The stored state of each of these fields (absent if never written), keyed as asked."""
        ...

    def head(self) -> int:
        """The seq of the user's latest change (0: none), as of this transaction."""
        ...

    def write(self, batch: BatchWrite) -> None:
        """Write `batch` (its changes numbered from ``head() + 1``)."""
        ...


class WriteTransaction(Protocol):
    """One open write transaction over any number of users' spaces.

    Features that write into several users' records at once (the jobs
    flusher: every job with news, of every user, in one fsync) use it; a
    backend's companion stores (the jobs table) write their own rows inside it.
    """

    def space(self, user: str) -> Transaction:
        """`user`'s space inside this transaction (write it at most once per transaction)."""
        ...


class Store(Protocol):
    """A server storage backend (see the module docstring)."""

    def transaction(self, user: str) -> AbstractContextManager[Transaction]:
        """Open a write transaction on `user`'s space: commit on exit, roll back on error."""
        ...

    def write_transaction(self) -> AbstractContextManager[WriteTransaction]:
        """One write transaction over every user's space: commit on exit, roll back on error."""
        ...

    def changes(self, user: str, since: int, limit: int) -> ChangePage:
        """Up to `limit` changes with seq > `since`, in seq order."""
        ...

    def cursor(self, user: str) -> int:
        """The seq of `user`'s latest change (0: none yet)."""
        ...

    def conflicts(self, user: str, since: int, limit: int) -> ConflictPage:
        """Up to `limit` of `user`'s conflicts after position `since`, oldest first."""
        ...

    def last_stamp(self) -> HLC | None:
        """The highest stamp stored, so a restarted server clock never goes back."""
        ...

    def close(self) -> None: ...
