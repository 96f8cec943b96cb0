"""Custom conflict resolvers, registered per ``(collection, field)``.

A resolver is ``resolve(local, remote) -> value``. It runs only for a real
conflict (concurrent writes with different content) and must be a pure,
deterministic function of its arguments, because every node that merges the
same pair must compute the same value. To make that possible the arguments are
always passed in stamp order: `local` is the value of the write with the lower
stamp, `remote` the value of the higher one, wherever the merge runs.

The resolved value gets a stamp that every node derives identically
(`derived_stamp`): the winner's wall time and counter, and the winner's node id
extended with ``*`` and a digest of the loser's stamp. It sorts just above the
winner (a longer string with the same prefix) and below anything issued later,
and it cannot equal a stamp a clock issues (``*`` is not allowed in node ids).

Convergence of more than two mutually concurrent writes under a resolver needs
a resolver that is commutative and associative (max, set union, ...); plain
LWW needs nothing of the sort.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

from quietsync.conflicts.hlc import HLC

__all__ = ["Resolver", "Resolvers", "derived_stamp"]

Resolver = Callable[[Any, Any], Any]


def derived_stamp(winner: HLC, loser: HLC) -> HLC:
    """The stamp of a value resolved from `winner` and `loser` (same on every node)."""
    digest = hashlib.blake2b(str(loser).encode(), digest_size=4).hexdigest()
    return HLC(winner.wall_ms, winner.counter, f"{winner.node}*{digest}")


class Resolvers:
    """A registry of resolvers by ``(collection, field)``.

    ``field="*"`` registers a resolver for every field of a collection; an
    exact ``(collection, field)`` registration takes precedence over it.
    """

    def __init__(self) -> None:
        self._by_field: dict[tuple[str, str], Resolver] = {}

    def register(self, collection: str, field: str, resolver: Resolver) -> None:
        if not callable(resolver):
            raise TypeError(f"resolver for {collection}.{field} must be callable")
        self._by_field[(collection, field)] = resolver

    def resolver(self, collection: str, field: str) -> Callable[[Resolver], Resolver]:
        """Decorator form of `register`."""

        def decorate(fn: Resolver) -> Resolver:
            self.register(collection, field, fn)
            return fn

        return decorate

    def get(self, collection: str, field: str) -> Resolver | None:
        return self._by_field.get((collection, field)) or self._by_field.get((collection, "*"))

    def __len__(self) -> int:
        return len(self._by_field)
