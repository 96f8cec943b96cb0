"""`PostgresStore` passes the store contract on a real PostgreSQL, and keeps seqs readable
in order under concurrent writers on separate connections (as from several processes)."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Callable, Iterator

import aiohttp
import pytest

from quietsync.conflicts import FieldRef
from quietsync.protocol import DELETED_FIELD, MESSAGES
from quietsync.server import ServerConfig
from quietsync.server.errors import ConfigError, StoreError
from quietsync.server.postgres_connection import SyncConnection
from quietsync.server.postgres_schema import STEPS
from quietsync.server.postgres_store import PostgresStore
from quietsync.server.store import Store
from tests.server.job_helpers import records, reply, start, wait_unwatched
from tests.server.processes import serve_process
from tests.server.store_contract import (
    BIG,
    PersistentStoreContract,
    batch,
    commit,
    conflict,
    stamp,
    values,
    write,
)


class TestPostgres(PersistentStoreContract):
    @pytest.fixture
    def store(self, pg_url: str) -> Iterator[PostgresStore]:
        store = PostgresStore(pg_url)
        yield store
        store.close()

    @pytest.fixture
    def reopen(self, pg_url: str) -> Callable[[Store], Store]:
        def reopen(store: Store) -> Store:
            store.close()
            return PostgresStore(pg_url)

        return reopen


def test_concurrent_writers_of_one_space_leave_no_hole_for_a_reader(pg_url: str) -> None:
    """Two connections push into one space while a third pulls from its cursor: the
    reader ends with every write, and the seqs are 1..N without a gap or a repeat."""
    writers, per_writer = 3, 40
    done = threading.Event()
    errors: list[BaseException] = []
    seen: dict[str, int] = {}

    def push(n: int) -> None:
        store = PostgresStore(pg_url)
        try:
            for i in range(per_writer):
                commit(store, "s:shared", write(f"w{n}:{i + 1}", i, 1 + i, key=f"w{n}-{i}"))
        except BaseException as exc:
            errors.append(exc)
        finally:
            store.close()

    def pull() -> None:
        store = PostgresStore(pg_url)
        try:
            cursor, last_round = 0, False
            while not last_round:
                last_round = done.is_set()  # writers finished before this round began
                page = store.changes("s:shared", cursor, 7, BIG)
                seen.update((c.key, c.seq) for c in page.changes)  # type: ignore[misc]
                assert page.cursor >= cursor
                cursor = page.cursor
                last_round = last_round and not page.has_more
        except BaseException as exc:
            errors.append(exc)
        finally:
            store.close()

    threads = [threading.Thread(target=push, args=(n,)) for n in range(writers)]
    reader = threading.Thread(target=pull)
    for thread in [*threads, reader]:
        thread.start()
    for thread in threads:
        thread.join()
    done.set()
    reader.join()
    assert errors == []
    assert len(seen) == writers * per_writer  # the reader missed nothing
    assert sorted(seen.values()) == list(range(1, writers * per_writer + 1))


def _rows_read(db: SyncConnection) -> int:
    """How many rows of `fields` and its indexes this database's scans have read so far."""
    db.execute("SELECT pg_stat_force_next_flush()")  # this session's counts, made visible
    return int(
        db.fetchval(
            "SELECT (SELECT sum(idx_tup_read) FROM pg_stat_user_indexes WHERE relname = 'fields')"
            " + (SELECT seq_tup_read FROM pg_stat_user_tables WHERE relname = 'fields')"
        )
    )


def test_a_push_reads_the_fields_it_names_not_its_whole_space(pg_url: str) -> None:
    """The lookups of a big push into a big space are key lookups: a join planned on stale
    statistics hashed the whole space instead (every row of it read, every push)."""
    store = PostgresStore(pg_url)
    try:
        for n in range(2):
            commit(store, "s", *(write(f"n1:{n}{i}", i, 1, key=f"{n}-{i}") for i in range(1000)))
        before = _rows_read(store.connection)
        with store.transaction("s") as tx:
            names = ("title", DELETED_FIELD)  # as a push asks: its fields, their tombstones
            new = [FieldRef("notes", f"new-{i}", f) for i in range(500) for f in names]
            found = tx.fields([*new, FieldRef("notes", "0-7", "title")])
            record = tx.records([("notes", "1-7"), ("notes", "new-1")])
        assert [list(found), list(record)] == [
            [FieldRef("notes", "0-7", "title")],
            [("notes", "1-7", "title")],
        ]
        assert _rows_read(store.connection) - before < 50  # of 2,000
    finally:
        store.close()


