"""The fault harness's server database, on either store: where it is, an online backup,
and a restore (the server stopped) that starts a new history.

* **SQLite**: a file; ``quietsync backup`` and ``quietsync restore``
  (`quietsync.server.admin`) do both, the restore giving the file a new
  history id.
* **PostgreSQL**: a database URL; what docs/deploy.md tells an operator to
  do, with the same tools: ``pg_dump --format=custom`` while the server runs
  (one consistent snapshot), and, the server killed, ``pg_restore --clean
  --if-exists`` then ``psql`` setting a new ``history_id`` in ``meta``.
  The harness runs the documented commands, so a change that breaks them
  fails the harness.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import attrs

from quietsync.server.admin import backup_database, restore_database

__all__ = ["STORES", "ServerDatabase"]

STORES = ("sqlite", "postgres")
NEW_HISTORY = "UPDATE meta SET value = md5(random()::text) WHERE name = 'history_id'"
"""docs/deploy.md's statement after a PostgreSQL restore."""


async def _tool(*argv: str) -> None:
    """Run a PostgreSQL client tool; its output in the error if it fails."""
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"{argv[0]} failed ({proc.returncode}): {out.decode().strip()}")


@attrs.frozen
class ServerDatabase:
    """The run's server database: an SQLite file, or a PostgreSQL database's URL."""

    db: Path | str

    @property
    def is_postgres(self) -> bool:
        return isinstance(self.db, str)

    async def backup(self, dest: Path) -> None:
        """An online backup of the database into the file `dest` (the server keeps serving)."""
        if isinstance(self.db, Path):
            backup_database(self.db, dest)
        else:
            await _tool("pg_dump", "--format=custom", f"--file={dest}", self.db)

    async def restore(self, backup: Path) -> None:
        """Put `backup` in place; the server must be stopped. The database gets a new
        history id, as every restore does (replicas must notice)."""
        if isinstance(self.db, Path):
            restore_database(backup, self.db)
        else:
            await _tool("pg_restore", "--clean", "--if-exists", f"--dbname={self.db}", str(backup))
            await _tool("psql", "--quiet", "--no-psqlrc", self.db, "-c", NEW_HISTORY)
