"""Properties of `JobWriter` (over an in-memory store, sharing its clock with a `SyncService`).

Whatever interleaving of job writes (starts, flushes, ends, several jobs in one
transaction) and client pushes (clocks up to 30 s ahead of the server's, even
pushes of job-owned fields, which a good client never does):

1. every job write is, for every field it writes, a plain APPLIED merge of the
   field's state (base = the stamp it replaces): never a conflict, never lost;
2. a job's writes carry strictly increasing stamps, and each change logged is
   the write that the store holds afterwards (same value, same stamp);
3. the log replayed from scratch through `merge_field` ends with every
   ended job's fields equal to its final write, unless a client wrote the
   message after it.

They run on both stores: each example with a new in-memory SQLite store, or
as a new user (their own private space and job ids) of one PostgreSQL database.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from quietsync.conflicts import (
    HLC,
    Clock,
    FieldRef,
    FieldWrite,
    KindMismatchError,
    Outcome,
    Resolvers,
    merge_field,
    wall_clock_ms,
)
from quietsync.protocol import JOB_FIELDS, MESSAGES, Mutation, private_space
from quietsync.server.jobs.sqlite_store import SQLiteJobStore
from quietsync.server.jobs.store import JobRow, JobStore
from quietsync.server.jobs.writer import FlushItem, JobWriter
from quietsync.server.spaces import SpaceService
from quietsync.server.spaces.sqlite_store import SQLiteSpaceStore
from quietsync.server.sqlite_store import SQLiteStore
from quietsync.server.store import Store, StoredField
from quietsync.server.sync import SyncService
from tests.server.helpers import Writer, decoded

MESSAGE_IDS = ("m1", "m2", "m3")
SKEW_MS = 30_000

# A step: ("flush", [message ids written in one transaction]) or ("push", message id, field)
steps = st.lists(
    st.one_of(
        st.tuples(
            st.just("flush"), st.lists(st.sampled_from(MESSAGE_IDS), min_size=1, unique=True)
        ),
        st.tuples(
            st.just("push"),
            st.sampled_from(MESSAGE_IDS),
            st.sampled_from(["content", "role", "job_status"]),
        ),
    ),
    max_size=25,
)


@attrs.define
class _State:
    """One message's job as the test drives it: its row, its content, its phase."""

    row: JobRow
    content: str = ""
    started: bool = False
    ended: bool = False
    written_after: bool = False
    """A client pushed to the message after the job's last write."""


def spaces_of(store: SQLiteStore) -> SpaceService:
    """The space rules over `store`'s membership tables."""
    return SpaceService(SQLiteSpaceStore(store), store, max_per_user=10)


@attrs.frozen
class Backend:
    """A store, its jobs and spaces beside it, and a user with nothing in it yet."""

    store: Store
    jobs: JobStore
    spaces: SpaceService
    user: str


NewBackend = Callable[[], AbstractContextManager[Backend]]


@contextmanager
def _sqlite_backend() -> Iterator[Backend]:
    store = SQLiteStore(":memory:")
    try:
        yield Backend(store, SQLiteJobStore(store), spaces_of(store), "alice")
    finally:
        store.close()


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def new_backend(request: pytest.FixtureRequest) -> Iterator[NewBackend]:
    """A backend for each example, on the store the parameter names (module docstring)."""
    if request.param == "sqlite":
        yield _sqlite_backend
        return
    from quietsync.server.jobs.postgres_store import PostgresJobStore
    from quietsync.server.postgres_store import PostgresStore
    from quietsync.server.spaces.postgres_store import PostgresSpaceStore

    store = PostgresStore(request.getfixturevalue("pg_module_url"))
    jobs, spaces = PostgresJobStore(store), PostgresSpaceStore(store)

    @contextmanager
    def new_user() -> Iterator[Backend]:
        yield Backend(
            store, jobs, SpaceService(spaces, store, max_per_user=10), f"u-{uuid.uuid4().hex}"
        )

    try:
        yield new_user
    finally:
        store.close()


def _fields(store: Store, user: str, refs: set[FieldRef]) -> dict[FieldRef, StoredField]:
    with store.transaction(private_space(user)) as tx:
        return tx.fields(refs)


@given(steps)
def test_job_writes_never_conflict_and_always_win(new_backend: NewBackend, plan: list[Any]) -> None:
    with new_backend() as backend:
        _check_job_writes(backend, plan)


