"""`SyncService`: the server's merge policy over a `server.store.Store`.

A push is handled in one store transaction. Most pushes are plain
overwrites (lww writes, each onto a new field or one its writer had seen):
`server.overwrite` writes those straight from their wire form, when the store
can (`server.store.OverwriteTransaction`), with the outcome the steps below
would give. Every other push is decided write by write, in two steps:

1. **Decide, for every mutation, without writing.** Take it decoded
   (`quietsync.protocol.decode_push`; its id must be ``<client>:<n>``), answer ids seen
   before from the client's mark, refuse stamps beyond the clock-drift bound
   (`Clock.check_drift`), kinds that differ from the field's stored kind or
   from an earlier write of the batch, garbage CRDT updates, and non-boolean
   tombstones. Every other mutation is merged into an in-memory working copy
   of the fields it touches, through `conflicts.merge_field` (lww) or
   `conflicts.merge_text_state` (crdt). An lww write that
   `conflicts.lww.overwrites` its field (a new field, or a newer write that saw
   the current one: most of them) is applied without building merge_field's
   inputs and result, which is exactly what merge_field would do.
2. **Write everything or nothing.** If any mutation was refused, raise
   `MutationsRefusedError` naming every one of them: the transaction rolls back
   having written nothing. Otherwise hand the store one `BatchWrite`.

Rules:

* Each mutation whose outcome is APPLIED or RESOLVED becomes its field's new
  state with the next seq: the incoming write for APPLIED, the resolved value
  under its derived stamp for RESOLVED. DUPLICATE and DROPPED change nothing.
* A crdt write's update is always merged into the field's state (applying a
  Yjs update is idempotent): it is APPLIED, or DUPLICATE when it added
  nothing and its stamp is not above the field's. Never judged by its stamp
  alone: two different updates may share one (one write call, or a write
  re-pushed after a restore beside an edit of the same call). The field's
  stamp is the highest stamp merged, even one whose edit changed nothing
  here (two replicas deleting the same characters): replicas keep the
  highest stamp they saw, so the server must too or they would disagree.
* **Idempotency per client.** A client's mutation ids grow (``<client>:<n>``,
  see `server.store.ClientMark`): an id at or below the client's high-water
  mark, or seen earlier in the same batch, is answered with its recorded
  outcome (``duplicate`` if it is older than the client's last push) and not
  merged again. The marks are written with the batch. A client's marks are
  its pusher's (`server.mutation_ids.mark_key`): in a shared space, one
  member cannot claim another member's ids (every pull shows them) to have
  that member's later writes answered ``duplicate`` and never applied.
* **Delete versus edit** (`conflicts.tombstone`): on a record that is
  deleted after the push, every write stamped after the tombstone is an edit
  the delete did not cover; it stays under the tombstone and is reported,
  once per write, as a conflict on ``_deleted`` (the push reads each
  touched record's tombstone with the fields it writes, and all fields of a
  record only when the push deletes it).
* Changes are numbered here, consecutively from the space's head as read
  inside the same transaction.
* The server clock observes every accepted stamp after the commit (it keeps
  only the highest, so observing the highest is observing them all).

Every call acts on one space (`quietsync.protocol.spaces`; the caller has
checked the user may, `quietsync.server.spaces`). Conflicts name the users on
each side (`Side.user`): the pusher, and the writer the store keeps for each
field.

A pull answers from the store's state, unless the replica must resync
(`ResyncRequiredError`, ``docs/protocol.md``): it knows another history of
this server (a restore, a reset), its cursor is past the user's head (the
server went back), or its cursor is below the tombstone horizon (it may have
missed a delete that compaction removed).

Runs on the store's worker thread; it does no I/O of its own.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from typing import cast

import attrs

from quietsync.conflicts import (
    HLC,
    Clock,
    ClockDriftError,
    Conflict,
    CrdtUpdateError,
    FieldRef,
    FieldWrite,
    KindMismatchError,
    Outcome,
    Resolvers,
    check_text_update,
    merge_field,
    merge_text_state,
    overwrites,
    text_of,
    uncovered_edits,
)
from quietsync.protocol import (
    DELETED_FIELD,
    Change,
    DecodedPush,
    Mutation,
    Unreadable,
    WireError,
    WirePushAnswer,
    WireResult,
    conflict_to_wire,
    encode,
)
from quietsync.server.errors import (
    BatchTooLargeError,
    MutationsRefusedError,
    Refusal,
    ResyncRequiredError,
)
from quietsync.server.mutation_ids import client_and_number, mark_key
from quietsync.server.overwrite import Overwritten, write_overwrites
from quietsync.server.store import (
    BatchWrite,
    ChangePage,
    ClientMark,
    ConflictPage,
    FieldKey,
    Store,
    StoredField,
    Transaction,
    numbered,
)

__all__ = ["PushResult", "SyncService"]


@attrs.frozen
class PushResult:
    """The answer to an accepted push, and the changes it committed (for live sockets)."""

    results: list[tuple[str, str]]
    conflicts: list[Conflict]
    suppressed: int
    cursor: int
    history: str
    space: str
    """The space it was committed in."""
    first_seq: int
    """The seq of its first change (``cursor + 1`` when it changed nothing)."""
    log: Callable[[], Sequence[Mutation]]
    """The writes it committed, in seq order (made when asked: only live sockets need them)."""

    def changes(self) -> list[Change]:
        """The changes the push committed, numbered (built on demand, for live sockets)."""
        return numbered(self.log(), self.first_seq)

    def to_json_bytes(self) -> bytes:
        """The answer to the push (``docs/protocol.md``), encoded from its schema."""
        answer = WirePushAnswer(
            [WireResult(mid, outcome) for mid, outcome in self.results],  # type: ignore[arg-type]
            [conflict_to_wire(c) for c in self.conflicts],
            self.suppressed,
            self.cursor,
            self.history,
        )
        return encode(answer)


@attrs.define
class _Batch:
    """The working state of one push while it is being decided."""

    marks: dict[str, ClientMark]
    """The stored mark of each client of the batch."""
    fields: dict[FieldKey, StoredField | Mutation]
    """Each field's state so far: as stored, or the lww write of this push that set it."""
    write: BatchWrite
    drift_bound: int
    """`Clock.drift_bound` as the push began: stamps at or below it need no `check_drift`."""
    refused: list[Refusal] = attrs.Factory(list)
    results: list[tuple[str, str]] = attrs.Factory(list)
    answered: dict[str, dict[int, str]] = attrs.Factory(lambda: defaultdict(dict))
    """Each client's outcomes in this batch, by mutation number."""
    suppressed: int = 0
    texts: dict[FieldKey, _TextWrites] = attrs.Factory(dict)
    """The crdt writes of this push, per field, merged once at the end (`_merge_texts`)."""
    highest: HLC | None = None
    """The highest stamp of the writes decided here, for the clock to observe after the
    commit. A write answered from its client's mark is not decided again, and its stamp
    was never drift-checked: observing it could fail after the commit."""

    def recorded(self, client: str, n: int) -> str | None:
        """The outcome already given to mutation `n` of `client` (this batch, or before)."""
        outcome = self.answered[client].get(n)
        if outcome is None and client in self.marks:
            outcome = self.marks[client].outcome(n)
        return outcome

    def answer(self, mid: str, client: str, n: int, outcome: str) -> None:
        self.answered[client][n] = outcome
        self.results.append((mid, outcome))

    def log_lww(self, key: FieldKey, write: Mutation) -> None:
        """Log lww `write`, which is field `key`'s new state (for the store too)."""
        self.fields[key] = write
        self.write.log.append(write)


