"""`JobWriter`: how a job's state becomes record writes, on the store's worker thread.

The runner (`quietsync.server.jobs.runner.JobRunner`) decides *when* to write;
this module decides *what*, and issues the stamps (the server `Clock` lives on
the store thread, see `quietsync.server.core`). Rules, each the contract the client's mirror writes
rely on (``docs/protocol.md``, "Jobs"):

1. One call to `JobWriter.write` is ONE store transaction, whatever the number
   of jobs and users in it (the flusher's tick: one fsync per tick).
2. Each job written gets ONE fresh stamp, given to every field it writes in
   that transaction: the stamp its job event carries.
3. A start writes all five `JOB_FIELDS` (content "", pending true, job_id,
   job_status "streaming", error null) — or raises `KindMismatchError`,
   writing nothing, if one of them holds crdt writes; a flush writes ``content`` (the whole
   content so far); an end writes all five with the final values.
4. Every field's ``base`` is the stamp the store held for it, and the stamp
   is above it (this clock has absorbed every stamp stored: pushes are
   observed on commit, a restarted clock starts above the highest stamp
   stored), so a job write is never a conflict and never loses to the value
   it replaces — even after a client with a fast clock wrote the field.
5. An end of a complete/error job notifies every reader of the job's space
   (`SpaceService.readers`, in this transaction: a member removed before it
   gets nothing) who is not in `FlushItem.watching` (reading its events):
   `notification_for(...)` is written into that user's private
   space in the same transaction (base None, the end's stamp), unless
   ``muted_threads/<thread>`` of that private space says muted, or any field
   of that notification record already exists there: the user's client wrote
   it first (one record, no conflict), or wrote a field of it as crdt text,
   which the server's lww write must not turn over (logged, rate limited).
   Its key is the job's and the outcome's; the space it lives in is the user's.
6. Every field written appends one change to its space's log (the job's
   space for the message, each notified user's private space for their
   notification), numbered from that space's head; each space touched is
   written once, and its changes are returned for the live hub.
7. The kind rule holds for the server's writes as for a push: every write is
   lww, and a field stored with crdt writes is never written over
   (`KindMismatchError`), so no replica ever pulls a field whose kind flips.
8. A start is written only while its user may write in its space: checked
   in its transaction (`SpaceService.require`), so a removal that committed
   after the request's own check still refuses it.
9. A start is written only under the limits: fewer than `max_per_user` jobs
   of its user streaming (else `TooManyJobsError`), none on its message in
   its space (else `JobRunningError`), counted by the job store in its
   transaction (`JobStore.streaming`: serialized against a start racing in
   another server process).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from typing import Any

import attrs

from quietsync.conflicts import HLC, Clock, FieldRef, KindMismatchError
from quietsync.protocol import (
    DELETED_FIELD,
    JOB_FIELDS,
    MESSAGES,
    MUTED_THREADS,
    NOTIFICATIONS,
    JobEvent,
    Mutation,
    notification_for,
    private_space,
)
from quietsync.protocol.ratelog import RateLimitedLog
from quietsync.server.errors import JobRunningError, TooManyJobsError
from quietsync.server.jobs.config import JobsConfig
from quietsync.server.jobs.store import JobRow, JobStore
from quietsync.server.live import Published
from quietsync.server.spaces import SpaceService
from quietsync.server.store import BatchWrite, Store, StoredField, Transaction, WriteTransaction

__all__ = ["FlushItem", "FlushResult", "JobWriter"]

log = logging.getLogger(__name__)

_DEFAULT_MAX_PER_USER: int = attrs.fields(JobsConfig).max_per_user.default


@attrs.frozen
class FlushItem:
    """One job's write in a flush: a start, new content, or an end (`final` set)."""

    row: JobRow
    """The job's row as it must be stored after this write (its stamp is replaced)."""
    content: str
    start: bool = False
    final: bool = False
    watching: frozenset[str] = frozenset()
    """Of an end: the users reading the job's events (they get no notification)."""


@attrs.frozen
class FlushResult:
    """What one transaction committed: each item's stamp, and the changes per space."""

    stamps: list[HLC]
    published: dict[str, Published]
    notified: list[tuple[str, str]]
    """``(job id, user)`` of each notification written."""


