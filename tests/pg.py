"""PostgreSQL for the tests: find a server, or start a throwaway cluster; a database per test.

Where from, first that answers: ``$QUIETSYNC_TEST_PG_DSN`` (a ``postgresql://``
URL whose user may create databases), a server on 127.0.0.1:5432 with trust
auth (database ``test``, user ``postgres`` or the current user), or a cluster
started with ``initdb``/``pg_ctl`` in a temporary directory (as root, run as
the ``postgres`` user: ``initdb`` refuses root). None: the tests needing it
skip, saying why.

`Cluster` is that throwaway cluster, also for tests that must restart the
database server itself (never the shared one).

Each test gets its own database (``qs_<random>``, dropped after), so the
pytest-xdist workers never share rows. Its commits do not wait for the WAL
flush (``synchronous_commit = off``): a test database is thrown away, and a
commit is seen by every other connection the moment it returns either way, so
only a crash of the PostgreSQL server itself could lose one, and no test
crashes that server (a test restarting a throwaway `Cluster` stops it cleanly,
which flushes the WAL). The property tests on PostgreSQL ran in 16-18 s instead of 24-26 s
with it (2026-12-01, loaded 2-core machine); under parallel load it saves
more, as each commit's flush waits behind the others'.
"""

from __future__ import annotations

import asyncio
import getpass
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg

from benchmarks._loopback import PortHold
from benchmarks._pg import run_admin

__all__ = ["PG_DSN_ENV", "Cluster", "admin_dsn", "fresh_database", "throwaway_cluster"]

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


class Cluster:
    """A PostgreSQL cluster of our own in the directory `tmp`, on loopback port `port`;
    `start`, `restart` and `stop` it (`stop` is immediate: like a crash, no checkpoint)."""

    def __init__(self, tmp: Path, port: int) -> None:
        self._tmp, self._data, self.port = tmp, tmp / "data", port
        self.url = f"postgresql://postgres@127.0.0.1:{port}/postgres"
        self._as: list[str] = []
        if os.geteuid() == 0:  # initdb refuses root: the tools run as postgres
            self._as = ["runuser", "-u", "postgres", "--"]
            shutil.chown(tmp, "postgres")
        self._run("initdb", "-D", str(self._data), "-A", "trust", "-U", "postgres", "--no-sync")

    @staticmethod
    def possible() -> bool:
        """Whether one can be started here: the tools, and a user other than root to run them."""
        tools = shutil.which("initdb") and shutil.which("pg_ctl")
        if os.geteuid() != 0:
            return bool(tools)
        return bool(tools and shutil.which("runuser") and _has_user("postgres"))

    def _run(self, *argv: str) -> None:
        subprocess.run([*self._as, *argv], check=True, capture_output=True)

    def _ctl(self, action: str, *more: str) -> None:
        self._run("pg_ctl", "-D", str(self._data), "-l", str(self._tmp / "log"), *more, action)

    def start(self) -> None:
        self._ctl("start", "-w", "-o", f"-h 127.0.0.1 -p {self.port} -k {self._tmp} -F")

    def restart(self) -> None:
        """Stop (fast: every connection is closed) and start again, waiting until it answers."""
        self._ctl("restart", "-w", "-m", "fast")

    def stop(self) -> None:
        subprocess.run(
            [*self._as, "pg_ctl", "-D", str(self._data), "-m", "immediate", "stop"],
            capture_output=True,
        )


def _has_user(name: str) -> bool:
    import pwd

    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


@contextmanager
def throwaway_cluster() -> Iterator[Cluster]:
    """A started `Cluster`, on a port held while it runs; stopped and removed on exit.

    Its directory is a new one in the system's temporary directory, not a test's
    `tmp_path`: as root, the tools run as ``postgres``, who cannot enter pytest's
    private directories."""
    with (
        tempfile.TemporaryDirectory(prefix="quietsync-pg-") as tmp,
        PortHold() as hold,  # held while the cluster listens (both set SO_REUSEADDR)
    ):
        cluster = Cluster(Path(tmp), hold.port)
        cluster.start()
        try:
            yield cluster
        finally:
            cluster.stop()


@contextmanager
def admin_dsn() -> Iterator[str | None]:
    """The DSN of a PostgreSQL whose user may create databases (None: none answered, and
    no cluster can be started here); a throwaway cluster lives until exit."""
    candidates = [os.environ.get(PG_DSN_ENV, "")] + [
        f"postgresql://{user}@127.0.0.1:5432/test" for user in ("postgres", getpass.getuser())
    ]
    for dsn in filter(None, candidates):
        if _answers(dsn):
            yield dsn
            return
    if Cluster.possible():
        with throwaway_cluster() as cluster:
            yield cluster.url
            return
    yield None


@contextmanager
def fresh_database(admin: str) -> Iterator[str]:
    """A new empty database on `admin`'s server, as a URL; dropped on exit."""
    name = f"qs_{uuid.uuid4().hex[:16]}"
    asyncio.run(run_admin(admin, f"CREATE DATABASE {name}"))
    asyncio.run(run_admin(admin, f"ALTER DATABASE {name} SET synchronous_commit = off"))
    try:
        yield urlsplit(admin)._replace(path=f"/{name}").geturl()
    finally:
        asyncio.run(run_admin(admin, f"DROP DATABASE {name} WITH (FORCE)"))
