"""Both job stores keep the same `JobStore` contract, each beside its sync store.

Every test runs on SQLite and on a real PostgreSQL (`tests.pg`): rows saved in
the sync store's write transaction commit or roll back with its record writes,
a row is replaced by its key, rows load oldest first and survive reopening,
purge counts what it removed, a thread's messages are read from the space's
records, and each job table keeps its own schema version in ``meta``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import attrs
import pytest

from quietsync.conflicts import HLC
from quietsync.protocol import DELETED_FIELD, MESSAGES, Mutation, private_space
from quietsync.server.errors import ConfigError, JobTakenError
from quietsync.server.jobs import postgres_store as postgres_jobs
from quietsync.server.jobs import sqlite_store as sqlite_jobs
from quietsync.server.jobs.feature import open_job_store
from quietsync.server.jobs.store import JobRow, JobStore
from quietsync.server.postgres_store import PostgresStore
from quietsync.server.sqlite_store import SQLiteStore
from quietsync.server.store import BatchWrite, Store
from tests.server.store_contract import BIG, commit

SPACE = "s:team"
Opened = tuple[Store, JobStore]


@pytest.fixture(params=["sqlite", "postgres"])
def store_kind(request: pytest.FixtureRequest) -> str:
    """Every test here runs on both stores."""
    return str(request.param)


@pytest.fixture
def open_stores(server_db: Path | str) -> Iterator[Callable[[], Opened]]:
    """Opens the sync store on the test's database and the job store beside it (as the
    server does); whatever is still open is closed after the test."""
    opened: list[Store] = []

    def open_() -> Opened:
        store: Store = (
            PostgresStore(server_db) if isinstance(server_db, str) else SQLiteStore(server_db)
        )
        opened.append(store)
        return store, open_job_store(store)

    yield open_
    for store in opened:
        store.close()


@pytest.fixture
def stores(open_stores: Callable[[], Opened]) -> Opened:
    return open_stores()


def job(
    job_id: str = "j1", *, user: str = "alice", started_ms: int = 1, **fields: object
) -> JobRow:
    row = JobRow(
        user,
        SPACE,
        job_id,
        "t1",
        f"m-{job_id}",
        "streaming",
        HLC(started_ms, 0, "server"),
        started_ms,
    )
    return attrs.evolve(row, **fields)


def lww(key: str, field: str, value: object, wall: int = 1) -> Mutation:
    return Mutation(f"n1:{wall}", MESSAGES, key, field, "lww", HLC(wall, 0, "n1"), value=value)


def save_with_a_record(store: Store, jobs: JobStore, row: JobRow, *, fail: bool = False) -> None:
    """Save `row` in the write transaction that writes its message's ``pending`` field."""
    with store.write_transaction() as tx:
        space = tx.space(SPACE)
        space.write(BatchWrite(space.head() + 1, [lww(row.message_id, "pending", True)]))
        jobs.save(tx, [row])
        if fail:
            raise RuntimeError("the transaction fails after the writes")


def schema_version(store: Store) -> int:
    query = "SELECT value FROM meta WHERE name = 'jobs_schema_version'"
    if isinstance(store, PostgresStore):
        return int(store.connection.fetchval(query))
    assert isinstance(store, SQLiteStore)
    return int(store.connection.execute(query).fetchone()[0])


def steps_of(store: Store) -> int:
    return len(postgres_jobs.STEPS if isinstance(store, PostgresStore) else sqlite_jobs.STEPS)


def test_a_row_commits_with_the_record_writes_of_its_transaction(stores: Opened) -> None:
    store, jobs = stores
    save_with_a_record(store, jobs, job("j1"))
    assert jobs.load() == [job("j1")]
    assert [c.key for c in store.changes(SPACE, 0, 10, BIG).changes] == ["m-j1"]


