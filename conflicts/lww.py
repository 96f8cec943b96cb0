"""Field-level last-writer-wins merge with conflict detection.

A field holds the last write that won: its value, its stamp, and the `base`
stamp its writer had seen for that field (None if it had seen none). An
incoming write is merged with `merge_field`.

Merge laws (each has a property test in ``tests/conflicts/test_lww_laws.py``):

1. **Equal stamps are one write.** Merging a write whose stamp equals the
   current one is a duplicate delivery: nothing changes, nothing is reported.
2. **The higher stamp wins.** Ties cannot happen: the node id is part of the
   stamp. So the final value and stamp of a field are those of the highest
   stamp ever merged, whatever the delivery order, with or without duplicates
   (commutative, associative, idempotent).
3. **A conflict is a winner that did not see the loser.** Two writes conflict
   when the winner's `base` is None or older than the loser's stamp (its
   writer had not seen the loser, nor anything at least as new) and their
   values differ. The test is symmetric, so it does not matter which of the
   two arrived first.
4. **Identical content is not a conflict.** Concurrent writes whose values are
   equal under canonical JSON (`conflicts.canonical`) are *suppressed*:
   counted, never reported. `suppress_identical=False` reports them instead
   (for benchmarks showing what that noise looks like).
5. **Each losing write is reported once.** A write that loses is gone from the
   state, so it cannot lose (and be reported) again.
6. **Resolvers are deterministic.** With a resolver the merged value is
   ``resolver(older.value, newer.value)`` under a stamp derived from both
   (`conflicts.resolvers.derived_stamp`), so every replica that merges the same
   pair computes the same value under the same stamp.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Any

import attrs

from quietsync.conflicts.canonical import canonical_equal
from quietsync.conflicts.conflict import Conflict, FieldRef, Side
from quietsync.conflicts.hlc import HLC
from quietsync.conflicts.resolvers import derived_stamp

__all__ = ["FieldWrite", "Merge", "Outcome", "merge_field", "overwrites"]

_NO_REF = FieldRef("", "", "")


@attrs.frozen
class FieldWrite:
    """A value with its stamp and the stamp its writer had seen (`base`)."""

    value: Any
    stamp: HLC
    base: HLC | None = None


class Outcome(enum.Enum):
    """What happened to the incoming write."""

    APPLIED = "applied"  # incoming is now the field's value
    DROPPED = "dropped"  # incoming lost to the current value
    DUPLICATE = "duplicate"  # incoming had already been merged (same stamp)
    RESOLVED = "resolved"  # a resolver combined both into a new value


@attrs.frozen
class Merge:
    """The result of `merge_field`."""

    state: FieldWrite
    outcome: Outcome
    conflict: Conflict | None = None
    suppressed: bool = False

    @property
    def value(self) -> Any:
        return self.state.value

    @property
    def stamp(self) -> HLC:
        return self.state.stamp

    @property
    def changed(self) -> bool:
        """True when the field's state differs from what it was before the merge."""
        return self.outcome in (Outcome.APPLIED, Outcome.RESOLVED)


def merge_field(
    current: FieldWrite | None,
    incoming: FieldWrite,
    *,
    ref: FieldRef = _NO_REF,
    resolver: Callable[[Any, Any], Any] | None = None,
    suppress_identical: bool = True,
    detected_by: str = "",
) -> Merge:
    """Merge `incoming` into a field whose state is `current` (None: never written).

    `ref` names the field in any `Conflict` reported; `detected_by` names the
    node doing the merge. See the module docstring for the laws.
    """
    if current is None:
        return Merge(incoming, Outcome.APPLIED)
    if incoming.stamp == current.stamp:
        return Merge(current, Outcome.DUPLICATE)
    incoming_wins = incoming.stamp > current.stamp
    winner, loser = (incoming, current) if incoming_wins else (current, incoming)
    lww_outcome = Outcome.APPLIED if incoming_wins else Outcome.DROPPED

    saw_loser = winner.base is not None and winner.base >= loser.stamp
    if saw_loser:
        return Merge(winner, lww_outcome)
    if suppress_identical and canonical_equal(winner.value, loser.value):
        return Merge(winner, lww_outcome, suppressed=True)

    if resolver is not None:
        # Arguments in stamp order, so every replica calls it the same way.
        state = FieldWrite(
            resolver(loser.value, winner.value),
            derived_stamp(winner.stamp, loser.stamp),
            base=winner.stamp,
        )
        outcome = Outcome.RESOLVED
    else:
        state, outcome = winner, lww_outcome
    conflict = Conflict(
        collection=ref.collection,
        key=ref.key,
        field=ref.field,
        winner=Side(state.value, state.stamp),
        loser=Side(loser.value, loser.stamp),
        detected_by=detected_by,
    )
    return Merge(state, outcome, conflict=conflict)


def overwrites(current: HLC | None, stamp: HLC, base: HLC | None) -> bool:
    """True when a write (`stamp`, `base`) onto a field stamped `current` simply replaces it.

    That is: the field was never written (`current` is None), or the write is
    newer and its writer had seen the current value (``base >= current``), so
    by laws 2 and 3 `merge_field` returns ``Merge(incoming, Outcome.APPLIED)``,
    no conflict and nothing suppressed, whatever the resolver and suppression
    settings. It is the common case of a push; a caller that knows it can skip
    building the `FieldWrite`s and the `Merge` (``tests/conflicts`` checks the
    equivalence).
    """
    return current is None or (base is not None and stamp > current and base >= current)