def _check_job_writes(backend: Backend, plan: list[Any]) -> None:
    store, user = backend.store, backend.user
    clock = Clock("server")
    sync = SyncService(store, clock, resolvers=Resolvers(), max_batch=100)
    writer = JobWriter(store, backend.jobs, clock, backend.spaces)
    client = Clock("phone", wall=lambda: wall_clock_ms() + SKEW_MS)
    space = private_space(user)
    jobs = {
        m: _State(
            JobRow(user, space, f"job-{user}-{m}", "t1", m, "streaming", HLC.minimal("server"), 0)
        )
        for m in MESSAGE_IDS
    }
    last_stamp: dict[str, HLC] = {}
    pushes = 0
    for step in plan:
        if step[0] == "push":
            pushes += 1
            _, message, field = step
            stamp = client.now()
            m = Mutation(f"phone:{pushes}", MESSAGES, message, field, "lww", stamp, None, "x")
            sync.push(space, decoded([m.to_json()]))
            jobs[message].written_after = True
            continue
        items = []
        for message in step[1]:
            job = jobs[message]
            if job.ended:
                continue
            if not job.started:
                items.append(FlushItem(job.row, "", start=True))
                job.started = True
            elif len(job.content) >= 6:
                job.row = attrs.evolve(job.row, status="complete")
                items.append(FlushItem(job.row, job.content, final=True))
                job.ended = True
            else:
                job.content += "ab"
                items.append(FlushItem(job.row, job.content))
        refs = {FieldRef(MESSAGES, i.row.message_id, f) for i in items for f in sorted(JOB_FIELDS)}
        before = _fields(store, user, refs)
        result = writer.write(items)
        after = _fields(store, user, refs)
        published = result.published.get(space)
        changes = {(c.key, c.field): c for c in (published.changes if published else [])}
        for item, stamp in zip(items, result.stamps, strict=True):
            message = item.row.message_id
            assert message not in last_stamp or stamp > last_stamp[message]  # law 2
            last_stamp[message] = stamp
            for field in JOB_FIELDS if (item.start or item.final) else {"content"}:
                ref = FieldRef(MESSAGES, message, field)
                change = changes[message, field]
                old = before.get(ref)
                incoming = FieldWrite(change.value, change.stamp, change.base)
                current = None if old is None else FieldWrite(old.value, old.stamp, old.base)
                merge = merge_field(current, incoming, ref=ref)
                assert merge.outcome is Outcome.APPLIED and merge.conflict is None  # law 1
                assert change.stamp == stamp == after[ref].stamp  # law 2
                assert change.value == after[ref].value
            jobs[message].written_after = False
    replayed: dict[FieldRef, FieldWrite] = {}
    for change in sync.pull(space, 0, 10_000).changes:
        ref = FieldRef(change.collection, change.key, change.field)
        merged = merge_field(
            replayed.get(ref), FieldWrite(change.value, change.stamp, change.base), ref=ref
        )
        replayed[ref] = merged.state
    for message, job in jobs.items():
        if job.ended and not job.written_after:  # law 3
            assert replayed[FieldRef(MESSAGES, message, "content")].value == job.content
            assert replayed[FieldRef(MESSAGES, message, "job_status")].value == "complete"
            assert replayed[FieldRef(MESSAGES, message, "pending")].value is False


def test_one_write_is_one_transaction_across_users() -> None:
    """The flusher's tick commits every user's jobs together, or none of them."""
    store = SQLiteStore(":memory:")
    clock = Clock("server")
    sync = SyncService(store, clock, resolvers=Resolvers(), max_batch=100)
    jobs = SQLiteJobStore(store)
    writer = JobWriter(store, jobs, clock, spaces_of(store))
    crdt = Writer("phone").text("m2", "content", "draft", collection=MESSAGES)
    sync.push(private_space("bob"), decoded([crdt]))
    rows = [
        JobRow(
            user,
            private_space(user),
            f"job-{user}",
            "t1",
            message,
            "streaming",
            HLC.minimal("server"),
            0,
        )
        for user, message in (("alice", "m1"), ("bob", "m2"))
    ]
    try:
        with pytest.raises(KindMismatchError):
            writer.write([FlushItem(row, "", start=True) for row in rows])
        assert sync.pull(private_space("alice"), 0, 100).changes == []
        assert jobs.load() == []
        result = writer.write([FlushItem(rows[0], "", start=True)])
        assert {c.field for c in result.published[private_space("alice")].changes} == JOB_FIELDS
        assert [r.job_id for r in jobs.load()] == ["job-alice"]
    finally:
        store.close()
