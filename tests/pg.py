"""PostgreSQL for the tests: find a server, or start a throwaway cluster; a database per test.

Where from, first that answers: ``$QUIETSYNC_TEST_PG_DSN`` (a ``postgresql://``
URL whose user may create databases), a server on 127.0.0.1:5432 with trust
auth (database ``test``, user ``postgres`` or the current user), or a cluster
started with ``initdb``/``pg_ctl`` in a temporary directory (not as root:
``initdb`` refuses). None: the tests needing it skip, saying why.

Each test gets its own database (``qs_<random>``, dropped after), so the
pytest-xdist workers never share rows.
"""

from __future__ import annotations

import asyncio
import getpass
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg

from benchmarks._loopback import PortHold

__all__ = ["PG_DSN_ENV", "admin_dsn", "fresh_database"]

PG_DSN_ENV = "QUIETSYNC_TEST_PG_DSN"


async def _answer(dsn: str) -> None:
    db = await asyncpg.connect(dsn, timeout=5)
    await db.close()


def _answers(dsn: str) -> bool:
    try:
        asyncio.run(_answer(dsn))
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError):
        return False
    return True


async def _admin(dsn: str, statement: str) -> None:
    db = await asyncpg.connect(dsn)
    try:
        await db.execute(statement)
    finally:
        await db.close()


@contextmanager
def _throwaway_cluster(tmp: Path) -> Iterator[str]:
    """A cluster in `tmp` on a held loopback port, stopped on exit."""
    data = tmp / "data"
    subprocess.run(
        ["initdb", "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync"],
        check=True,
        capture_output=True,
    )
    with PortHold() as hold:  # held while the cluster listens (both set SO_REUSEADDR)
        subprocess.run(
            [
                "pg_ctl",
                *("-D", str(data), "-l", str(tmp / "log"), "-w", "start"),
                *("-o", f"-h 127.0.0.1 -p {hold.port} -k {tmp} -F"),
            ],
            check=True,
            capture_output=True,
        )
        try:
            yield f"postgresql://postgres@127.0.0.1:{hold.port}/postgres"
        finally:
            subprocess.run(
                ["pg_ctl", "-D", str(data), "-m", "immediate", "stop"], capture_output=True
            )


@contextmanager
def admin_dsn(tmp: Path) -> Iterator[str | None]:
    """The DSN of a PostgreSQL whose user may create databases (None: none answered, and
    no cluster can be started here); a throwaway cluster lives in `tmp` until exit."""
    candidates = [os.environ.get(PG_DSN_ENV, "")] + [
        f"postgresql://{user}@127.0.0.1:5432/test" for user in ("postgres", getpass.getuser())
    ]
    for dsn in filter(None, candidates):
        if _answers(dsn):
            yield dsn
            return
    if shutil.which("initdb") and shutil.which("pg_ctl") and os.geteuid() != 0:
        with _throwaway_cluster(tmp) as dsn:
            yield dsn
            return
    yield None


@contextmanager
def fresh_database(admin: str) -> Iterator[str]:
    """A new empty database on `admin`'s server, as a URL; dropped on exit."""
    name = f"qs_{uuid.uuid4().hex[:16]}"
    asyncio.run(_admin(admin, f"CREATE DATABASE {name}"))
    try:
        yield urlsplit(admin)._replace(path=f"/{name}").geturl()
    finally:
        asyncio.run(_admin(admin, f"DROP DATABASE {name} WITH (FORCE)"))