@attrs.define
class _TextWrites:
    """The crdt writes of one push to one field, and the field as it was stored."""

    stored: StoredField | None
    writes: list[tuple[Mutation, int, str, int]] = attrs.Factory(list)
    """Each write with its index in the push, client and number (its answer may change)."""


class SyncService:
    """Push, pull and conflicts for every user, over one store (see the module docstring)."""

    def __init__(
        self,
        store: Store,
        clock: Clock,
        *,
        resolvers: Resolvers,
        max_batch: int,
        page_max_bytes: int = 4 * 1024 * 1024,
        suppress_identical: bool = True,
    ):
        self._store = store
        self._clock = clock
        self._resolvers = resolvers
        self._max_batch = max_batch
        self._page_max_bytes = page_max_bytes
        self._suppress_identical = suppress_identical

    def push(self, space: str, push: DecodedPush, *, by: str | None = None) -> PushResult:
        """Apply a decoded push to `space` atomically, or raise a `RequestError`, changing
        nothing. `by` is the user pushing: the fields written keep it as their writer, and
        conflicts name the users on each side."""
        if len(push) > self._max_batch:
            raise BatchTooLargeError(
                f"{len(push)} mutations in one push; at most {self._max_batch} allowed"
            )
        with self._store.transaction(space) as tx:
            fast = None
            if push.wire is not None:
                bound = self._clock.drift_bound()
                fast = write_overwrites(tx, space, push.wire, by=by, drift_bound=bound)
            if fast is None:
                result, highest = self._decide(tx, space, push.writes, by)
            else:
                result, highest = self._overwritten(space, push, fast), fast.highest
        if highest is not None:  # observing the highest stamp is observing them all
            self._clock.observe(highest)
        return result

    def _overwritten(self, space: str, push: DecodedPush, fast: Overwritten) -> PushResult:
        """The answer to a push `write_overwrites` wrote: every write applied."""
        wire, applied = push.wire, Outcome.APPLIED.value
        assert wire is not None
        return PushResult(
            [(w.id, applied) for w in wire],
            [],
            0,
            fast.first_seq + len(wire) - 1,
            self.history,
            space,
            fast.first_seq,
            lambda: cast(list[Mutation], push.writes),  # every one valid (it has a wire form)
        )

    def _decide(
        self, tx: Transaction, space: str, writes: list[Mutation | Unreadable], by: str | None
    ) -> tuple[PushResult, HLC | None]:
        """`push`, write by write (see the module docstring), inside its transaction `tx`;
        with the highest stamp of its valid writes, for the clock to observe."""
        refused = [
            Refusal(w.index, w.id, "invalid_mutation", w.reason)
            for w in writes
            if isinstance(w, Unreadable)
        ]
        valid = []
        for index, m in enumerate(writes):
            if isinstance(m, Mutation):
                try:
                    client, n = client_and_number(m.id)
                except WireError as exc:
                    refused.append(Refusal(index, m.id, "invalid_mutation", str(exc)))
                else:
                    client = mark_key(space, by, client)
                    valid.append((index, m, (m.collection, m.key, m.field), client, n))
        touched = {key for _, _, key, _, _ in valid}
        tombstones = {(c, k, DELETED_FIELD) for c, k, _ in touched}
        stored = tx.fields(touched | tombstones)  # tombstones for `_report_deletes`
        batch = _Batch(
            marks=tx.marks({client for *_, client, _ in valid}),
            fields=dict(stored),
            write=BatchWrite(first_seq=tx.head() + 1, writer=by),
            drift_bound=self._clock.drift_bound(),
            refused=refused,
        )
        for index, m, key, client, n in valid:
            self._decide_one(batch, index, m, key, client, n)
        if not batch.refused:
            _merge_texts(batch)  # may refuse writes that cannot merge
        if not batch.refused:
            self._report_deletes(batch, tx)
        if batch.refused:
            batch.refused.sort(key=lambda r: r.index)
            raise MutationsRefusedError(batch.refused, len(writes))
        _name_writers(batch.write.conflicts, stored.values(), by, [m for _, m, *_ in valid])
        batch.write.marks.update(
            (client, ClientMark.after(batch.marks.get(client), outcomes.items()))
            for client, outcomes in batch.answered.items()
        )
        tx.write(batch.write)
        written = batch.write
        result = PushResult(
            batch.results,
            written.conflicts,
            batch.suppressed,
            written.last_seq,
            self.history,
            space,
            written.first_seq,
            lambda: written.log,
        )
        return result, batch.highest

    @property
    def history(self) -> str:
        """The id of the server's history (see `server.sqlite_schema`)."""
        return self._store.history()

    def check_cursor(self, space: str, since: int, history: str | None) -> None:
        """Raise `ResyncRequiredError` unless a replica at `since` in `history` can go on."""
        if history is not None and history != self.history:
            raise ResyncRequiredError("history_changed", self.history)
        if since > self._store.cursor(space):
            raise ResyncRequiredError("cursor_ahead", self.history)
        if 0 < since < self._store.horizon(space):
            raise ResyncRequiredError("cursor_too_old", self.history)

    def pull(self, space: str, since: int, limit: int, history: str | None = None) -> ChangePage:
        """The fields changed after `since` (after `check_cursor`), a page bounded in bytes."""
        self.check_cursor(space, since, history)
        return self._store.changes(space, since, limit, self._page_max_bytes)

    def page(self, space: str, since: int, limit: int) -> ChangePage:
        """`pull` without the cursor check (a live socket that already passed it)."""
        return self._store.changes(space, since, limit, self._page_max_bytes)

    def cursor(self, space: str) -> int:
        return self._store.cursor(space)

    def conflicts(self, space: str, since: int, limit: int) -> ConflictPage:
        return self._store.conflicts(space, since, limit, self._page_max_bytes)

    def close(self) -> None:
        self._store.close()

    def _decide_one(
        self, batch: _Batch, index: int, m: Mutation, key: FieldKey, client: str, n: int
    ) -> None:
        recorded = batch.recorded(client, n)
        if recorded is not None:
            batch.answer(m.id, client, n, recorded)
            return
        current = batch.fields.get(key)
        try:
            self._check(batch, m, current)
            outcome = self._merge(batch, m, key, current)
            if m.kind == "crdt":
                batch.texts[key].writes.append((m, index, client, n))
            if batch.highest is None or m.stamp > batch.highest:
                batch.highest = m.stamp
        except ClockDriftError as exc:
            batch.refused.append(Refusal(index, m.id, "clock_drift", str(exc)))
        except KindMismatchError as exc:
            batch.refused.append(Refusal(index, m.id, "kind_mismatch", str(exc)))
        except CrdtUpdateError as exc:
            batch.refused.append(Refusal(index, m.id, "bad_crdt_update", str(exc)))
        except WireError as exc:
            batch.refused.append(Refusal(index, m.id, "invalid_mutation", str(exc)))
        else:
            batch.answer(m.id, client, n, outcome.value)

    def _report_deletes(self, batch: _Batch, tx: Transaction) -> None:
        """Report the edits a winning delete did not cover (`conflicts.tombstone`).

        For each record this push wrote that is deleted afterwards: a delete
        of this push is checked against every field of the record (read
        here, deletes are few), a standing delete only against the fields
        this push wrote.
        """
        deleted: dict[tuple[str, str], FieldWrite] = {}
        for record in {(m.collection, m.key) for m in batch.write.log}:
            tomb = batch.fields.get((*record, DELETED_FIELD))
            if tomb is not None and tomb.value is True:
                deleted[record] = FieldWrite(True, tomb.stamp, tomb.base)
        if not deleted:  # the common case: no deleted record written
            return
        written: dict[tuple[str, str], dict[str, FieldWrite]] = defaultdict(dict)
        for m in batch.write.log:  # in order: a field's last entry is its state
            if m.kind == "lww" and (m.collection, m.key) in deleted:
                written[m.collection, m.key][m.field] = FieldWrite(m.value, m.stamp, m.base)
        for ref, text in batch.write.fields.items():
            if (ref.collection, ref.key) in deleted:
                written[ref.collection, ref.key][ref.field] = _as_write(text)
        newly = [record for record in deleted if DELETED_FIELD in written[record]]
        stored: dict[tuple[str, str], dict[str, FieldWrite]] = defaultdict(dict)
        for (collection, key, field), state in tx.records(newly).items():
            stored[collection, key][field] = _as_write(state)
        for (collection, key), tomb in deleted.items():
            changed = written[collection, key]
            fields = {**stored[collection, key], **changed}
            fields.pop(DELETED_FIELD, None)
            batch.write.conflicts.extend(
                uncovered_edits(
                    tomb,
                    fields,
                    changed.keys(),
                    ref=FieldRef(collection, key, DELETED_FIELD),
                    detected_by=self._clock.node,
                )
            )

    def _check(self, batch: _Batch, m: Mutation, current: StoredField | Mutation | None) -> None:
        """Raise if `m` must be refused (see the module docstring); change nothing."""
        if m.stamp.wall_ms > batch.drift_bound:
            self._clock.check_drift(m.stamp)
        if m.base is not None and m.base.wall_ms > batch.drift_bound:
            self._clock.check_drift(m.base)
        if m.field == DELETED_FIELD:
            if m.kind != "lww":
                raise KindMismatchError(m.field, "lww", m.kind)
            if not isinstance(m.value, bool):
                raise WireError(f"{DELETED_FIELD!r} must be true or false, got {m.value!r:.80}")
        if current is not None and current.kind != m.kind:
            raise KindMismatchError(m.field, current.kind, m.kind)

    def _merge(
        self, batch: _Batch, m: Mutation, key: FieldKey, current: StoredField | Mutation | None
    ) -> Outcome:
        """Merge `m` into the working copy of its field; log the change it makes, if any."""
        if m.kind == "crdt":
            return _merge_crdt(batch, m, key, current)
        if overwrites(None if current is None else current.stamp, m.stamp, m.base):
            batch.log_lww(key, m)
            return Outcome.APPLIED
        assert current is not None  # `overwrites` holds for every first write
        merge = merge_field(
            FieldWrite(current.value, current.stamp, current.base),
            FieldWrite(m.value, m.stamp, m.base),
            ref=FieldRef(*key),
            resolver=self._resolvers.get(m.collection, m.field),
            suppress_identical=self._suppress_identical,
            detected_by=self._clock.node,
        )
        batch.suppressed += merge.suppressed
        if merge.conflict is not None:
            batch.write.conflicts.append(merge.conflict)
        if merge.changed:
            state = merge.state  # `m` as logged: the field's new state
            batch.log_lww(
                key, attrs.evolve(m, value=state.value, stamp=state.stamp, base=state.base)
            )
        return merge.outcome


