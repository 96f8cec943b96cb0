"""`SQLiteStore` passes the store contract, on a file and in memory; its errors are translated."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from quietsync.conflicts import HLC, Conflict, Side
from quietsync.server.backend import dumps, value_text
from quietsync.server.errors import ConfigError, StoreError
from quietsync.server.sqlite_schema import SCHEMA_VERSION, migrate
from quietsync.server.sqlite_store import SQLiteStore
from quietsync.server.store import ClientMark, Store
from tests.server.store_contract import PersistentStoreContract, StoreContract


class TestSQLiteFile(PersistentStoreContract):
    @pytest.fixture
    def store(self, tmp_path: Path) -> Iterator[SQLiteStore]:
        store = SQLiteStore(tmp_path / "server.db")
        yield store
        store.close()

    @pytest.fixture
    def reopen(self, tmp_path: Path) -> Callable[[Store], Store]:
        def reopen(store: Store) -> Store:
            store.close()
            return SQLiteStore(tmp_path / "server.db")

        return reopen


class TestSQLiteMemory(StoreContract):
    @pytest.fixture
    def store(self) -> Iterator[SQLiteStore]:
        store = SQLiteStore(":memory:")
        yield store
        store.close()


def test_sqlite_errors_become_store_errors(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="cannot open") as info:
        SQLiteStore(tmp_path / "missing-dir" / "server.db")
    assert info.value.__cause__ is not None


def test_a_closed_store_raises_store_error(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "server.db")
    store.close()
    with pytest.raises(StoreError, match="SQLite failed to read the cursor"):
        store.cursor("alice")


def test_the_database_is_durable_by_configuration(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "server.db")
    db = store._db  # the pragmas are the durability promise; check them where they live
    assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    assert db.execute("PRAGMA synchronous").fetchone() == (2,)  # FULL
    store.close()


finite = st.floats(allow_nan=False, allow_infinity=False)


@given(st.none() | st.booleans() | st.integers() | finite | st.text())
def test_scalar_values_are_stored_as_the_json_encoder_writes_them(value: object) -> None:
    assert value_text(value) == dumps(value)


def _old_layout_database(path: Path) -> None:
    """A database as the append-only layout (schema 1) left it: a log, a row per mutation id."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("BEGIN")
    migrate(db, target=1)

    def change(user: str, seq: int, mid: str, key: str, value: str, wall: int, base: int | None):
        stamp = f"{wall:015d}-00000000-{mid.split(':')[0]}"
        based = None if base is None else f"{base:015d}-00000000-n1"
        return (user, seq, mid, "notes", key, "title", "lww", value, None, stamp, based)

    rows = [
        change("alice", 1, "n1:1", "a", '"first"', 1, None),
        change("alice", 2, "n1:2", "a", '"second"', 2, 1),
        change("alice", 3, "n2:7", "b", '{"x":1}', 3, None),
        change("bob", 1, "n1:1", "a", '"bob"', 4, None),
    ]
    db.executemany("INSERT INTO changes VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
    last = {(r[0], r[3], r[4], r[5]): r for r in rows}
    db.executemany(
        "INSERT INTO fields VALUES (?, ?, ?, ?, ?, ?, NULL, ?, ?)",
        [(u, c, k, f, r[6], r[7], r[9], r[10]) for (u, c, k, f), r in last.items()],
    )
    db.executemany(
        "INSERT INTO mutations VALUES (?, ?, 'applied')",
        [("alice", "n1:1"), ("alice", "n1:2"), ("alice", "n2:7"), ("bob", "n1:1"), ("alice", "x")],
    )
    db.executemany("INSERT INTO heads VALUES (?, ?)", [("alice", 3), ("bob", 1)])
    lost = Conflict(
        "notes", "a", "title", Side("second", HLC(2, 0, "n1")), Side("x", HLC(1, 0, "n2")), "server"
    )
    db.execute(
        "INSERT INTO conflicts (user, body) VALUES ('alice', ?)", (json.dumps(lost.to_json()),)
    )
    db.execute("COMMIT")
    db.close()


def test_a_database_of_the_append_only_layout_is_migrated(tmp_path: Path) -> None:
    """...through every step: a user's rows end up in their private space (``u:<user>``)."""
    _old_layout_database(tmp_path / "server.db")
    store = SQLiteStore(tmp_path / "server.db")
    try:
        page = store.changes("u:alice", 0, 10, 1 << 20)
        assert [(c.seq, c.id, c.key, c.value) for c in page.changes] == [
            (2, "n1:2", "a", "second"),  # the field's state, with the seq of its last change
            (3, "n2:7", "b", {"x": 1}),
        ]
        assert (page.cursor, store.cursor("u:alice"), store.cursor("u:bob")) == (3, 3, 1)
        assert store.last_stamp() == HLC(4, 0, "n1")  # bob's: a restarted clock starts above
        [kept] = store.conflicts("u:alice", 0, 10, 1 << 20).conflicts
        assert kept.loser.stamp == HLC(1, 0, "n2")
        with store.transaction("u:alice") as tx:
            assert tx.marks(["n1", "n2"]) == {"n1": ClientMark(2), "n2": ClientMark(7)}
        db = store.connection
        tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master")}
        assert {"changes", "mutations"}.isdisjoint(tables)
        meta = dict(db.execute("SELECT name, value FROM meta"))
        assert meta["schema_version"] == str(SCHEMA_VERSION) and len(meta["history_id"]) == 32
    finally:
        store.close()


def test_a_database_from_a_newer_quietsync_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "server.db"
    SQLiteStore(path).close()
    db = sqlite3.connect(path)
    db.execute("UPDATE meta SET value = '99' WHERE name = 'schema_version'")
    db.commit()
    db.close()
    with pytest.raises(ConfigError, match="schema_version 99, newer than"):
        SQLiteStore(path)
    db = sqlite3.connect(path)
    assert db.execute("SELECT value FROM meta WHERE name = 'schema_version'").fetchone() == ("99",)
    db.close()


def test_a_second_process_on_the_same_database_is_refused(tmp_path: Path) -> None:
    """Its live sockets would never hear of the first one's writes (PostgreSQL serves that)."""
    path = tmp_path / "server.db"
    first = SQLiteStore(path)
    try:
        with pytest.raises(ConfigError, match="already served by another process"):
            SQLiteStore(path)
    finally:
        first.close()
    SQLiteStore(path).close()  # free again once the first one closed


def test_a_client_mark_answers_retries_of_its_last_push_and_older_ones() -> None:
    first = ClientMark.after(None, [(1, "applied"), (2, "applied"), (3, "dropped")])
    assert first == ClientMark(3, ((1, 2, "applied"), (3, 3, "dropped")))
    assert [first.outcome(n) for n in (1, 2, 3, 4)] == ["applied", "applied", "dropped", None]
    second = ClientMark.after(first, [(5, "applied"), (6, "resolved")])
    assert [second.outcome(n) for n in (2, 3, 5, 6, 7)] == [
        "duplicate",  # older than the last push: seen, not merged again
        "duplicate",
        "applied",
        "resolved",
        None,
    ]
