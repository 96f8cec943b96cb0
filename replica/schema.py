"""The replica file's schema: tables, migrations, and the stored schema version.

Created and migrated with sqlite-utils (readable DDL, one function per
version); the hot paths in `replica.store` use the raw connection instead.
Migrations run inside the caller's transaction, so a crash half-way through
leaves the file at the old version.

Tables (every ``collection`` column holds a space-qualified name,
`replica.spaces`: a private collection's own name, a shared one's prefixed
with its space):

* ``meta(name, value)``: ``schema_version``, ``node_id``, ``cursor`` (last pull
  cursor), ``suppressed`` (identical-content events the server counted),
  ``clock`` (highest stamp issued or observed) and ``mutation_n`` (last
  outbox number used): the last two are persisted with every write so a
  reopened replica never reissues a stamp or a mutation id.
* ``records(collection, key, vals, stamps)``: one row per record (see
  `replica.records` for the two JSON texts): ``vals`` maps each field to its
  value (canonical JSON, so the text SQLite extracts for a field *is* its
  canonical text; a CRDT field holds its plain text), ``stamps`` maps each
  field to ``[stamp, base]`` (``[stamp, base, "crdt"]`` for CRDT text).
  Queried fields get expression indexes on ``(collection, vals -> field)``,
  created by the first query that needs one (`replica.store`).
* ``texts(collection, key, field, state, fresh)``: each CRDT text field's
  snapshot (its Yjs document as one v1 update, as of its last compaction);
  ``fresh`` is 1 while the record row's ``vals`` holds the field's current
  text, 0 once an edit made it stale (``vals`` then holds ``null`` for it
  and readers take the text from `replica.texts`).
* ``text_updates(collection, key, field, id, stamp, base, "update")``: the
  updates applied to a text field since its snapshot, in ``id`` order, each
  with the field's stamp and base after it: an edit appends one small row
  instead of rewriting the document or its record row (`replica.texts`
  compacts them).
* ``outbox(n, collection, kind, stamp, fields, bases, update, count, done)``:
  local writes not yet acknowledged by the server, in write order: each
  write call's mutations (all under its one stamp) in rows of whole records,
  at most `replica.local.ROW_MUTATIONS` mutations a row. ``fields`` is
  ``{key: {field: value}}``; its ``count`` fields are mutations ``n .. n +
  count - 1`` in text order (mutation id ``f"{node_id}:{n + i}"``); ``done``
  lists the positions the server already answered (see `replica.outbox`).
* ``refused(n, collection, key, field, kind, value, update, stamp, base, reason)``:
  single mutations the server permanently refused.
* ``conflicts(n, body)``: conflicts the server reported, ``body`` the canonical
  JSON of `Conflict.to_json()` (plus ``"space"``: the shared space's id, absent
  for the private space), stored once per space, field and losing write (law 5
  of `conflicts.lww`), however it came: a push answer, or the user's conflict
  log (`replica.conflict_feed`), even when the two name different winners
  (a losing write met again after a restore).
* ``sweep(collection, key)``: while a resync sweeps (`replica.resync`), the
  records the server has not sent yet; empty otherwise. ``meta`` also holds
  ``history`` (the server history the cursor belongs to), and
  ``conflict_position`` with ``conflict_history``: the replica's position in
  the user's conflict log and the history it was read in
  (`replica.conflict_feed`; absent: from 0, so no migration); a shared
  space's own copies of these carry its id (`replica.spaces.meta_key`).

Version history: 1 = per-field rows (``fields``) and a per-field outbox; 2 =
index ``fields_by_value``; 3 = one row per record and outbox rows of many
mutations (a batch of 1,000 records of 3 fields wrote 6,000 rows in version
2 and writes 1,012 now), data carried over; 4 = the ``sweep`` table; 5 =
``text_updates`` and ``texts.fresh`` (an edit costs its own size, not the
document's); 6 = conflicts unique per field and losing write (index
``conflicts_by_loser``; earlier repeats dropped, the first kept); 7 = that
index per space too (a shared space's conflicts carry ``"space"`` in their
body; ``coalesce`` because a unique index never finds two NULLs equal).

Must not import `quietsync.server`.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import sqlite_utils

from quietsync.conflicts import text_of
from quietsync.replica.layout import StoredField, dump_record, value_text

__all__ = ["SCHEMA_VERSION", "migrate", "stored_version"]

_WRITE_COLUMNS = {
    "collection": str,
    "key": str,
    "field": str,
    "kind": str,
    "value": str,
    "update": bytes,
    "stamp": str,
    "base": str,
}
_NOT_NULL = {"collection", "key", "field", "kind", "stamp"}


def _v1_tables(db: sqlite_utils.Database) -> None:
    db["meta"].create({"name": str, "value": str}, pk="name", not_null={"value"})
    # Raw DDL for the one table sqlite-utils cannot declare: WITHOUT ROWID keeps
    # the rows in primary-key order in one B-tree, which measured ~40% faster
    # for batch upserts than a rowid table plus its primary-key index.
    db.execute(
        "CREATE TABLE fields (collection TEXT NOT NULL, key TEXT NOT NULL, field TEXT NOT NULL, "
        "kind TEXT NOT NULL, value TEXT, state BLOB, stamp TEXT NOT NULL, base TEXT, "
        "PRIMARY KEY (collection, key, field)) WITHOUT ROWID"
    )
    db["outbox"].create({"n": int, **_WRITE_COLUMNS}, pk="n", not_null=_NOT_NULL)
    db["refused"].create(
        {"n": int, **_WRITE_COLUMNS, "reason": str}, pk="n", not_null={*_NOT_NULL, "reason"}
    )
    db["conflicts"].create({"n": int, "body": str}, pk="n", not_null={"body"})
    db["conflicts"].create_index(["body"], index_name="conflicts_by_body", unique=True)


def _v2_query_index(db: sqlite_utils.Database) -> None:
    db["fields"].create_index(["collection", "field", "value"], index_name="fields_by_value")


def _v3_record_rows(db: sqlite_utils.Database) -> None:
    db.execute(
        "CREATE TABLE records (collection TEXT NOT NULL, key TEXT NOT NULL, vals TEXT NOT NULL, "
        "stamps TEXT NOT NULL, PRIMARY KEY (collection, key)) WITHOUT ROWID"
    )
    db.execute(
        "CREATE TABLE texts (collection TEXT NOT NULL, key TEXT NOT NULL, field TEXT NOT NULL, "
        "state BLOB NOT NULL, PRIMARY KEY (collection, key, field)) WITHOUT ROWID"
    )
    records: dict[tuple[str, str], dict[str, StoredField]] = {}
    for collection, key, field, kind, value, state, stamp, base in db.execute(
        "SELECT collection, key, field, kind, value, state, stamp, base FROM fields"
    ):
        if kind == "crdt":
            value = value_text(text_of(state))
            db.execute("INSERT INTO texts VALUES (?, ?, ?, ?)", [collection, key, field, state])
        records.setdefault((collection, key), {})[field] = StoredField(kind, value, stamp, base)
    for (collection, key), fields in records.items():
        db.execute(
            "INSERT INTO records VALUES (?, ?, ?, ?)", [collection, key, *dump_record(fields)]
        )
    db["fields"].drop()

    db.rename_table("outbox", "outbox_v2")
    db["outbox"].create(
        {
            "n": int,
            "collection": str,
            "kind": str,
            "stamp": str,
            "fields": str,
            "bases": str,
            "update": bytes,
            "count": int,
            "done": str,
        },
        pk="n",
        not_null={"collection", "kind", "stamp", "fields", "count"},
    )
    rows = db.execute(
        'SELECT n, collection, key, field, kind, value, "update", stamp, base FROM outbox_v2'
    ).fetchall()
    for n, collection, key, field, kind, value, update, stamp, base in rows:
        fields = "{" + json.dumps(key) + ":{" + json.dumps(field) + ":" + (value or "null") + "}}"
        bases = None if base is None else json.dumps({key: {field: base}})
        db.execute(
            "INSERT INTO outbox VALUES (?, ?, ?, ?, ?, ?, ?, 1, NULL)",
            [n, collection, kind, stamp, fields, bases, update],
        )
    db["outbox_v2"].drop()


def _v4_sweep(db: sqlite_utils.Database) -> None:
    db.execute(
        "CREATE TABLE sweep (collection TEXT NOT NULL, key TEXT NOT NULL, "
        "PRIMARY KEY (collection, key)) WITHOUT ROWID"
    )


def _v5_text_updates(db: sqlite_utils.Database) -> None:
    db.execute("ALTER TABLE texts ADD COLUMN fresh INTEGER NOT NULL DEFAULT 1")
    db.execute(
        "CREATE TABLE text_updates (collection TEXT NOT NULL, key TEXT NOT NULL, "
        "field TEXT NOT NULL, id INTEGER NOT NULL, stamp TEXT NOT NULL, base TEXT, "
        '"update" BLOB NOT NULL, PRIMARY KEY (collection, key, field, id)) WITHOUT ROWID'
    )


_LOSING_WRITE = ", ".join(
    f"body ->> '$.{path}'" for path in ("collection", "key", "field", "loser.stamp")
)
"""What names a conflict: its field and its losing write (reported once, law 5)."""


def _v6_conflicts_once_per_losing_write(db: sqlite_utils.Database) -> None:
    first = f"SELECT min(n) FROM conflicts GROUP BY {_LOSING_WRITE}"
    db.execute(f"DELETE FROM conflicts WHERE n NOT IN ({first})")
    db.execute(f"CREATE UNIQUE INDEX conflicts_by_loser ON conflicts ({_LOSING_WRITE})")


def _v7_conflicts_once_per_space(db: sqlite_utils.Database) -> None:
    db.execute("DROP INDEX conflicts_by_loser")
    db.execute(
        "CREATE UNIQUE INDEX conflicts_by_loser ON conflicts "
        f"(coalesce(body ->> '$.space', ''), {_LOSING_WRITE})"
    )


_MIGRATIONS: tuple[Callable[[sqlite_utils.Database], None], ...] = (
    _v1_tables,
    _v2_query_index,
    _v3_record_rows,
    _v4_sweep,
    _v5_text_updates,
    _v6_conflicts_once_per_losing_write,
    _v7_conflicts_once_per_space,
)
SCHEMA_VERSION = len(_MIGRATIONS)


def stored_version(db: sqlite_utils.Database) -> int:
    """The file's schema version; 0 for a file without the meta table (a new file)."""
    if not db["meta"].exists():
        return 0
    row = db.execute("SELECT value FROM meta WHERE name = 'schema_version'").fetchone()
    return int(row[0]) if row else 0


def migrate(db: sqlite_utils.Database, *, target: int = SCHEMA_VERSION) -> int:
    """Bring the schema from its stored version up to `target`; return the old version.

    The caller holds the write transaction. `target` below the latest exists so
    tests can build files as older versions wrote them.
    """
    found = stored_version(db)
    for step in _MIGRATIONS[found:target]:
        step(db)
    if found < target:
        db.execute(
            "INSERT OR REPLACE INTO meta (name, value) VALUES ('schema_version', ?)",
            [str(target)],
        )
    return found