@attrs.define
class _SpaceWrite:
    """One space inside a flush's transaction: what it held, and what this flush writes."""

    tx: Transaction
    batch: BatchWrite
    stored: dict[FieldRef, StoredField]
    size: int = 0

    @classmethod
    def open(cls, tx: WriteTransaction, space: str, refs: set[FieldRef]) -> _SpaceWrite:
        """`space` in `tx`, with the stored state of `refs` (read once, for the whole flush)."""
        inner = tx.space(space)
        return cls(inner, BatchWrite(first_seq=inner.head() + 1), inner.fields(refs))

    def put(self, ref: FieldRef, value: Any, stamp: HLC, job_id: str) -> None:
        """Write one lww field (base = the stamp it replaces): log it, note its new state."""
        _check_lww(ref, self.stored)
        current = self.stored.get(ref)
        base = None if current is None else current.stamp
        self.stored[ref] = StoredField("lww", stamp, base, value=value)
        seq = self.batch.first_seq + len(self.batch.log)
        change_id = f"{stamp.node}:job:{job_id}:{seq}"
        write = Mutation(change_id, ref.collection, ref.key, ref.field, "lww", stamp, base, value)
        self.batch.log.append(write)
        self.size += len(value) if isinstance(value, str) else 8

    def commit(self) -> Published:
        """Write the batch into the space (once per transaction); its changes, for live."""
        self.tx.write(self.batch)
        return Published(self.batch.first_seq - 1, self.batch.changes(), self.size)


def _open_spaces(
    tx: WriteTransaction, items: list[FlushItem], notify: list[list[str]]
) -> dict[str, _SpaceWrite]:
    """Every space the flush touches (each item's, each notified user's private space),
    with the stored state of every field its writes depend on.

    Opened (each one's write lock taken, on PostgreSQL) in the order of their names:
    two flushes of two server processes on one database, each ending a job whose
    notification goes to the other's job's space, would otherwise wait for each other.
    """
    refs: dict[str, set[FieldRef]] = defaultdict(set)
    for item, users in zip(items, notify, strict=True):
        refs[item.row.space] |= set(_job_values(item))
        for user in users:
            refs[private_space(user)] |= _notification_refs(item)
    return {space: _SpaceWrite.open(tx, space, refs[space]) for space in sorted(refs)}