def test_a_failed_transaction_keeps_neither_the_row_nor_the_records(stores: Opened) -> None:
    store, jobs = stores
    with pytest.raises(RuntimeError):
        save_with_a_record(store, jobs, job("j1"), fail=True)
    assert jobs.load() == []
    assert store.changes(SPACE, 0, 10, BIG).changes == []


def test_a_row_is_replaced_by_its_user_and_job_id(stores: Opened) -> None:
    store, jobs = stores
    ended = job("j1", status="error", error="interrupted", ended_ms=9, stamp=HLC(9, 1, "server"))
    theirs = job("j1", user="bob", space=private_space("bob"), started_ms=2)
    with store.write_transaction() as tx:
        jobs.save(tx, [job("j1"), theirs])
    with store.write_transaction() as tx:
        jobs.save(tx, [ended])
    assert jobs.load() == [ended, theirs]


def test_rows_load_oldest_first_and_survive_reopening(open_stores: Callable[[], Opened]) -> None:
    store, jobs = open_stores()
    rows = [job("late", started_ms=30), job("early", started_ms=10), job("mid", started_ms=20)]
    with store.write_transaction() as tx:
        jobs.save(tx, rows)
    store.close()
    _, again = open_stores()
    assert [row.job_id for row in again.load()] == ["early", "mid", "late"]


def test_purge_removes_the_jobs_ended_before_the_cutoff(stores: Opened) -> None:
    store, jobs = stores
    rows = [job("old", ended_ms=5), job("edge", ended_ms=10), job("new", ended_ms=15), job("live")]
    with store.write_transaction() as tx:
        jobs.save(tx, rows)
    assert jobs.purge(10) == 1
    assert jobs.purge(10) == 0
    assert {row.job_id for row in jobs.load()} == {"edge", "new", "live"}


def test_thread_messages_are_the_lww_fields_of_the_threads_messages_in_the_space(
    stores: Opened,
) -> None:
    store, jobs = stores
    thread = "t-é👋🏽"
    mine = [
        lww("m1", "thread_id", thread),
        lww("m1", "role", "user"),
        lww("m1", "content", "Bonjour 👋🏽"),
        lww("m1", "created_at", 1),
        lww("m1", "model", "ignored: not a field the history reads"),
        lww("m2", "thread_id", thread),
        lww("m2", "role", "assistant"),
        lww("m2", DELETED_FIELD, True),
        lww("other", "thread_id", "t-2"),
        lww("other", "role", "user"),
    ]
    commit(store, SPACE, *mine)
    commit(store, private_space("alice"), lww("m3", "thread_id", thread), lww("m3", "role", "user"))
    assert jobs.thread_messages(SPACE, thread) == {
        "m1": {"role": "user", "content": "Bonjour 👋🏽", "created_at": 1},
        "m2": {"role": "assistant", DELETED_FIELD: True},
    }
    assert jobs.thread_messages(SPACE, "t-missing") == {}


def test_the_job_table_keeps_its_own_schema_version(open_stores: Callable[[], Opened]) -> None:
    store, _ = open_stores()
    assert schema_version(store) == steps_of(store)
    store.close()
    store, _ = open_stores()  # reopening migrates nothing
    assert schema_version(store) == steps_of(store)


def test_a_postgres_job_table_from_a_newer_quietsync_is_refused(pg_url: str) -> None:
    """(SQLite's refusal is its schema module's `migrate`, tested with the sync store.)"""
    store = PostgresStore(pg_url)
    try:
        open_job_store(store)
        store.connection.execute(
            "UPDATE meta SET value = $1 WHERE name = 'jobs_schema_version'",
            str(len(postgres_jobs.STEPS) + 1),
        )
        with pytest.raises(ConfigError, match="newer than"):
            open_job_store(store)
    finally:
        store.close()


def save_with_content(store: Store, jobs: JobStore, row: JobRow, content: str) -> None:
    """Save `row` in the write transaction that writes its message's ``content``."""
    with store.write_transaction() as tx:
        space = tx.space(row.space)
        space.write(BatchWrite(space.head() + 1, [lww(row.message_id, "content", content)]))
        jobs.save(tx, [row])


