"""Suite-wide settings: Hypothesis profiles (CI runs at least 200 examples each), a
loopback port a test's server can count on while tests run in parallel (pytest-xdist),
and a fresh PostgreSQL database for the tests of the PostgreSQL store (`tests.pg`)."""

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from hypothesis import HealthCheck, settings

from benchmarks._loopback import PortHold
from tests.pg import PG_DSN_ENV, admin_dsn, fresh_database

settings.register_profile(
    "default",
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile("default")


@pytest.fixture
def held_port() -> Iterator[int]:
    """A free port of 127.0.0.1, held for the test (`PortHold`): a server the test starts
    (and restarts) on it gets it, nothing else does, and until one listens a connection to
    it is refused. Never ask for a free port and close it: another worker may take it."""
    with PortHold() as hold:
        yield hold.port


@pytest.fixture(scope="session")
def pg_admin() -> Iterator[str | None]:
    """Where this worker creates its test databases (found or started once per worker)."""
    with admin_dsn() as dsn:
        yield dsn


@contextmanager
def _new_database(pg_admin: str | None) -> Iterator[str]:
    if pg_admin is None:
        pytest.skip(
            f"no PostgreSQL: ${PG_DSN_ENV} unset or not answering, none on 127.0.0.1:5432,"
            " and no throwaway cluster (initdb/pg_ctl missing, or root without a postgres user)"
        )
    with fresh_database(pg_admin) as url:
        yield url


@pytest.fixture
def pg_url(pg_admin: str | None) -> Iterator[str]:
    """The URL of a new, empty PostgreSQL database, dropped after the test."""
    with _new_database(pg_admin) as url:
        yield url


@pytest.fixture(scope="module")
def pg_module_url(pg_admin: str | None) -> Iterator[str]:
    """The URL of a new PostgreSQL database shared by a module's tests, dropped after them:
    for property tests, whose examples each take a space of their own in it (a database
    per example would cost a CREATE DATABASE each)."""
    with _new_database(pg_admin) as url:
        yield url
