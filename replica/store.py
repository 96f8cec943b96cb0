"""The storage seam: a small `Store` protocol and its SQLite implementation.

All policy (stamping, merging, what goes to the outbox, when to notify) lives
in `replica.replica`, `replica.local` and `replica.remote`; a store only reads
and writes rows, so a second backend
is an adapter, not a rewrite. Rows cross the seam in their stored form (a
record's two JSON texts, see `replica.layout`; HLC strings): the hot paths
compare and copy text without parsing more than they need.

`SqliteStore` owns one `sqlite3` connection in autocommit mode and opens
transactions itself: ``BEGIN IMMEDIATE`` for the outermost, ``SAVEPOINT`` for
nested ones, so a failed inner step can be rolled back alone. The hot paths
use constant SQL on the raw connection (sqlite3 caches the prepared
statements by their text). Every `sqlite3.Error` is translated to
`StorageError` at this boundary.

Durability: WAL with ``synchronous=FULL``: a transaction that committed is in
the fsynced WAL, so it survives SIGKILL and power loss alike.

Must not import `quietsync.server`.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import NamedTuple, Protocol

import sqlite_utils

from quietsync.replica import schema
from quietsync.replica.errors import NotAReplicaError, SchemaVersionError, StorageError
from quietsync.replica.spaces import CollectionRange

__all__ = [
    "OutboxRow",
    "RecordRow",
    "RefusedRow",
    "SqliteStore",
    "Store",
    "TextRow",
    "TextUpdate",
]


class RecordRow(NamedTuple):
    """One stored record: its key and the two JSON texts of `replica.layout`."""

    key: str
    vals: str
    stamps: str


class OutboxRow(NamedTuple):
    """One outbox row: what one call wrote to one collection (see `replica.schema`).

    `fields` is a JSON object ``{key: {field: value}}`` (``{key: {field:
    null}}`` for a CRDT edit, whose bytes are `update`); `bases` the same
    shape holding the non-null bases, or None; `done` a JSON array of the
    positions already answered, or None.
    """

    n: int
    collection: str
    kind: str
    stamp: str
    fields: str
    bases: str | None
    update: bytes | None
    count: int
    done: str | None


class TextUpdate(NamedTuple):
    """One stored update of a text field, with the field's stamp and base after it."""

    stamp: str
    base: str | None
    update: bytes


class TextRow(NamedTuple):
    """A CRDT text field as stored: its snapshot, the updates since, and whether
    the record row is up to date with them (see `replica.schema`)."""

    snapshot: bytes
    updates: list[TextUpdate]
    fresh: bool


class RefusedRow(NamedTuple):
    """One mutation the server refused for good, as it was queued, with the reason."""

    n: int
    collection: str
    key: str
    field: str
    kind: str
    value: str | None
    update: bytes | None
    stamp: str
    base: str | None
    reason: str


