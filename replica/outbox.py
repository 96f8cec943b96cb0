"""The outbox: local writes waiting for the server, in write order.

Every local write adds one entry in the same transaction as the field it
changed, so an acknowledged write is always either in the outbox or already
acknowledged by the server. Mutation ids are ``f"{node_id}:{n}"`` with `n`
strictly increasing for the life of the file (the last `n` is persisted with
every write), so a retried push is idempotent and an id is never reused.

The sync client reads `batch()`, pushes, then calls `mark_pushed` for what the
server took and `mark_refused` for what it permanently refused: refused
entries move aside with the server's reason (`refused()`) and never block
later ones.

No compaction: replacing an unpushed entry with a newer write to the same
field is unsafe once the entry may be in flight (the server could have applied
it under its id while the answer was lost), and the outbox of an app that
syncs at all stays short.

Must not import `server`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

import attrs

from conflicts import HLC, Kind, Mutation
from replica.errors import UnknownMutationError
from replica.store import OutboxRow, Store

__all__ = ["Outbox", "RefusedMutation"]


@attrs.frozen
class RefusedMutation:
    """A mutation the server refused for good, with its reason."""

    mutation: Mutation
    reason: str


class Outbox:
    """Outbox entries of one replica over its `Store`; the caller owns transactions."""

    def __init__(self, store: Store, node_id: str, last_n: int) -> None:
        self._store = store
        self._prefix = f"{node_id}:"
        self.last_n = last_n

    def entry(
        self,
        collection: str,
        key: str,
        field: str,
        kind: Kind,
        stamp: str,
        base: str | None,
        *,
        value: str | None = None,
        update: bytes | None = None,
    ) -> OutboxRow:
        """The next entry (numbered, not yet stored): the caller appends it with its write."""
        self.last_n += 1
        return OutboxRow(self.last_n, collection, key, field, kind, value, update, stamp, base)

    def batch(self, limit: int) -> list[Mutation]:
        """The oldest `limit` pending mutations, in write order."""
        if limit < 1:
            raise ValueError(f"limit must be >= 1, got {limit}")
        return [self._mutation(row) for row in self._store.outbox(limit)]

    def mark_pushed(self, ids: Iterable[str]) -> int:
        """Remove mutations the server acknowledged; ids no longer pending are ignored.

        Ignoring them makes a repeated acknowledgement (a retried push) harmless.
        """
        return self._store.remove_outbox([self._number(i) for i in ids])

    def mark_refused(self, mutation_id: str, reason: str) -> None:
        """Set a pending mutation aside with the server's reason."""
        if not self._store.refuse(self._number(mutation_id), str(reason)):
            raise UnknownMutationError(mutation_id)

    def refused(self) -> list[RefusedMutation]:
        return [
            RefusedMutation(self._mutation(row), reason) for row, reason in self._store.refused()
        ]

    def pending_count(self) -> int:
        return self._store.pending_count()

    def _number(self, mutation_id: str) -> int:
        number = mutation_id.removeprefix(self._prefix) if isinstance(mutation_id, str) else ""
        if number == mutation_id or not (number.isascii() and number.isdigit()):
            raise UnknownMutationError(mutation_id)
        return int(number)

    def _mutation(self, row: OutboxRow) -> Mutation:
        return Mutation(
            id=f"{self._prefix}{row.n}",
            collection=row.collection,
            key=row.key,
            field=row.field,
            kind="crdt" if row.kind == "crdt" else "lww",
            stamp=HLC.parse(row.stamp),
            base=None if row.base is None else HLC.parse(row.base),
            value=None if row.value is None else json.loads(row.value),
            update=row.update,
        )
