"""`PostgresSpaceStore`: memberships in two tables of the PostgreSQL store's database.

The PostgreSQL twin of `quietsync.server.spaces.sqlite_store`: it shares the
`PostgresStore`'s one connection (so it writes inside the sync store's
transactions, and only from its worker thread), with its own migrations and
version (``meta.spaces_schema_version``, `quietsync.server.postgres_schema`):

1. ``spaces(id, name, created_by, created_ms)`` and ``members(space, member,
   role, since_ms)`` (``user`` is a reserved word in PostgreSQL), with an index
   on ``(member, since_ms)`` for a user's list.
"""

from __future__ import annotations

import json

from quietsync.protocol import Role
from quietsync.server.postgres_connection import translated_errors
from quietsync.server.postgres_schema import migrate
from quietsync.server.postgres_store import PostgresStore, connection_of
from quietsync.server.spaces.store import Member, Membership
from quietsync.server.store import WriteTransaction

__all__ = ["MEMBERS_CHANNEL", "PostgresSpaceStore"]

MEMBERS_CHANNEL = "quietsync_members"
"""Where a membership change is announced to every server process on the database."""

STEPS: tuple[str, ...] = (
    """
    CREATE TABLE spaces (
        id TEXT PRIMARY KEY, name TEXT NOT NULL, created_by TEXT NOT NULL,
        created_ms BIGINT NOT NULL
    );
    CREATE TABLE members (
        space TEXT NOT NULL, member TEXT NOT NULL, role TEXT NOT NULL, since_ms BIGINT NOT NULL,
        PRIMARY KEY (space, member)
    );
    CREATE INDEX members_by_member ON members (member, since_ms);
    """,
)


class PostgresSpaceStore:
    """`quietsync.server.spaces.store.SpaceStore` beside a `PostgresStore` (module docstring)."""

    def __init__(self, store: PostgresStore) -> None:
        self._db = store.connection
        with store.write_transaction(), translated_errors("migrate the spaces tables"):
            migrate(self._db, STEPS, version_key="spaces_schema_version")

    def role(self, space: str, user: str) -> Role | None:
        with translated_errors("read a membership"):
            role: Role | None = self._db.fetchval(
                "SELECT role FROM members WHERE space = $1 AND member = $2", space, user
            )
        return role

    def memberships(self, user: str) -> list[Membership]:
        with translated_errors("read memberships"):
            rows = self._db.fetch(
                "SELECT m.space, s.name, m.role FROM members AS m JOIN spaces AS s"
                " ON s.id = m.space WHERE m.member = $1 ORDER BY m.since_ms, m.space",
                user,
            )
        return [Membership(*row) for row in rows]

    def members(self, space: str) -> list[Member]:
        with translated_errors("read members"):
            rows = self._db.fetch(
                "SELECT member, role FROM members WHERE space = $1 ORDER BY since_ms, member",
                space,
            )
        return [Member(*row) for row in rows]

    def create(self, tx: WriteTransaction, space: str, name: str, admin: str, now_ms: int) -> None:
        db = connection_of(tx)
        db.execute("INSERT INTO spaces VALUES ($1, $2, $3, $4)", space, name, admin, now_ms)
        db.execute("INSERT INTO members VALUES ($1, $2, 'admin', $3)", space, admin, now_ms)
        _announce(tx, space, admin, removed=False)

    def set_role(
        self, tx: WriteTransaction, space: str, user: str, role: Role, now_ms: int
    ) -> None:
        connection_of(tx).execute(
            "INSERT INTO members VALUES ($1, $2, $3, $4)"
            " ON CONFLICT (space, member) DO UPDATE SET role = excluded.role",
            space,
            user,
            role,
            now_ms,
        )
        _announce(tx, space, user, removed=False)

    def remove(self, tx: WriteTransaction, space: str, user: str) -> None:
        connection_of(tx).execute(
            "DELETE FROM members WHERE space = $1 AND member = $2", space, user
        )
        _announce(tx, space, user, removed=True)


def _announce(tx: WriteTransaction, space: str, user: str, *, removed: bool) -> None:
    """Tell every server process on the database (`MEMBERS_CHANNEL`, at commit) that
    `user`'s membership of `space` changed: their sockets of a removed member close,
    and the user's private sockets hear ``{"type": "spaces"}``
    (`quietsync.server.postgres_listen`)."""
    payload = json.dumps({"space": space, "user": user, "removed": removed})
    connection_of(tx).execute("SELECT pg_notify($1, $2)", MEMBERS_CHANNEL, payload)
