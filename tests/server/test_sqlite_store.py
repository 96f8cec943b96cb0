"""`SQLiteStore` passes the store contract, on a file and in memory; its errors are translated."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from quietsync.server.errors import StoreError
from quietsync.server.sqlite_store import SQLiteStore, _dumps, _value_text
from quietsync.server.store import Store
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
    with pytest.raises(StoreError, match="SQLite failed to open") as info:
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
    assert _value_text(value) == _dumps(value)
