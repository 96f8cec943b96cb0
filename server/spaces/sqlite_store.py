"""`SQLiteSpaceStore`: memberships in two tables of the sync store's SQLite database.

It shares the `SQLiteStore`'s one connection (so it writes inside the sync
store's transactions, and only from its worker thread), with its own
migrations and version (``meta.spaces_schema_version``,
`quietsync.server.sqlite_schema`):

1. ``spaces(id, name, created_by, created_ms)`` and ``members(space, user,
   role, since_ms)``, with an index on ``(user, since_ms)`` for a user's list.
"""

from __future__ import annotations

import sqlite3

from quietsync.protocol import Role
from quietsync.server.spaces.store import Member, Membership
from quietsync.server.sqlite_schema import Step, migrate
from quietsync.server.sqlite_store import SQLiteStore, SQLiteWriteTransaction, translated_errors
from quietsync.server.store import WriteTransaction

__all__ = ["SQLiteSpaceStore"]


def _v1_spaces(db: sqlite3.Connection) -> None:
    db.execute(
        "CREATE TABLE spaces (id TEXT PRIMARY KEY, name TEXT NOT NULL,"
        " created_by TEXT NOT NULL, created_ms INTEGER NOT NULL) WITHOUT ROWID"
    )
    db.execute(
        "CREATE TABLE members (space TEXT NOT NULL, user TEXT NOT NULL, role TEXT NOT NULL,"
        " since_ms INTEGER NOT NULL, PRIMARY KEY (space, user)) WITHOUT ROWID"
    )
    db.execute("CREATE INDEX members_by_user ON members (user, since_ms)")


STEPS: tuple[Step, ...] = (_v1_spaces,)


def _connection(tx: WriteTransaction) -> sqlite3.Connection:
    assert isinstance(tx, SQLiteWriteTransaction)  # opened by the store beside this one
    return tx.connection


class SQLiteSpaceStore:
    """`quietsync.server.spaces.store.SpaceStore` beside a `SQLiteStore` (module docstring)."""

    def __init__(self, store: SQLiteStore) -> None:
        self._db = store.connection
        with store.write_transaction(), translated_errors("migrate the spaces tables"):
            migrate(self._db, STEPS, version_key="spaces_schema_version")

    def role(self, space: str, user: str) -> Role | None:
        with translated_errors("read a membership"):
            row = self._db.execute(
                "SELECT role FROM members WHERE space = ? AND user = ?", (space, user)
            ).fetchone()
        return None if row is None else row[0]

    def memberships(self, user: str) -> list[Membership]:
        with translated_errors("read memberships"):
            rows = self._db.execute(
                "SELECT m.space, s.name, m.role FROM members AS m JOIN spaces AS s"
                " ON s.id = m.space WHERE m.user = ? ORDER BY m.since_ms, m.space",
                (user,),
            ).fetchall()
        return [Membership(*row) for row in rows]

    def members(self, space: str) -> list[Member]:
        with translated_errors("read members"):
            rows = self._db.execute(
                "SELECT user, role FROM members WHERE space = ? ORDER BY since_ms, user", (space,)
            ).fetchall()
        return [Member(*row) for row in rows]

    def create(self, tx: WriteTransaction, space: str, name: str, admin: str, now_ms: int) -> None:
        db = _connection(tx)
        db.execute("INSERT INTO spaces VALUES (?, ?, ?, ?)", (space, name, admin, now_ms))
        db.execute("INSERT INTO members VALUES (?, ?, 'admin', ?)", (space, admin, now_ms))

    def set_role(
        self, tx: WriteTransaction, space: str, user: str, role: Role, now_ms: int
    ) -> None:
        _connection(tx).execute(
            "INSERT INTO members VALUES (?, ?, ?, ?)"
            " ON CONFLICT (space, user) DO UPDATE SET role = excluded.role",
            (space, user, role, now_ms),
        )

    def remove(self, tx: WriteTransaction, space: str, user: str) -> None:
        _connection(tx).execute("DELETE FROM members WHERE space = ? AND user = ?", (space, user))