def _name_writers(
    conflicts: list[Conflict],
    stored: Iterable[StoredField],
    by: str | None,
    pushed: list[Mutation],
) -> None:
    """Name the user on each side of `conflicts` (`Side.user`), in place.

    A stamp names one write: a side stamped like a write of this push was
    `by`'s, one stamped like a stored field's state was that field's writer.
    (A resolver's derived stamp is neither: that side names nobody.)
    """
    if not conflicts:
        return
    writers: dict[HLC, str | None] = {f.stamp: f.writer for f in stored}
    writers.update((m.stamp, by) for m in pushed)
    conflicts[:] = [
        attrs.evolve(
            c,
            winner=attrs.evolve(c.winner, user=writers.get(c.winner.stamp)),
            loser=attrs.evolve(c.loser, user=writers.get(c.loser.stamp)),
        )
        for c in conflicts
    ]


def _as_write(state: StoredField) -> FieldWrite:
    """A stored field as the merge core sees it (a text field: its plain text)."""
    value = text_of(state.state) if state.kind == "crdt" and state.state else state.value
    return FieldWrite(value, state.stamp, state.base)


def _merge_crdt(
    batch: _Batch, m: Mutation, key: FieldKey, current: StoredField | Mutation | None
) -> Outcome:
    """Check crdt write `m` and set it aside for its field's one merge (`_merge_texts`)."""
    assert m.update is not None
    assert not isinstance(current, Mutation)  # only lww writes are, and kinds were checked
    check_text_update(m.update)
    group = batch.texts.get(key)
    if group is None:
        group = batch.texts[key] = _TextWrites(current)
        if current is None:  # later writes of the push must see the field's kind
            batch.fields[key] = StoredField("crdt", m.stamp)
    return Outcome.APPLIED  # until `_merge_texts` finds the field's writes added nothing