def test_a_batch_writes_a_field_once_and_a_losing_write_once(pg_url: str) -> None:
    """One statement writes a batch: a field written twice keeps its last write, a loser
    reported twice in the batch is reported once, the others in the batch's order."""
    store = PostgresStore(pg_url)
    try:
        losers = [conflict("c", key="c"), conflict("a", key="a"), conflict("c", key="c")]
        commit(store, "s", write("n1:1", "x", 1), write("n1:2", "y", 2), conflicts=losers)
        assert values(store, "s") == [(2, "a", "y")]
        page = store.conflicts("s", 0, 10, BIG)
        assert [c.winner.value for c in page.conflicts] == ["c", "a"]
    finally:
        store.close()


def test_a_field_looked_up_missing_is_inserted_and_never_silently_overwritten(
    pg_url: str,
) -> None:
    """A field the push found missing is inserted, not upserted (under the head row lock no
    writer can add it meanwhile): one added behind the lock's back fails the push, which
    writes nothing, rather than being overwritten unseen."""
    store, intruder = PostgresStore(pg_url), SyncConnection(pg_url)
    try:
        ref = FieldRef("notes", "a", "title")
        with pytest.raises(StoreError, match="duplicate key"), store.transaction("s") as tx:
            assert tx.fields([ref]) == {}
            intruder.execute(
                "INSERT INTO fields (space, collection, key, field, seq, size, kind, stamp, mid,"
                " value) VALUES ('s', 'notes', 'a', 'title', 7, 1, 'lww', $1, 'other:1', '1')",
                str(stamp(5)),
            )
            tx.write(batch(1, write("n1:1", "mine", 1)))
        assert [(c.id, c.seq) for c in store.changes("s", 0, 10, BIG).changes] == [("other:1", 7)]
        assert store.cursor("s") == 0
    finally:
        intruder.close()
        store.close()


def test_a_database_from_a_newer_quietsync_is_refused(pg_url: str) -> None:
    PostgresStore(pg_url).close()
    db = SyncConnection(pg_url)
    db.execute("UPDATE meta SET value = $1 WHERE name = 'schema_version'", str(len(STEPS) + 1))
    db.close()
    with pytest.raises(ConfigError, match="newer than"):
        PostgresStore(pg_url)


def test_an_unreachable_database_is_a_store_error(pg_url: str) -> None:
    with pytest.raises(StoreError, match="PostgreSQL failed to connect"):
        PostgresStore(pg_url + "_missing")


def test_a_closed_store_raises_store_error(pg_url: str) -> None:
    store = PostgresStore(pg_url)
    store.close()
    with pytest.raises(StoreError, match="closed"):
        store.cursor("u:alice")


def test_a_url_is_kept_whole_and_its_password_never_logged() -> None:
    config = ServerConfig(db_path="postgresql://qs:secret@db.internal:5432/sync", tokens={"t": "a"})
    assert config.db_path == "postgresql://qs:secret@db.internal:5432/sync"
    assert config.db_label == "postgresql://qs:***@db.internal:5432/sync"


async def test_serve_on_postgres_offers_the_jobs_api(pg_url: str) -> None:
    """``quietsync serve --db postgresql://...`` starts with the jobs feature, whose
    jobs write into the PostgreSQL records."""
    async with serve_process(pg_url, "--dev", "--job-tokens", "3") as server:
        token = server.stdout.rsplit(" ", 1)[-1].strip()
        headers = {"Authorization": f"Bearer {token}"}
        async with aiohttp.ClientSession(base_url=server.url, headers=headers) as http:
            job_id = (await start(http))["job_id"]
            final = await wait_unwatched(http, job_id)
            folded, _ = await records(http)
    assert final["status"] == "complete"
    assert folded[MESSAGES, "m1"]["content"][0] == reply(3)


def test_the_sqlite_server_does_not_import_asyncpg() -> None:
    code = (
        "import sys, quietsync.server, quietsync.server.app, quietsync.testing;"
        " sys.exit('asyncpg' in sys.modules)"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