class Store(Protocol):
    """What the replica needs from its storage; one transaction per `transaction()`."""

    path: Path

    @property
    def in_transaction(self) -> bool: ...
    def transaction(self) -> AbstractContextManager[None]: ...
    def meta(self) -> dict[str, str]: ...
    def set_meta(self, items: dict[str, str]) -> None: ...
    def record(self, collection: str, key: str) -> RecordRow | None: ...
    def records(self, collection: str, keys: Sequence[str]) -> list[RecordRow]: ...
    def write_records(self, collection: str, rows: Iterable[RecordRow]) -> None: ...
    def drop_record(self, collection: str, key: str) -> None: ...
    def text_state(self, collection: str, key: str, field: str) -> TextRow | None: ...
    def write_text_snapshot(self, collection: str, key: str, field: str, state: bytes) -> None: ...
    def append_text_updates(
        self, ref: tuple[str, str, str], rows: Sequence[TextUpdate]
    ) -> None: ...
    def text_latest(
        self, collection: str, key: str, field: str
    ) -> tuple[str, str | None] | None: ...
    def text_row_flags(self, collection: str, key: str, field: str) -> tuple[bool, str] | None: ...
    def set_text_fresh(self, collection: str, key: str, field: str, fresh: bool) -> None: ...
    def stale_texts(self) -> list[tuple[str, str, str]]: ...
    def all_texts(self) -> list[tuple[str, str, str]]: ...
    def drop_text_state(self, collection: str, key: str, field: str) -> None: ...
    def vacuum(self) -> None: ...
    def select(
        self, collection: str, where: Sequence[tuple[str, str]], order_by: str | None, limit: int
    ) -> list[tuple[str, str]]: ...
    def append_outbox(self, rows: Iterable[OutboxRow]) -> None: ...
    def outbox(self, limit: int, within: CollectionRange | None = None) -> list[OutboxRow]: ...
    def outbox_between(self, first: int, last: int) -> list[OutboxRow]: ...
    def set_outbox_done(self, items: Iterable[tuple[int, str]]) -> None: ...
    def remove_outbox(self, numbers: Iterable[int]) -> None: ...
    def add_refused(self, rows: Iterable[RefusedRow]) -> None: ...
    def refused(self) -> list[RefusedRow]: ...
    def pending_count(self) -> int: ...
    def add_conflicts(self, bodies: Iterable[str]) -> list[str]: ...
    def conflicts(self) -> list[str]: ...
    def drop_conflicts(self, space: str) -> None: ...
    def collections(self, within: CollectionRange | None = None) -> list[str]: ...
    def scan(self, collection: str) -> Iterator[RecordRow]: ...
    def drop_range(self, within: CollectionRange) -> None: ...
    def delete_meta(self, names: Iterable[str]) -> None: ...
    def sweep_begin(self, within: CollectionRange | None = None) -> None: ...
    def sweep_seen(self, collection: str, keys: Iterable[str]) -> None: ...
    def sweep_left(self, within: CollectionRange | None = None) -> list[tuple[str, str]]: ...
    def sweep_end(self, within: CollectionRange | None = None) -> None: ...
    def close(self) -> None: ...


_OUTBOX_COLS = 'n, collection, kind, stamp, fields, bases, "update", count, done'
_REFUSED_COLS = 'n, collection, key, field, kind, value, "update", stamp, base, reason'
_UPSERT_RECORD = (
    "INSERT INTO records (collection, key, vals, stamps) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (collection, key) DO UPDATE SET vals = excluded.vals, stamps = excluded.stamps"
)
_UPSERT_TEXT = (
    "INSERT INTO texts (collection, key, field, state, fresh) VALUES (?, ?, ?, ?, 1) "
    "ON CONFLICT (collection, key, field) DO UPDATE SET state = excluded.state, fresh = 1"
)
_TEXT_KEY = "collection = ? AND key = ? AND field = ?"
_INSERT_TEXT_UPDATE = (
    'INSERT INTO text_updates (collection, key, field, id, stamp, base, "update") '
    "VALUES (?, ?, ?, ?, ?, ?, ?)"
)
_INSERT_OUTBOX = f"INSERT INTO outbox ({_OUTBOX_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
_SET_META = "INSERT OR REPLACE INTO meta (name, value) VALUES (?, ?)"
_PENDING = "SELECT coalesce(sum(count - coalesce(json_array_length(done), 0)), 0) FROM outbox"
MIN_SQLITE = (3, 38, 0)  # the JSON operators -> and ->> (replica.layout, queries)
_KEY_CHUNK = 500  # keys per IN (...): far below SQLite's bound-parameter limit


def _path(field: str) -> str:
    """The SQL literal of the JSON path to `field`; the same text in every index and query.

    SQLite matches an expression index only against the identical
    expression, so every use is built here. A JSON path label cannot quote a
    double quote, and SQLite compares labels with the key's escaped text, so
    names holding a character JSON escapes (``"``, ``\\``, control characters)
    cannot be queried or sorted on (`ValueError`).
    """
    if any(c in '"\\' or c < " " for c in field):
        raise ValueError(
            f"cannot query or sort on field {field!r}: its name holds a character JSON escapes "
            '(", \\ or a control character)'
        )
    return "'$.\"" + field.replace("'", "''") + "\"'"