class JobWriter:
    """Writes job state into records (see the module docstring). Store thread only."""

    def __init__(
        self,
        store: Store,
        jobs: JobStore,
        clock: Clock,
        spaces: SpaceService,
        *,
        max_per_user: int = _DEFAULT_MAX_PER_USER,
    ) -> None:
        self._store = store
        self._jobs = jobs
        self._clock = clock
        self._spaces = spaces
        self._max_per_user = max_per_user
        self._log = RateLimitedLog(log)

    @property
    def node(self) -> str:
        """The node id this writer stamps with (the server's)."""
        return self._clock.node

    def write(self, items: list[FlushItem]) -> FlushResult:
        """Write `items` in one transaction (rolled back whole if anything fails)."""
        with self._store.write_transaction() as tx:
            for item in items:
                if item.start:
                    self._spaces.require(item.row.user, item.row.space, "write")  # rule 8
                    self._check_limits(tx, item.row)
            notify = [self._recipients(item) for item in items]
            spaces = _open_spaces(tx, items, notify)
            stamps: list[HLC] = []
            notified: list[tuple[str, str]] = []
            for item, users in zip(items, notify, strict=True):
                target, values = spaces[item.row.space], _job_values(item)
                for ref in values:
                    _check_lww(ref, target.stored)  # before anything of this item is written
                stamp = self._clock.now()
                stamps.append(stamp)
                for ref, value in values.items():
                    target.put(ref, value, stamp, item.row.job_id)
                for user in users:
                    if self._notify(item, stamp, user, spaces[private_space(user)]):
                        notified.append((item.row.job_id, user))
            published = {space: w.commit() for space, w in spaces.items() if w.batch.log}
            rows = [attrs.evolve(i.row, stamp=s) for i, s in zip(items, stamps, strict=True)]
            self._jobs.save(tx, rows)
        return FlushResult(stamps, published, notified)

    def _check_limits(self, tx: WriteTransaction, row: JobRow) -> None:
        """Rule 9, for the start of `row`."""
        mine, on_message = self._jobs.streaming(tx, row.user, row.space, row.message_id)
        if mine >= self._max_per_user:
            raise TooManyJobsError(f"{mine} jobs streaming; at most {self._max_per_user} per user")
        if on_message:
            raise JobRunningError(f"message {row.message_id!r} already has a streaming job")

    def find(self, job_id: str) -> JobRow | None:
        """Job `job_id` as stored, with its message's content (`JobStore.find`)."""
        return self._jobs.find(job_id)

    def orphans(self) -> list[JobRow]:
        """The jobs gone processes left streaming, now this one's (`JobStore.orphans`)."""
        return self._jobs.orphans()

    def purge(self, ended_before_ms: int) -> int:
        return self._jobs.purge(ended_before_ms)

    def thread_messages(self, space: str, thread_id: str) -> dict[str, dict[str, Any]]:
        """The thread's message records a job's history is made of (`JobStore`)."""
        return self._jobs.thread_messages(space, thread_id)

    def _recipients(self, item: FlushItem) -> list[str]:
        """Who this item may notify: the readers of its space not watching it (rule 5)."""
        if not _may_notify(item):
            return []
        return [u for u in self._spaces.readers(item.row.space) if u not in item.watching]

    def _notify(self, item: FlushItem, stamp: HLC, user: str, inbox: _SpaceWrite) -> bool:
        """Write this end's notification into `user`'s private space `inbox`, unless the
        thread is muted there or the record exists (rule 5); whether it was written."""
        muted = inbox.stored.get(FieldRef(MUTED_THREADS, item.row.thread_id, "muted"))
        deleted = inbox.stored.get(FieldRef(MUTED_THREADS, item.row.thread_id, DELETED_FIELD))
        if muted is not None and muted.value is True and not (deleted and deleted.value is True):
            return False
        key, fields = _notification(item, stamp)
        existing = [
            f
            for ref, f in inbox.stored.items()
            if (ref.collection, ref.key) == (NOTIFICATIONS, key)
        ]
        if any(f.kind != "lww" for f in existing):
            self._log.failure(
                f"notification kind: {user}",
                f"notification {key!r} of user {user!r} not written: "
                "the user wrote a field of it as crdt text",
            )
        if existing:
            return False
        for field, value in fields.items():
            inbox.put(FieldRef(NOTIFICATIONS, key, field), value, stamp, item.row.job_id)
        return True


def _check_lww(ref: FieldRef, stored: dict[FieldRef, StoredField]) -> None:
    """The kind rule for a server write: raise unless `ref` is new or holds lww writes."""
    current = stored.get(ref)
    if current is not None and current.kind != "lww":
        raise KindMismatchError(ref.field, current.kind, "lww")


def _may_notify(item: FlushItem) -> bool:
    """An end that is not an abort (aborts never notify)."""
    return item.final and item.row.status in ("complete", "error")


def _notification(item: FlushItem, stamp: HLC) -> tuple[str, dict[str, Any]]:
    """The notification this end writes with `stamp` (its key and field names do not
    depend on the stamp)."""
    return notification_for(item.row.thread_id, _final_event(item, stamp), item.content)


def _final_event(item: FlushItem, stamp: HLC) -> JobEvent:
    """The `status` event this end is announced with (what `notification_for` derives from)."""
    return JobEvent.ending(
        item.row.job_id,
        item.row.status,
        content_length=len(item.content),
        error=item.row.error,
        stamp=stamp,
    )


def _job_values(item: FlushItem) -> dict[FieldRef, Any]:
    """The message fields this item writes, with their values (rule 3)."""
    key = item.row.message_id
    if not (item.start or item.final):
        return {FieldRef(MESSAGES, key, "content"): item.content}
    values = {
        "content": item.content,
        "pending": not item.final,
        "job_id": item.row.job_id,
        "job_status": item.row.status,
        "error": item.row.error,
    }
    assert values.keys() == JOB_FIELDS
    return {FieldRef(MESSAGES, key, field): value for field, value in values.items()}


def _notification_refs(item: FlushItem) -> set[FieldRef]:
    """The fields of a user's private space that decide whether this end notifies them."""
    thread = item.row.thread_id
    refs = {
        FieldRef(MUTED_THREADS, thread, "muted"),
        FieldRef(MUTED_THREADS, thread, DELETED_FIELD),
    }
    key, fields = _notification(item, HLC.minimal("server"))
    return refs | {FieldRef(NOTIFICATIONS, key, field) for field in fields}
