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
5. An end of a complete/error job marked `FlushItem.notify` (nobody watches
   it) writes `notification_for(...)` in the same transaction (base None),
   unless ``muted_threads/<thread>`` says muted or any field of that
   notification record already exists: a client wrote it first (one record,
   no conflict), or wrote a field of it as crdt text, which the server's lww
   write must not turn over (logged, rate limited).
7. The kind rule holds for the server's writes as for a push: every write is
   lww, and a field stored with crdt writes is never written over
   (`KindMismatchError`), so no replica ever pulls a field whose kind flips.
6. Every field written appends one change to the space's log (the job's
   user's private space), numbered from the space's head; the changes are
   returned for the live hub.
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
from quietsync.server.jobs.store import JobRow, JobStore
from quietsync.server.live import Published
from quietsync.server.ratelog import RateLimitedLog
from quietsync.server.store import BatchWrite, Store, StoredField

__all__ = ["FlushItem", "FlushResult", "JobWriter"]

log = logging.getLogger(__name__)


@attrs.frozen
class FlushItem:
    """One job's write in a flush: a start, new content, or an end (`final` set)."""

    row: JobRow
    """The job's row as it must be stored after this write (its stamp is replaced)."""
    content: str
    start: bool = False
    final: bool = False
    notify: bool = False


@attrs.frozen
class FlushResult:
    """What one transaction committed: each item's stamp, and the changes per space."""

    stamps: list[HLC]
    published: dict[str, Published]
    notified: list[str]
    """Ids of the jobs whose notification was written."""


class JobWriter:
    """Writes job state into records (see the module docstring). Store thread only."""

    def __init__(self, store: Store, jobs: JobStore, clock: Clock) -> None:
        self._store = store
        self._jobs = jobs
        self._clock = clock
        self._log = RateLimitedLog(log)

    @property
    def node(self) -> str:
        """The node id this writer stamps with (the server's)."""
        return self._clock.node

    def write(self, items: list[FlushItem]) -> FlushResult:
        """Write `items` in one transaction (rolled back whole if anything fails)."""
        stamps: dict[int, HLC] = {}
        published: dict[str, Published] = {}
        notified: list[str] = []
        by_user: dict[str, list[tuple[int, FlushItem]]] = defaultdict(list)
        for index, item in enumerate(items):
            by_user[item.row.user].append((index, item))
        with self._store.write_transaction() as tx:
            rows = []
            for user, entries in by_user.items():
                space = tx.space(private_space(user))
                batch = BatchWrite(first_seq=space.head() + 1)
                stored = space.fields({ref for _, item in entries for ref in _refs_read(item)})
                for index, item in entries:
                    for ref in _job_values(item):
                        _check_lww(ref, stored)  # before anything of this item is written
                    stamp = self._clock.now()
                    stamps[index] = stamp
                    for ref, value in _job_values(item).items():
                        _put(batch, stored, ref, value, stamp, item)
                    if self._should_notify(item, stored):
                        key, fields = _notification(item, stamp)
                        for field, value in fields.items():
                            _put(
                                batch,
                                stored,
                                FieldRef(NOTIFICATIONS, key, field),
                                value,
                                stamp,
                                item,
                            )
                        notified.append(item.row.job_id)
                    rows.append(attrs.evolve(item.row, stamp=stamp))
                space.write(batch)
                size = sum(len(item.content) for _, item in entries)
                published[private_space(user)] = Published(
                    batch.first_seq - 1, batch.changes(), size
                )
            self._jobs.save(tx, rows)
        return FlushResult([stamps[i] for i in range(len(items))], published, notified)

    def recover(self) -> list[JobRow]:
        """Every stored job, with its content read from its message record (held once)."""
        rows = self._jobs.load()
        if not rows:
            return rows
        contents: dict[tuple[str, str], str] = {}
        with self._store.write_transaction() as tx:
            for row in rows:
                ref = FieldRef(MESSAGES, row.message_id, "content")
                field = tx.space(private_space(row.user)).fields({ref}).get(ref)
                if field is not None and isinstance(field.value, str):
                    contents[row.user, row.job_id] = field.value
        return [attrs.evolve(r, content=contents.get((r.user, r.job_id), "")) for r in rows]

    def purge(self, ended_before_ms: int) -> int:
        return self._jobs.purge(ended_before_ms)

    def thread_messages(self, user: str, thread_id: str) -> dict[str, dict[str, Any]]:
        """The thread's message records a job's history is made of (`JobStore`)."""
        return self._jobs.thread_messages(private_space(user), thread_id)

    def _should_notify(self, item: FlushItem, stored: dict[FieldRef, StoredField]) -> bool:
        if not _may_notify(item):
            return False
        muted = stored.get(FieldRef(MUTED_THREADS, item.row.thread_id, "muted"))
        deleted = stored.get(FieldRef(MUTED_THREADS, item.row.thread_id, DELETED_FIELD))
        if muted is not None and muted.value is True and not (deleted and deleted.value is True):
            return False
        key, _ = _notification(item, HLC.minimal(self.node))
        existing = [
            f for ref, f in stored.items() if (ref.collection, ref.key) == (NOTIFICATIONS, key)
        ]
        if any(f.kind != "lww" for f in existing):
            self._log.failure(
                f"notification kind: {item.row.user}",
                f"notification {key!r} of user {item.row.user!r} not written: "
                "the user wrote a field of it as crdt text",
            )
        return not existing


def _check_lww(ref: FieldRef, stored: dict[FieldRef, StoredField]) -> None:
    """The kind rule for a server write: raise unless `ref` is new or holds lww writes."""
    current = stored.get(ref)
    if current is not None and current.kind != "lww":
        raise KindMismatchError(ref.field, current.kind, "lww")


def _may_notify(item: FlushItem) -> bool:
    """An unwatched end that is not an abort (aborts never notify)."""
    return item.final and item.notify and item.row.status in ("complete", "error")


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


def _refs_read(item: FlushItem) -> set[FieldRef]:
    """Every field whose stored state this item's write depends on."""
    refs = set(_job_values(item))
    if _may_notify(item):
        thread = item.row.thread_id
        refs |= {FieldRef(MUTED_THREADS, thread, "muted")}
        refs |= {FieldRef(MUTED_THREADS, thread, DELETED_FIELD)}
        key, fields = _notification(item, HLC.minimal("server"))
        refs |= {FieldRef(NOTIFICATIONS, key, field) for field in fields}
    return refs


def _put(
    batch: BatchWrite,
    stored: dict[FieldRef, StoredField],
    ref: FieldRef,
    value: Any,
    stamp: HLC,
    item: FlushItem,
) -> None:
    """Write one lww field (base = the stamp it replaces): log it, and note its new state."""
    _check_lww(ref, stored)
    current = stored.get(ref)
    base = None if current is None else current.stamp
    stored[ref] = StoredField("lww", stamp, base, value=value)
    seq = batch.first_seq + len(batch.log)
    change_id = f"{stamp.node}:job:{item.row.job_id}:{seq}"
    write = Mutation(change_id, ref.collection, ref.key, ref.field, "lww", stamp, base, value)
    batch.log.append(write)