def test_find_reads_a_row_with_its_messages_content(stores: Opened) -> None:
    store, jobs = stores
    save_with_content(store, jobs, job("j1"), "Bonjour 👋🏽")
    with store.write_transaction() as tx:
        jobs.save(tx, [job("j2")])  # no content written yet
    assert jobs.find("j1") == job("j1", content="Bonjour 👋🏽")
    assert jobs.find("j2") == job("j2")
    assert jobs.find("unknown") is None


def test_streaming_counts_the_users_jobs_and_the_messages(stores: Opened) -> None:
    store, jobs = stores
    rows = [
        job("a1"),
        job("a2", message_id="m-shared"),
        job("a3", status="complete", ended_ms=2),
        job("b1", user="bob", message_id="m-shared"),
    ]
    with store.write_transaction() as tx:
        jobs.save(tx, rows)
    with store.write_transaction() as tx:
        assert jobs.streaming(tx, "alice", SPACE, "m-shared") == (2, 2)
        assert jobs.streaming(tx, "alice", SPACE, "m-a3") == (2, 0)
        assert jobs.streaming(tx, "carol", "s:other", "m-shared") == (0, 0)


def test_the_orphans_of_a_database_just_opened_are_its_streaming_jobs(
    open_stores: Callable[[], Opened],
) -> None:
    """What a previous process left streaming (the one process of an SQLite database, or
    a PostgreSQL one holding no lock any more): each with its content, claimed once."""
    store, jobs = open_stores()
    save_with_content(store, jobs, job("j1"), "partial")
    with store.write_transaction() as tx:
        jobs.save(tx, [job("j2", status="complete", ended_ms=3)])
    store.close()
    _, again = open_stores()
    if isinstance(again, postgres_jobs.PostgresJobStore):
        again.owner = 1  # as the server's jobs connection sets it
    assert again.orphans() == [job("j1", content="partial")]


def postgres_jobs_of(store: Store, owner: int) -> postgres_jobs.PostgresJobStore:
    jobs = open_job_store(store)
    assert isinstance(jobs, postgres_jobs.PostgresJobStore)
    jobs.owner = owner
    return jobs


def test_postgres_orphans_are_the_jobs_of_owners_without_their_lock(pg_url: str) -> None:
    """Owners 1 and 2 hold their locks (alive), owner 3 does not (gone): owner 1 claims 3's
    streaming jobs only, once; owner 3, back, cannot write them any more."""
    stores = [PostgresStore(pg_url) for _ in range(3)]
    try:
        mine, alive, gone = (postgres_jobs_of(s, n) for s, n in zip(stores, (1, 2, 3), strict=True))
        for store, owner in ((stores[0], 1), (stores[1], 2)):
            store.connection.execute(
                "SELECT pg_advisory_lock($1, $2)", postgres_jobs.OWNER_LOCK, owner
            )
        with stores[1].write_transaction() as tx:
            alive.save(tx, [job("live")])
        save_with_content(stores[2], gone, job("lost"), "prefix")
        with stores[2].write_transaction() as tx:
            gone.save(tx, [job("done", status="complete", ended_ms=2)])
        assert mine.orphans() == [job("lost", content="prefix")]
        assert mine.orphans() == []
        assert alive.orphans() == []
        with pytest.raises(JobTakenError), stores[2].write_transaction() as tx:
            gone.save(tx, [job("lost", status="complete", ended_ms=4)])
        with stores[0].write_transaction() as tx:
            mine.save(tx, [job("lost", status="error", error="interrupted", ended_ms=4)])
        assert mine.find("lost") == job(
            "lost", status="error", error="interrupted", ended_ms=4, content="prefix"
        )
    finally:
        for store in stores:
            store.close()
