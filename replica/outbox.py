"""The outbox: local writes waiting for the server, in write order.

Every local write call adds its mutations (all under its one stamp) as a few
rows of whole records, in the same transaction as the records, so an acknowledged
write is always either in the outbox or already acknowledged by the server.
Each changed field is one mutation; mutation ids are ``f"{node_id}:{n}"``
with `n` strictly increasing for the life of the file (the last `n` is
persisted with every write), so a retried push is idempotent and an id is
never reused.

The sync client reads `batch()`, pushes, then calls `mark_pushed` for what the
server took and `mark_refused` for what it permanently refused: refused
entries move aside with the server's reason (`refused()`) and never block
later ones.

No compaction: replacing an unpushed entry with a newer write to the same
field is unsafe once the entry may be in flight (the server could have applied
it under its id while the answer was lost), and the outbox of an app that
syncs at all stays short.

Must not import `quietsync.server`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator

import attrs

from quietsync.conflicts import HLC
from quietsync.protocol import Kind, Mutation
from quietsync.replica.errors import UnknownMutationError
from quietsync.replica.layout import value_text
from quietsync.replica.spaces import CollectionRange, SpaceKey, unqualify
from quietsync.replica.store import OutboxRow, RefusedRow, Store

__all__ = ["Outbox", "RefusedMutation"]


@attrs.frozen
class RefusedMutation:
    """A mutation set aside for good, with the reason: the server's, or ``space_revoked``."""

    mutation: Mutation
    reason: str
    space: SpaceKey = None
    """The shared space it was written to (None: the private space)."""


def _done(row: OutboxRow) -> set[int]:
    return set() if row.done is None else set(json.loads(row.done))


class Outbox:
    """Outbox rows of one replica over its `Store`; the caller owns transactions.

    A row holds what one call wrote: mutations ``n .. n + count - 1``, one per
    field, in the order of its ``{key: {field: value}}`` text. The server answers mutations one
    by one, so a row records the positions already answered (acknowledged,
    or set aside as refused) and goes away when all are.
    """

    def __init__(self, store: Store, node_id: str, last_n: int) -> None:
        self._store = store
        self._prefix = f"{node_id}:"
        self.last_n = last_n

    def row(
        self,
        collection: str,
        kind: Kind,
        stamp: str,
        fields: str,
        count: int,
        bases: str | None,
        update: bytes | None = None,
    ) -> OutboxRow:
        """The next row (numbered, not yet stored): the caller appends it with its write."""
        n = self.last_n + 1
        self.last_n += count
        return OutboxRow(n, collection, kind, stamp, fields, bases, update, count, None)

    def batch(self, limit: int, within: CollectionRange | None = None) -> list[Mutation]:
        """The oldest `limit` pending mutations (of `within`'s collections), in write order.

        Their collections are as stored (space-qualified, `replica.spaces`).
        """
        if limit < 1:
            raise ValueError(f"limit must be >= 1, got {limit}")
        batch: list[Mutation] = []
        for row in self._store.outbox(limit, within):
            for _, m in self._mutations(row):
                batch.append(m)
                if len(batch) == limit:
                    return batch
        return batch

    def mark_pushed(self, ids: Iterable[str]) -> int:
        """Remove mutations the server acknowledged; ids no longer pending are ignored.

        Ignoring them makes a repeated acknowledgement (a retried push)
        harmless. Returns how many were pending.
        """
        numbers = sorted({self.number(i) for i in ids})
        if not numbers:
            return 0
        return self._answer(numbers)

    def mark_refused(self, mutation_id: str, reason: str) -> None:
        """Set a pending mutation aside with the server's reason."""
        number = self.number(mutation_id)
        for row in self._store.outbox_between(number, number):
            for position, m in self._mutations(row):
                if row.n + position == number:
                    self._store.add_refused([_refused_row(number, m, str(reason))])
                    self._answer([number])
                    return
        raise UnknownMutationError(mutation_id)

    def set_aside(self, within: CollectionRange, reason: str) -> list[Mutation]:
        """Set every pending mutation of `within`'s collections aside with `reason`.

        What a space the replica can no longer sync had queued (`replica.purge`):
        never silently lost, listed by `refused()`. Returns them as stored.
        """
        rows = self._store.outbox(-1, within)
        refused = [(row.n + p, m) for row in rows for p, m in self._mutations(row)]
        self._store.add_refused([_refused_row(n, m, reason) for n, m in refused])
        self._store.remove_outbox([row.n for row in rows])
        return [m for _, m in refused]

    def refused(self) -> list[RefusedMutation]:
        """Every mutation set aside, oldest first, each with its space's own collection name."""
        found = []
        for row in self._store.refused():
            space, collection = unqualify(row.collection)
            mutation = attrs.evolve(self._refused_mutation(row), collection=collection)
            found.append(RefusedMutation(mutation, row.reason, space))
        return found

    def pending_count(self) -> int:
        return self._store.pending_count()

    def pending_keys(self) -> set[tuple[str, str]]:
        """The ``(collection, key)`` of every record a pending row writes to."""
        return {
            (row.collection, key)
            for row in self._store.outbox(-1)
            for key in json.loads(row.fields)
        }

    def _answer(self, numbers: list[int]) -> int:
        """Mark mutation `numbers` (sorted) answered; return how many were pending."""
        wanted = set(numbers)
        answered, removed, updated = 0, [], []
        for row in self._store.outbox_between(numbers[0], numbers[-1]):
            done = _done(row)
            mine = {p for p in range(row.count) if row.n + p in wanted} - done
            if not mine:
                continue
            answered += len(mine)
            done |= mine
            if len(done) == row.count:
                removed.append(row.n)
            else:
                updated.append((row.n, json.dumps(sorted(done))))
        self._store.remove_outbox(removed)
        self._store.set_outbox_done(updated)
        return answered

    def number(self, mutation_id: str) -> int:
        """The `n` of one of this replica's mutation ids (`UnknownMutationError` if it is not)."""
        number = mutation_id.removeprefix(self._prefix) if isinstance(mutation_id, str) else ""
        if number == mutation_id or not (number.isascii() and number.isdigit()):
            raise UnknownMutationError(mutation_id)
        return int(number)

    def _mutations(self, row: OutboxRow) -> Iterator[tuple[int, Mutation]]:
        """The row's pending mutations with their positions."""
        done = _done(row)
        stamp = HLC.parse(row.stamp)
        bases = {} if row.bases is None else json.loads(row.bases)
        crdt = row.kind == "crdt"
        kind: Kind = "crdt" if crdt else "lww"
        position = -1
        for key, fields in json.loads(row.fields).items():
            key_bases = bases.get(key, {})
            for field, value in fields.items():
                position += 1
                if position in done:
                    continue
                base = key_bases.get(field)
                yield (
                    position,
                    Mutation(
                        id=f"{self._prefix}{row.n + position}",
                        collection=row.collection,
                        key=key,
                        field=field,
                        kind=kind,
                        stamp=stamp,
                        base=None if base is None else HLC.parse(base),
                        value=None if crdt else value,
                        update=row.update if crdt else None,
                    ),
                )

    def _refused_mutation(self, row: RefusedRow) -> Mutation:
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


def _refused_row(number: int, m: Mutation, reason: str) -> RefusedRow:
    value = None if m.kind == "crdt" else value_text(m.value)
    base = None if m.base is None else str(m.base)
    return RefusedRow(
        number, m.collection, m.key, m.field, m.kind, value, m.update, str(m.stamp), base, reason
    )