def _merge_texts(batch: _Batch) -> None:
    """Merge each field's crdt writes into its state at once, and log them.

    One merge per field and push, however many writes it holds: a merge
    costs the document's size, so merging write by write made a push of 500
    keystrokes cost 500 documents. The state stored is the document's own
    encoding (`merge_text_state`), not the updates merged as bytes: those
    keep every keystroke as a struct of its own, and the automerge-paper
    trace grew to 12x its document and took a fresh replica seconds to
    apply. A state stored the old way is compacted by the field's next
    change. The writes of a field are answered together: ``applied``, or
    ``duplicate`` when together they added nothing and carry no higher stamp
    (a replica re-pushing what the server holds); "added nothing" is what
    the document reports, never a comparison of encodings, which differ for
    one document (an old state against its compact form, say).
    """
    for key, group in batch.texts.items():
        stored = group.stored
        writes = [m for m, *_ in group.writes]
        updates = [m.update or b"" for m in writes]
        try:
            merged = merge_text_state(  # each update was checked by `_merge_crdt`
                stored.state if stored else None, *updates, checked=True
            )
        except CrdtUpdateError as exc:  # each was read alone; together they do not apply
            batch.refused += [
                Refusal(index, m.id, "bad_crdt_update", str(exc)) for m, index, *_ in group.writes
            ]
            continue
        top: StoredField | Mutation = max(writes, key=lambda m: m.stamp)
        if stored is not None:
            if not merged.added and top.stamp <= stored.stamp:
                _answer_again(batch, group, Outcome.DUPLICATE)
                continue
            top = top if top.stamp > stored.stamp else stored
        batch.write.log.extend(writes)
        batch.write.fields[FieldRef(*key)] = StoredField(
            "crdt", top.stamp, top.base, state=merged.state
        )


def _answer_again(batch: _Batch, group: _TextWrites, outcome: Outcome) -> None:
    """Change the answer already given to each write of `group` to `outcome`."""
    mids = {m.id for m, *_ in group.writes}
    for *_, client, n in group.writes:
        batch.answered[client][n] = outcome.value
    batch.results = [(mid, outcome.value if mid in mids else o) for mid, o in batch.results]
