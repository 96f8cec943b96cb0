"""The PostgreSQL database's schema: tables, migrations, the stored versions, the history id.

As for SQLite (`quietsync.server.sqlite_schema`), every component keeping
tables in the database has its own steps and its own version in ``meta``
(``schema_version`` for the sync store, ``spaces_schema_version`` for
memberships), migrated by `migrate` in one transaction, and a database written
by a newer quietsync is refused, never touched. Several server processes may
start at once on one database: `migrate` takes a transaction-scoped advisory
lock first, so one of them migrates and the others find it done.

The PostgreSQL store began at the SQLite store's third layout (state, not
history; rows keyed by space), so its version history starts there:

1. ``fields``, ``heads``, ``clients`` and ``conflicts`` as described in
   `quietsync.server.postgres_store`.

Stamps are stored as their text (fixed-width wall time first, so text order is
time order) with the ``"C"`` collation: a locale's collation may order digits
and ``-`` otherwise, and ``stamp < cutoff`` must be a byte comparison.
"""

from __future__ import annotations

from collections.abc import Sequence

from quietsync.protocol import DELETED_FIELD
from quietsync.server.backend import TOMBSTONE, check_version, new_history_id
from quietsync.server.postgres_connection import SyncConnection

__all__ = ["STEPS", "migrate", "read_meta"]

_MIGRATION_LOCK = 0x71756965  # any constant: the advisory lock every migration takes

_V1 = f"""
CREATE TABLE fields (
    space TEXT NOT NULL, collection TEXT NOT NULL, key TEXT NOT NULL, field TEXT NOT NULL,
    seq BIGINT NOT NULL, size INTEGER NOT NULL, kind TEXT NOT NULL,
    stamp TEXT COLLATE "C" NOT NULL, base TEXT COLLATE "C", mid TEXT NOT NULL,
    value TEXT, state BYTEA, writer TEXT,
    PRIMARY KEY (space, collection, key, field)
);
CREATE INDEX fields_by_seq ON fields (space, seq) INCLUDE (size);
CREATE INDEX fields_tombstones ON fields (stamp)
    WHERE field = '{DELETED_FIELD}' AND value = '{TOMBSTONE}';
CREATE TABLE heads (
    space TEXT PRIMARY KEY, seq BIGINT NOT NULL DEFAULT 0, gc_seq BIGINT NOT NULL DEFAULT 0,
    stamp TEXT COLLATE "C"
);
CREATE TABLE clients (
    space TEXT NOT NULL, client TEXT NOT NULL, hw BIGINT NOT NULL, last TEXT,
    PRIMARY KEY (space, client)
);
CREATE TABLE conflicts (
    pos BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, space TEXT NOT NULL,
    collection TEXT NOT NULL, key TEXT NOT NULL, field TEXT NOT NULL,
    loser TEXT COLLATE "C" NOT NULL, body TEXT NOT NULL
);
CREATE INDEX conflicts_by_space ON conflicts (space, pos);
CREATE UNIQUE INDEX conflicts_once ON conflicts (space, collection, key, field, loser);
"""

STEPS: tuple[str, ...] = (_V1,)
"""Each version's SQL script, run in order inside the migration's transaction."""


def read_meta(db: SyncConnection) -> dict[str, str]:
    if db.fetchval("SELECT to_regclass('meta')") is None:
        return {}
    return {name: value for name, value in db.fetch("SELECT name, value FROM meta")}


def migrate(db: SyncConnection, steps: Sequence[str], *, version_key: str) -> int:
    """Bring one component's tables from its stored version up to the last of `steps`.

    Runs in the caller's open transaction; returns the version found. A new
    database also gets its history id.
    """
    db.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
    db.execute("CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)")
    meta = read_meta(db)
    found = int(meta.get(version_key, "0"))
    check_version(found, len(steps), version_key)
    for script in steps[found:]:
        db.execute(script)
    upsert = (
        "INSERT INTO meta VALUES ($1, $2) ON CONFLICT (name) DO UPDATE SET value = excluded.value"
    )
    if found < len(steps):
        db.execute(upsert, version_key, str(len(steps)))
    if "history_id" not in meta:
        db.execute(upsert, "history_id", new_history_id())
    return found
