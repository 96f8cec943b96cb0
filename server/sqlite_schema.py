"""The server database's schema: tables, migrations, the stored versions, the history id.

Every component that keeps tables in the database (the sync store here, the
jobs feature's `quietsync.server.jobs.sqlite_store`) has its own list of
migration steps and its own version in ``meta`` (``schema_version`` for the
sync store, ``jobs_schema_version`` for jobs), migrated by `migrate` inside
one transaction: a crash half-way leaves the file at the old version. A file
written by a newer quietsync is refused, never touched.

Version history of the sync store:

1. the append-only layout: ``changes`` (every applied write, forever),
   ``fields`` (state), ``mutations`` (one row per mutation id ever pushed),
   ``heads``, ``conflicts``.
2. state, not history (`quietsync.server.sqlite_store`): ``fields`` holds each
   field's current state with the seq of its last change (a pull reads the
   fields changed after a cursor) and its size (read to bound a page in bytes
   without reading the values: the value columns come last, so the size is
   read without following a large value's overflow pages); ``clients`` keeps one high-water mark per
   pushing client instead of one row per mutation; ``changes`` and
   ``mutations`` are gone; ``heads`` also keeps each user's tombstone horizon
   and the highest stamp written (so a restarted clock starts above it without
   reading every field); ``conflicts`` keeps one report per losing write
   (a write that loses again, re-pushed after a restore, is not reported
   twice: law 5). Carried over: each field gets the seq of its last
   logged change and the id of the mutation that wrote it; each client the
   highest mutation number it pushed.
3. spaces (``docs/protocol.md``, "Spaces"): every table keyed by ``user`` is
   keyed by ``space`` (a user's rows become their private space's, ``u:<user>``),
   and ``fields.writer`` keeps the user whose push wrote the field's state
   (None for the server's own writes and rows from before), so a conflict
   between two users names both.

The **history id** (``meta.history_id``) names this database's history: it is
created with the database and changed only by `quietsync backup` in the copy
it writes, so a server restored from a backup (or started on a new database)
is a different history, and replicas that knew the old one resync
(``docs/protocol.md``, "Resync").
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable, Sequence

from quietsync.protocol import PRIVATE_PREFIX
from quietsync.server.backend import check_version, new_history_id

__all__ = ["SCHEMA_VERSION", "Step", "migrate", "read_meta"]

Step = Callable[[sqlite3.Connection], None]

_META = "CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID"


def _run(db: sqlite3.Connection, script: str) -> None:
    """Each statement of `script`, inside the caller's transaction.

    (`executescript` would commit that transaction first; these scripts hold
    no ``;`` but between statements.)
    """
    for statement in script.split(";"):
        if statement.strip():
            db.execute(statement)


def _v1_log_layout(db: sqlite3.Connection) -> None:
    _run(
        db,
        """
        CREATE TABLE IF NOT EXISTS heads (
            user TEXT PRIMARY KEY, seq INTEGER NOT NULL
        ) WITHOUT ROWID;
        CREATE TABLE IF NOT EXISTS changes (
            user TEXT NOT NULL, seq INTEGER NOT NULL, id TEXT NOT NULL,
            collection TEXT NOT NULL, key TEXT NOT NULL, field TEXT NOT NULL, kind TEXT NOT NULL,
            value TEXT, crdt_update BLOB, stamp TEXT NOT NULL, base TEXT,
            PRIMARY KEY (user, seq)
        ) WITHOUT ROWID;
        CREATE TABLE IF NOT EXISTS fields (
            user TEXT NOT NULL, collection TEXT NOT NULL, key TEXT NOT NULL, field TEXT NOT NULL,
            kind TEXT NOT NULL, value TEXT, state BLOB, stamp TEXT NOT NULL, base TEXT,
            PRIMARY KEY (user, collection, key, field)
        ) WITHOUT ROWID;
        CREATE TABLE IF NOT EXISTS mutations (
            user TEXT NOT NULL, id TEXT NOT NULL, outcome TEXT NOT NULL,
            PRIMARY KEY (user, id)
        ) WITHOUT ROWID;
        CREATE TABLE IF NOT EXISTS conflicts (
            pos INTEGER PRIMARY KEY, user TEXT NOT NULL, body TEXT NOT NULL
        );
        CREATE INDEX IF NOT EXISTS conflicts_by_user ON conflicts (user, pos);
        """,
    )


_MUTATION_ID = re.compile(r"(.+):([1-9][0-9]{0,17})")


def _v2_state_layout(db: sqlite3.Connection) -> None:
    _run(
        db,
        """
        ALTER TABLE heads ADD COLUMN gc_seq INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE heads ADD COLUMN stamp TEXT;
        UPDATE heads SET stamp = (SELECT max(stamp) FROM changes WHERE changes.user = heads.user);
        CREATE TABLE fields_v2 (
            user TEXT NOT NULL, collection TEXT NOT NULL, key TEXT NOT NULL, field TEXT NOT NULL,
            seq INTEGER NOT NULL, size INTEGER NOT NULL, kind TEXT NOT NULL, stamp TEXT NOT NULL,
            base TEXT, mid TEXT NOT NULL, value TEXT, state BLOB,
            PRIMARY KEY (user, collection, key, field)
        ) WITHOUT ROWID;
        INSERT INTO fields_v2
            SELECT f.user, f.collection, f.key, f.field, c.seq,
                   ifnull(length(f.value), 0) + ifnull(length(f.state), 0),
                   f.kind, f.stamp, f.base, c.id, f.value, f.state
            FROM fields AS f JOIN (
                SELECT user, collection, key, field, max(seq) AS seq FROM changes
                GROUP BY user, collection, key, field
            ) AS last USING (user, collection, key, field)
            JOIN changes AS c ON c.user = f.user AND c.seq = last.seq;
        DROP TABLE fields;
        ALTER TABLE fields_v2 RENAME TO fields;
        CREATE INDEX fields_by_seq ON fields (user, seq, size);
        CREATE INDEX fields_tombstones ON fields (stamp)
            WHERE field = '_deleted' AND value = 'true';
        CREATE TABLE conflicts_v2 (
            pos INTEGER PRIMARY KEY, user TEXT NOT NULL, collection TEXT NOT NULL,
            key TEXT NOT NULL, field TEXT NOT NULL, loser TEXT NOT NULL, body TEXT NOT NULL
        );
        INSERT OR IGNORE INTO conflicts_v2
            SELECT pos, user, body ->> '$.collection', body ->> '$.key', body ->> '$.field',
                   body ->> '$.loser.stamp', body FROM conflicts;
        DROP TABLE conflicts;
        ALTER TABLE conflicts_v2 RENAME TO conflicts;
        CREATE INDEX conflicts_by_user ON conflicts (user, pos);
        CREATE UNIQUE INDEX conflicts_once ON conflicts (user, collection, key, field, loser);
        CREATE TABLE clients (
            user TEXT NOT NULL, client TEXT NOT NULL, hw INTEGER NOT NULL, last TEXT,
            PRIMARY KEY (user, client)
        ) WITHOUT ROWID;
        """,
    )
    marks: dict[tuple[str, str], int] = {}
    for user, mid in db.execute("SELECT user, id FROM mutations"):
        match = _MUTATION_ID.fullmatch(mid)
        if match:  # other ids protected retries of pushes that are long answered
            key = (user, match[1])
            marks[key] = max(marks.get(key, 0), int(match[2]))
    db.executemany(
        "INSERT INTO clients (user, client, hw) VALUES (?, ?, ?)",
        [(user, client, hw) for (user, client), hw in marks.items()],
    )
    _run(db, "DROP TABLE changes; DROP TABLE mutations")


def _v3_spaces(db: sqlite3.Connection) -> None:
    """Rows keyed by space, not user: a user's rows become their private space's."""
    for table in ("fields", "heads", "clients", "conflicts"):
        db.execute(f"ALTER TABLE {table} RENAME COLUMN user TO space")
        db.execute(f"UPDATE {table} SET space = ? || space", (PRIVATE_PREFIX,))
    db.execute("ALTER TABLE fields ADD COLUMN writer TEXT")


STEPS: tuple[Step, ...] = (_v1_log_layout, _v2_state_layout, _v3_spaces)
SCHEMA_VERSION = len(STEPS)


def read_meta(db: sqlite3.Connection) -> dict[str, str]:
    if db.execute("SELECT 1 FROM sqlite_master WHERE name = 'meta'").fetchone() is None:
        return {}
    return dict(db.execute("SELECT name, value FROM meta").fetchall())


def migrate(
    db: sqlite3.Connection,
    steps: Sequence[Step] = STEPS,
    *,
    version_key: str = "schema_version",
    target: int | None = None,
) -> int:
    """Bring one component's tables from its stored version up to `target` (all steps).

    Runs in the caller's open transaction; returns the version found. A new
    database also gets its history id. `target` below the last step exists so
    tests can build databases the way an older quietsync did.
    """
    db.execute(_META)
    meta = read_meta(db)
    found = int(meta.get(version_key, "0"))
    goal = len(steps) if target is None else target
    check_version(found, len(steps), version_key)
    for step in steps[found:goal]:
        step(db)
    if found < goal:
        db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (version_key, str(goal)))
    if "history_id" not in meta:
        db.execute("INSERT OR REPLACE INTO meta VALUES ('history_id', ?)", (new_history_id(),))
    return found
