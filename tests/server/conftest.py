"""Fixtures of the server tests: a real server on either store, two users.

`server` runs on SQLite; a module that overrides `store_kind` (parametrized
over ``"sqlite"`` and ``"postgres"``), or a test parametrizing it, runs on both.
Tests starting their own servers (`tests.server.job_helpers.serve`) start them
in `db_home`, which follows `store_kind` too.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from quietsync.server.sqlite_store import SQLiteStore
from quietsync.server.store import Store
from quietsync.testing import RunningServer, running_server
from tests.server.helpers import Writer

USERS = {"alice": "token-a", "bob": "token-b"}


@pytest.fixture
def quietsync_users() -> Mapping[str, str]:
    """Overrides the plugin's default (alice only): isolation tests need two users."""
    return USERS


@pytest.fixture
def store_kind() -> str:
    """Which store `server` runs on: ``"sqlite"``, or ``"postgres"`` where a module says so."""
    return "sqlite"


@pytest.fixture
def db_home(request: pytest.FixtureRequest, store_kind: str, tmp_path: Path) -> Path | str:
    """Where the test's servers keep their database: `tmp_path` (SQLite: a file in it), or
    a fresh PostgreSQL database's URL.

    (A sync fixture: creating the database runs its own event loop, which cannot
    start inside the test's.)
    """
    if store_kind == "postgres":
        return str(request.getfixturevalue("pg_url"))
    return tmp_path


@pytest.fixture
def server_db(db_home: Path | str) -> Path | str:
    """The database of `server`: a file, or a fresh PostgreSQL database's URL."""
    return db_home / "quietsync-server.db" if isinstance(db_home, Path) else db_home


@pytest.fixture
async def server(
    server_db: Path | str,
    quietsync_users: Mapping[str, str],
    quietsync_server_options: dict[str, Any],
) -> AsyncIterator[RunningServer]:
    async with running_server(
        server_db, users=quietsync_users, **quietsync_server_options
    ) as running:
        yield running


@pytest.fixture
async def alice(server: RunningServer) -> AsyncIterator[aiohttp.ClientSession]:
    async with server.client("alice") as http:
        yield http


@pytest.fixture
async def bob(server: RunningServer) -> AsyncIterator[aiohttp.ClientSession]:
    async with server.client("bob") as http:
        yield http


@pytest.fixture
def w1() -> Writer:
    return Writer("n1")


@pytest.fixture
def w2() -> Writer:
    return Writer("n2")


EmptySpace = Callable[[], AbstractContextManager[tuple[Store, str]]]
"""Makes a store with an empty space, and names the space."""


@contextmanager
def _sqlite_space() -> Iterator[tuple[Store, str]]:
    store = SQLiteStore(":memory:")
    try:
        yield store, "u"
    finally:
        store.close()


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def empty_space(request: pytest.FixtureRequest) -> Iterator[EmptySpace]:
    """A factory of empty spaces, one per Hypothesis example, on the store the parameter
    names: a new in-memory SQLite store each, or a new space of one PostgreSQL database
    shared by the module (a database per example would cost a CREATE DATABASE each)."""
    if request.param == "sqlite":
        yield _sqlite_space
        return
    from quietsync.server.postgres_store import PostgresStore

    store = PostgresStore(request.getfixturevalue("pg_module_url"))

    @contextmanager
    def new_space() -> Iterator[tuple[Store, str]]:
        yield store, f"u-{uuid.uuid4().hex}"

    try:
        yield new_space
    finally:
        store.close()