_LIVE = f"coalesce(vals -> {_path('_deleted')}, 'false') != 'true'"


def _within(within: CollectionRange | None) -> tuple[str, list[str]]:
    """The SQL condition (``AND ...``) and parameters keeping `within`'s collections."""
    if within is None:
        return "", []
    if within.high is None:
        return " AND collection >= ?", [within.low]
    return " AND collection >= ? AND collection < ?", [within.low, within.high]


def _translate(exc: sqlite3.Error) -> StorageError:
    return StorageError(f"SQLite failed: {exc}")


class SqliteStore:
    """The replica's rows in one SQLite file (see the module docstring)."""

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self._conn = conn
        self.path = path
        self._depth = 0
        self._indexed: set[str] = set()  # fields known to have their expression index
        self._text_update_id: int | None = None  # the last id of text_updates (read once)

    @classmethod
    def open(cls, path: Path) -> SqliteStore:
        """Open (creating or migrating) the file; a file that is no replica is left untouched."""
        if sqlite3.sqlite_version_info < MIN_SQLITE:
            raise StorageError(
                f"the replica needs SQLite {'.'.join(map(str, MIN_SQLITE))} or newer (JSON "
                f"operators -> and ->>); this Python links SQLite {sqlite3.sqlite_version}"
            )
        try:
            conn = sqlite3.connect(path, isolation_level=None, cached_statements=256)
        except sqlite3.Error as exc:
            raise NotAReplicaError(path, f"cannot open: {exc}") from exc
        store = cls(conn, path)
        try:
            store._prepare()
        except BaseException:
            conn.close()
            raise
        return store

    def _prepare(self) -> None:
        db = sqlite_utils.Database(self._conn, execute_plugins=False)
        try:
            # Read-only checks first: nothing (not even the journal mode) may
            # change in a file we are going to refuse.
            tables = set(db.table_names())
            if tables and "meta" not in tables:
                raise NotAReplicaError(self.path, "it is an SQLite database with other tables")
            found = schema.stored_version(db)
            if found > schema.SCHEMA_VERSION:
                raise SchemaVersionError(self.path, found, schema.SCHEMA_VERSION)
            self._conn.execute("PRAGMA journal_mode = WAL")
            self._conn.execute("PRAGMA synchronous = FULL")
            with self.transaction():
                schema.migrate(db)
        except sqlite3.DatabaseError as exc:
            raise NotAReplicaError(self.path, str(exc)) from exc

    # -- transactions ---------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One atomic unit; nests (inner levels are savepoints)."""
        depth = self._depth
        begin, commit, rollback = (
            ("BEGIN IMMEDIATE", "COMMIT", "ROLLBACK")
            if depth == 0
            else (f"SAVEPOINT s{depth}", f"RELEASE s{depth}", f"ROLLBACK TO s{depth}")
        )
        self._run(begin)
        self._depth = depth + 1
        try:
            yield
        except BaseException:
            self._depth = depth
            self._run(rollback)
            if depth:
                self._run(commit)  # a savepoint stays open after ROLLBACK TO
            raise
        self._depth = depth
        try:
            self._conn.execute(commit)
        except sqlite3.Error as exc:
            if depth == 0 and self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            raise _translate(exc) from exc

    @property
    def in_transaction(self) -> bool:
        return self._depth > 0

    def _run(self, sql: str, params: Sequence[object] = ()) -> sqlite3.Cursor:
        try:
            return self._conn.execute(sql, params)
        except sqlite3.Error as exc:
            raise _translate(exc) from exc

    def _many(self, sql: str, rows: Iterable[Sequence[object]]) -> int:
        try:
            return self._conn.executemany(sql, rows).rowcount
        except sqlite3.Error as exc:
            raise _translate(exc) from exc

    # -- meta -----------------------------------------------------------------

    def meta(self) -> dict[str, str]:
        return dict(self._run("SELECT name, value FROM meta").fetchall())

    def set_meta(self, items: dict[str, str]) -> None:
        self._many(_SET_META, items.items())

    # -- records --------------------------------------------------------------

    def record(self, collection: str, key: str) -> RecordRow | None:
        sql = "SELECT key, vals, stamps FROM records WHERE collection = ? AND key = ?"
        row = self._run(sql, (collection, key)).fetchone()
        return None if row is None else RecordRow(*row)

    def records(self, collection: str, keys: Sequence[str]) -> list[RecordRow]:
        """The stored records among `keys`, in no particular order."""
        rows: list[RecordRow] = []
        for start in range(0, len(keys), _KEY_CHUNK):
            part = keys[start : start + _KEY_CHUNK]
            sql = (
                "SELECT key, vals, stamps FROM records WHERE collection = ? "
                f"AND key IN ({', '.join('?' * len(part))})"
            )
            rows.extend(RecordRow(*r) for r in self._run(sql, (collection, *part)))
        return rows

    def write_records(self, collection: str, rows: Iterable[RecordRow]) -> None:
        self._many(_UPSERT_RECORD, ((collection, *row) for row in rows))

    def drop_record(self, collection: str, key: str) -> None:
        self._run("DELETE FROM records WHERE collection = ? AND key = ?", (collection, key))

    def text_state(self, collection: str, key: str, field: str) -> TextRow | None:
        ref = (collection, key, field)
        row = self._run(f"SELECT state, fresh FROM texts WHERE {_TEXT_KEY}", ref).fetchone()
        if row is None:
            return None
        sql = f'SELECT stamp, base, "update" FROM text_updates WHERE {_TEXT_KEY} ORDER BY id'
        updates = [TextUpdate(s, b, bytes(u)) for s, b, u in self._run(sql, ref)]
        return TextRow(bytes(row[0]), updates, bool(row[1]))

    def write_text_snapshot(self, collection: str, key: str, field: str, state: bytes) -> None:
        """Replace the field's snapshot and drop its updates; the record row is fresh again."""
        ref = (collection, key, field)
        self._run(_UPSERT_TEXT, (*ref, state))
        self._run(f"DELETE FROM text_updates WHERE {_TEXT_KEY}", ref)

    def append_text_updates(self, ref: tuple[str, str, str], rows: Sequence[TextUpdate]) -> None:
        if self._text_update_id is None:
            (last,) = self._run("SELECT coalesce(max(id), 0) FROM text_updates").fetchone()
            self._text_update_id = int(last)
        first = self._text_update_id + 1
        self._text_update_id += len(rows)
        self._many(_INSERT_TEXT_UPDATE, [(*ref, first + i, *row) for i, row in enumerate(rows)])

    def text_row_flags(self, collection: str, key: str, field: str) -> tuple[bool, str] | None:
        """Whether the record is deleted, and ``"crdt"`` if `field` is a text field there
        (one small read, no JSON parsed in Python); None if there is no such record."""
        try:
            path = _path(field)[:-1] + "[2]'"
        except ValueError:
            return None
        sql = (
            f"SELECT coalesce(vals -> {_path('_deleted')}, 'false') = 'true', "
            f"coalesce(stamps ->> {path}, 'lww') FROM records WHERE collection = ? AND key = ?"
        )
        row = self._run(sql, (collection, key)).fetchone()
        return None if row is None else (bool(row[0]), row[1])

    def text_latest(self, collection: str, key: str, field: str) -> tuple[str, str | None] | None:
        sql = f"SELECT stamp, base FROM text_updates WHERE {_TEXT_KEY} ORDER BY id DESC LIMIT 1"
        row = self._run(sql, (collection, key, field)).fetchone()
        return None if row is None else (row[0], row[1])

    def set_text_fresh(self, collection: str, key: str, field: str, fresh: bool) -> None:
        sql = f"UPDATE texts SET fresh = ? WHERE {_TEXT_KEY}"
        self._run(sql, (int(fresh), collection, key, field))

    def stale_texts(self) -> list[tuple[str, str, str]]:
        rows = self._run("SELECT collection, key, field FROM texts WHERE fresh = 0")
        return [(c, k, f) for c, k, f in rows]

    def all_texts(self) -> list[tuple[str, str, str]]:
        return [(c, k, f) for c, k, f in self._run("SELECT collection, key, field FROM texts")]

    def drop_text_state(self, collection: str, key: str, field: str) -> None:
        ref = (collection, key, field)
        self._run(f"DELETE FROM texts WHERE {_TEXT_KEY}", ref)
        self._run(f"DELETE FROM text_updates WHERE {_TEXT_KEY}", ref)

    def vacuum(self) -> None:
        """Rewrite the file without its free pages (outside any transaction)."""
        self._run("PRAGMA wal_checkpoint(TRUNCATE)")
        self._run("VACUUM")
        self._run("PRAGMA wal_checkpoint(TRUNCATE)")

    def select(
        self, collection: str, where: Sequence[tuple[str, str]], order_by: str | None, limit: int
    ) -> list[tuple[str, str]]:
        """``(key, vals)`` of the live records whose fields hold the given canonical texts.

        The first condition drives an expression index on ``(collection,
        vals -> field)``, created here the first time a field is queried (and
        kept in the file: later writes maintain it), named with INDEXED BY:
        without statistics the planner would rather walk the collection in
        primary-key order, and INDEXED BY makes SQLite fail rather than
        ignore the index. The other conditions and the tombstone check are
        evaluated on each match. Without conditions
        the collection is read in key order. Sorting uses ``->>`` (SQL values)
        so numbers sort as numbers; ties, and records without the sort field
        (first), go by key.
        """
        conds = [f"vals -> {_path(field)} = ?" for field, _ in where]
        order = "key" if order_by is None else f"vals ->> {_path(order_by)}, key"
        source = "records"
        if where:
            source += f" INDEXED BY {self._ensure_index(where[0][0])}"
        sql = (
            f"SELECT key, vals FROM {source} WHERE collection = ? "
            f"{''.join(f'AND {c} ' for c in conds)}AND {_LIVE} ORDER BY {order} LIMIT ?"
        )
        params = [collection, *(text for _, text in where), limit]
        return [(k, v) for k, v in self._run(sql, params)]

    def _ensure_index(self, field: str) -> str:
        """The name of `field`'s expression index, creating it if the file has none yet."""
        name = '"' + f"records_by_{field}" + '"'
        if field not in self._indexed:
            expr = f"vals -> {_path(field)}"  # refuses names with a double quote
            with self.transaction():
                self._run(f"CREATE INDEX IF NOT EXISTS {name} ON records (collection, {expr})")
            self._indexed.add(field)
        return name

    # -- outbox ---------------------------------------------------------------

    def append_outbox(self, rows: Iterable[OutboxRow]) -> None:
        self._many(_INSERT_OUTBOX, rows)

    def outbox(self, limit: int, within: CollectionRange | None = None) -> list[OutboxRow]:
        """The oldest `limit` rows (-1: all), of `within`'s collections if given."""
        cond, params = _within(within)
        sql = f"SELECT {_OUTBOX_COLS} FROM outbox WHERE 1{cond} ORDER BY n LIMIT ?"
        return [OutboxRow(*r) for r in self._run(sql, (*params, limit))]

    def outbox_between(self, first: int, last: int) -> list[OutboxRow]:
        """Rows that may hold mutations `first` .. `last`: the row at or before `first`, onwards."""
        sql = (
            f"SELECT {_OUTBOX_COLS} FROM outbox WHERE n BETWEEN "
            "coalesce((SELECT max(n) FROM outbox WHERE n <= ?), ?) AND ? ORDER BY n"
        )
        return [OutboxRow(*r) for r in self._run(sql, (first, first, last))]

    def set_outbox_done(self, items: Iterable[tuple[int, str]]) -> None:
        self._many("UPDATE outbox SET done = ? WHERE n = ?", ((d, n) for n, d in items))

    def remove_outbox(self, numbers: Iterable[int]) -> None:
        self._many("DELETE FROM outbox WHERE n = ?", ((n,) for n in numbers))

    def add_refused(self, rows: Iterable[RefusedRow]) -> None:
        sql = f"INSERT INTO refused ({_REFUSED_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        self._many(sql, rows)

    def refused(self) -> list[RefusedRow]:
        rows = self._run(f"SELECT {_REFUSED_COLS} FROM refused ORDER BY n")
        return [RefusedRow(*r) for r in rows]

    def pending_count(self) -> int:
        return int(self._run(_PENDING).fetchone()[0])

    # -- conflict log ---------------------------------------------------------

    def add_conflicts(self, bodies: Iterable[str]) -> list[str]:
        """Store each conflict once per field and losing write (`replica.schema`);
        return the bodies that were new, in order."""
        sql = "INSERT OR IGNORE INTO conflicts (body) VALUES (?)"
        return [body for body in bodies if self._run(sql, (body,)).rowcount]

    def conflicts(self) -> list[str]:
        return [r[0] for r in self._run("SELECT body FROM conflicts ORDER BY n")]

    def drop_conflicts(self, space: str) -> None:
        """Forget the conflicts of shared space `space` (bodies naming it, `replica.schema`)."""
        self._run("DELETE FROM conflicts WHERE body ->> '$.space' = ?", (space,))

    # -- ranges of collections: resync (`replica.resync`), spaces (`replica.spaces`) --

    def collections(self, within: CollectionRange | None = None) -> list[str]:
        """The collections holding records or pending writes (of `within`, if given)."""
        cond, params = _within(within)
        sql = (
            f"SELECT collection FROM records WHERE 1{cond} "
            f"UNION SELECT collection FROM outbox WHERE 1{cond} ORDER BY 1"
        )
        return [r[0] for r in self._run(sql, params * 2)]

    def drop_range(self, within: CollectionRange) -> None:
        """Delete the records, text states and sweep marks of `within`'s collections."""
        cond, params = _within(within)
        for table in ("records", "texts", "text_updates", "sweep"):
            self._run(f"DELETE FROM {table} WHERE 1{cond}", params)

    def delete_meta(self, names: Iterable[str]) -> None:
        self._many("DELETE FROM meta WHERE name = ?", ((name,) for name in names))

    def scan(self, collection: str) -> Iterator[RecordRow]:
        """Every record of `collection`, in key order, read a chunk at a time."""
        after = ""
        sql = (
            "SELECT key, vals, stamps FROM records WHERE collection = ? AND key > ? "
            f"ORDER BY key LIMIT {_KEY_CHUNK}"
        )
        while rows := self._run(sql, (collection, after)).fetchall():
            yield from (RecordRow(*row) for row in rows)
            after = rows[-1][0]

    def sweep_begin(self, within: CollectionRange | None = None) -> None:
        cond, params = _within(within)
        sql = f"INSERT OR IGNORE INTO sweep SELECT collection, key FROM records WHERE 1{cond}"
        self._run(sql, params)

    def sweep_seen(self, collection: str, keys: Iterable[str]) -> None:
        sql = "DELETE FROM sweep WHERE collection = ? AND key = ?"
        self._many(sql, ((collection, key) for key in keys))

    def sweep_left(self, within: CollectionRange | None = None) -> list[tuple[str, str]]:
        cond, params = _within(within)
        sql = f"SELECT collection, key FROM sweep WHERE 1{cond}"
        return [(c, k) for c, k in self._run(sql, params)]

    def sweep_end(self, within: CollectionRange | None = None) -> None:
        cond, params = _within(within)
        self._run(f"DELETE FROM sweep WHERE 1{cond}", params)

    # -- lifecycle ------------------------------------------------------------

    def close(self) -> None:
        self._conn.close()
