"""The common push, written without being decided in Python: plain overwrites.

Most pushes are a replica's own edits: lww writes, none of them a delete, by
one client in the order it made them, each onto a field that is new or that
it overwrites (its writer had seen the field's value: `conflicts.lww.overwrites`),
on records that are not deleted. For such a write `SyncService`'s decision
is always the same (``applied``, no conflict, nothing suppressed, the write
as the field's new state with the next seq), so `write_overwrites` checks
what it can without reading the fields, and leaves the rest to the store
(`server.store.OverwriteTransaction`: on SQLite one upsert whose ``WHERE`` is
`overwrites` on the stamps' text), which writes all of the push or none of
it. A push it does not take (None) is decided write by write, with its
fields read, as any other, in the same transaction: the outcome is the same
either way (``tests/server/test_overwrite.py`` checks that), only the cost
differs. Decided write by write, a push of 1,000 new fields spent about
7 ms building `Mutation`s, reading the fields and deciding them; taken
here, the whole push costs about 1.3 ms more than the bare handler of
``python -m benchmarks.server_push`` (``docs/sync.md``, "Benchmark").

Taken: every write valid as decoded from the body (`DecodedPush.wire`), of
kind lww and not a delete; every stamp within the clock-drift bound (the
highest one is checked: a stamp's text orders as the stamp); each client's
ids above its mark and growing within the push (never a retry); and, as the
store finds, each write overwrites its field and no record written is
deleted (an edit under a delete is reported: `conflicts.tombstone`).
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs

from quietsync.conflicts import HLC
from quietsync.protocol import DELETED_FIELD, WireError, WireWrite
from quietsync.server.mutation_ids import client_and_number, mark_key
from quietsync.server.store import ClientMark, OverwriteTransaction, Transaction

__all__ = ["Overwritten", "write_overwrites"]

_APPLIED = "applied"


@attrs.frozen
class Overwritten:
    """A push `write_overwrites` wrote: every write ``applied``, numbered from `first_seq`."""

    first_seq: int
    highest: HLC
    """The highest stamp written."""


def write_overwrites(
    tx: Transaction,
    space: str,
    writes: Sequence[WireWrite],
    *,
    by: str | None,
    drift_bound: int,
) -> Overwritten | None:
    """Write `writes` into `space` if they are plain overwrites (module docstring), with the
    pushing clients' marks; None if not, having written nothing. `drift_bound`: the
    highest wall time a stamp may have (`Clock.drift_bound`)."""
    if not writes or not isinstance(tx, OverwriteTransaction):
        return None
    highest = max(w.stamp for w in writes)
    bases = [w.base for w in writes if w.base is not None]
    if HLC.parse(highest).wall_ms > drift_bound or (
        bases and HLC.parse(max(bases)).wall_ms > drift_bound
    ):
        return None  # the full path refuses what `check_drift` refuses, naming the write
    numbers = _numbers(space, by, writes)
    if numbers is None:
        return None
    marks = tx.marks(numbers)
    if any(client in marks and ns[0] <= marks[client].hw for client, ns in numbers.items()):
        return None  # a retry: answered from the mark
    first_seq = tx.head() + 1
    applied = {
        client: ClientMark.after(marks.get(client), ((n, _APPLIED) for n in ns))
        for client, ns in numbers.items()
    }
    if not tx.overwrite(first_seq, writes, applied, by):
        return None
    return Overwritten(first_seq, HLC.parse(highest))


def _numbers(
    space: str, by: str | None, writes: Sequence[WireWrite]
) -> dict[str, list[int]] | None:
    """Each client's mutation numbers in push order, by mark key; None unless every write
    is an lww write other than a delete with a valid id, and each client's numbers grow."""
    numbers: dict[str, list[int]] = {}
    for w in writes:
        if w.kind != "lww" or w.field == DELETED_FIELD:
            return None
        try:
            client, n = client_and_number(w.id)
        except WireError:
            return None  # refused by the full path
        ns = numbers.get(client)
        if ns is None:
            numbers[client] = [n]
        elif n > ns[-1]:
            ns.append(n)
        else:
            return None  # a repeated id is answered with its first outcome
    return {mark_key(space, by, client): ns for client, ns in numbers.items()}
