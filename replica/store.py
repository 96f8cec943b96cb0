"""The storage seam: a small `Store` protocol and its SQLite implementation.

All policy (stamping, merging, what goes to the outbox, when to notify) lives
in `replica.replica`, `replica.local` and `replica.remote`; a store only reads
and writes rows, so a second backend
is an adapter, not a rewrite. Rows cross the seam in their stored form (HLC
strings, canonical JSON text): the hot paths compare and copy text without
parsing it.

`SqliteStore` owns one `sqlite3` connection in autocommit mode and opens
transactions itself: ``BEGIN IMMEDIATE`` for the outermost, ``SAVEPOINT`` for
nested ones, so a failed inner step can be rolled back alone. The hot paths
use constant SQL on the raw connection (sqlite3 caches the prepared
statements by their text). Every `sqlite3.Error` is translated to
`StorageError` at this boundary.

Durability: WAL with ``synchronous=FULL``: a transaction that committed is in
the fsynced WAL, so it survives SIGKILL and power loss alike.

Must not import `server`.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import NamedTuple, Protocol

import sqlite_utils

from replica import schema
from replica.errors import NotAReplicaError, SchemaVersionError, StorageError

__all__ = ["FieldRow", "OutboxRow", "RecordRow", "SqliteStore", "Store"]


class FieldRow(NamedTuple):
    """One stored field (a tuple so it goes to `executemany` as it is)."""

    collection: str
    key: str
    field: str
    kind: str
    value: str | None  # canonical JSON text (lww)
    state: bytes | None  # merged Yjs state (crdt)
    stamp: str
    base: str | None


class OutboxRow(NamedTuple):
    """One outbox (or refused) entry; `n` numbers the mutation id."""

    n: int
    collection: str
    key: str
    field: str
    kind: str
    value: str | None
    update: bytes | None
    stamp: str
    base: str | None


class RecordRow(NamedTuple):
    """A record as SQLite assembles it, so Python parses one JSON text per query."""

    key: str
    body: str  # JSON ``[{lww field: value}, [crdt field names], tombstone value or null]``


class Store(Protocol):
    """What the replica needs from its storage; one transaction per `transaction()`."""

    path: Path

    @property
    def in_transaction(self) -> bool: ...
    def transaction(self) -> AbstractContextManager[None]: ...
    def meta(self) -> dict[str, str]: ...
    def set_meta(self, items: dict[str, str]) -> None: ...
    def record(self, collection: str, key: str) -> list[FieldRow]: ...
    def records(self, collection: str, keys: Sequence[str]) -> list[FieldRow]: ...
    def record_row(self, collection: str, key: str) -> RecordRow | None: ...
    def field(self, collection: str, key: str, field: str) -> FieldRow | None: ...
    def write_fields(self, rows: Iterable[FieldRow]) -> None: ...
    def drop_field(self, collection: str, key: str, field: str) -> bool: ...
    def select(
        self, collection: str, where: Sequence[tuple[str, str]], order_by: str | None, limit: int
    ) -> list[RecordRow]: ...
    def append_outbox(self, rows: Iterable[OutboxRow]) -> None: ...
    def outbox(self, limit: int) -> list[OutboxRow]: ...
    def remove_outbox(self, numbers: Iterable[int]) -> int: ...
    def refuse(self, n: int, reason: str) -> bool: ...
    def refused(self) -> list[tuple[OutboxRow, str]]: ...
    def pending_count(self) -> int: ...
    def add_conflicts(self, bodies: Iterable[str]) -> int: ...
    def conflicts(self) -> list[str]: ...
    def close(self) -> None: ...


_FIELD_COLS = "collection, key, field, kind, value, state, stamp, base"
_OUTBOX_COLS = 'n, collection, key, field, kind, value, "update", stamp, base'
_UPSERT_FIELD = (
    f"INSERT INTO fields ({_FIELD_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (collection, key, field) DO UPDATE SET kind = excluded.kind, "
    "value = excluded.value, state = excluded.state, stamp = excluded.stamp, base = excluded.base"
)
_SELECT_RECORD = f"SELECT {_FIELD_COLS} FROM fields WHERE collection = ? AND key = ?"
_SELECT_FIELD = _SELECT_RECORD + " AND field = ?"
_INSERT_OUTBOX = f"INSERT INTO outbox ({_OUTBOX_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
_SET_META = "INSERT OR REPLACE INTO meta (name, value) VALUES (?, ?)"
_SAME_RECORD = "r.collection = f0.collection AND r.key = f0.key"
# One range scan per record builds its body (see `RecordRow`); the LWW values
# are canonical JSON text already, so they are spliced in, not re-parsed.
_RECORD_BODY = (
    "(SELECT '[' || coalesce('{' || group_concat(json_quote(r.field) || ':' || r.value, ',') "
    "FILTER (WHERE r.kind = 'lww' AND r.field != '_deleted') || '}', '{}') "
    "|| ',' || json_group_array(r.field) FILTER (WHERE r.kind = 'crdt') "
    "|| ',' || coalesce(max(r.value) FILTER (WHERE r.field = '_deleted'), 'null') || ']' "
    f"FROM fields r WHERE {_SAME_RECORD})"
)
_SELECT_ONE = (
    f"SELECT f0.key, {_RECORD_BODY} FROM (SELECT ? AS collection, ? AS key) f0 "
    f"WHERE EXISTS (SELECT 1 FROM fields r WHERE {_SAME_RECORD})"
)
_NOT_DELETED = (
    "NOT EXISTS (SELECT 1 FROM fields d WHERE d.collection = f0.collection AND d.key = f0.key "
    "AND d.field = '_deleted' AND d.value = 'true')"
)


def _translate(exc: sqlite3.Error) -> StorageError:
    return StorageError(f"SQLite failed: {exc}")


class SqliteStore:
    """The replica's rows in one SQLite file (see the module docstring)."""

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self._conn = conn
        self.path = path
        self._depth = 0

    @classmethod
    def open(cls, path: Path) -> SqliteStore:
        """Open (creating or migrating) the file; a file that is no replica is left untouched."""
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

    # -- fields ---------------------------------------------------------------

    def record(self, collection: str, key: str) -> list[FieldRow]:
        return [FieldRow(*r) for r in self._run(_SELECT_RECORD, (collection, key))]

    def records(self, collection: str, keys: Sequence[str]) -> list[FieldRow]:
        """All fields of `keys`, in no particular order."""
        rows: list[FieldRow] = []
        chunk = 500  # stay far below SQLite's bound-parameter limit
        for start in range(0, len(keys), chunk):
            part = keys[start : start + chunk]
            sql = (
                f"SELECT {_FIELD_COLS} FROM fields WHERE collection = ? "
                f"AND key IN ({', '.join('?' * len(part))})"
            )
            rows.extend(FieldRow(*r) for r in self._run(sql, (collection, *part)))
        return rows

    def record_row(self, collection: str, key: str) -> RecordRow | None:
        """The record assembled by SQLite (see `RecordRow`); None when it has no fields."""
        row = self._run(_SELECT_ONE, (collection, key)).fetchone()
        return RecordRow(*row) if row else None

    def field(self, collection: str, key: str, field: str) -> FieldRow | None:
        row = self._run(_SELECT_FIELD, (collection, key, field)).fetchone()
        return FieldRow(*row) if row else None

    def write_fields(self, rows: Iterable[FieldRow]) -> None:
        self._many(_UPSERT_FIELD, rows)

    def drop_field(self, collection: str, key: str, field: str) -> bool:
        sql = "DELETE FROM fields WHERE collection = ? AND key = ? AND field = ?"
        return self._run(sql, (collection, key, field)).rowcount > 0

    def select(
        self, collection: str, where: Sequence[tuple[str, str]], order_by: str | None, limit: int
    ) -> list[RecordRow]:
        """Live records whose LWW fields equal the given canonical JSON texts, in order.

        The first condition drives the ``fields_by_value`` index on
        ``(collection, field, value)`` (named with INDEXED BY: without
        statistics the planner would rather walk the whole collection in
        primary-key order); the other conditions, the tombstone check, the
        sort field and the assembly of each record are primary-key lookups
        per match. Without conditions every live record of the collection
        matches. Sorting uses ``json_extract`` so numbers sort as numbers;
        ties (and records without the sort field, first) go by key.
        """
        joins: list[str] = []
        join_params: list[object] = []
        for i, (field, value) in enumerate(where[1:], start=1):
            joins.append(
                f"JOIN fields f{i} ON f{i}.collection = f0.collection AND f{i}.key = f0.key "
                f"AND f{i}.field = ? AND f{i}.kind = 'lww' AND f{i}.value = ?"
            )
            join_params += [field, value]
        order = "f0.key"
        if order_by is not None:
            joins.append(
                "LEFT JOIN fields o ON o.collection = f0.collection AND o.key = f0.key "
                "AND o.field = ?"
            )
            join_params.append(order_by)
            order = "json_extract(o.value, '$'), f0.key"
        if where:  # one row per record: a record holds a field once
            source = "fields f0 INDEXED BY fields_by_value"
            match = "f0.field = ? AND f0.kind = 'lww' AND f0.value = ?"
            match_params: list[object] = [where[0][0], where[0][1]]
            group = ""
        else:
            source, match, match_params, group = "fields f0", "1", [], "GROUP BY f0.key"
        sql = (
            f"SELECT f0.key, {_RECORD_BODY} FROM {source} {' '.join(joins)} "
            f"WHERE f0.collection = ? AND {match} AND {_NOT_DELETED} "
            f"{group} ORDER BY {order} LIMIT ?"
        )
        params = [*join_params, collection, *match_params, limit]
        return [RecordRow(*r) for r in self._run(sql, params)]

    # -- outbox ---------------------------------------------------------------

    def append_outbox(self, rows: Iterable[OutboxRow]) -> None:
        self._many(_INSERT_OUTBOX, rows)

    def outbox(self, limit: int) -> list[OutboxRow]:
        sql = f"SELECT {_OUTBOX_COLS} FROM outbox ORDER BY n LIMIT ?"
        return [OutboxRow(*r) for r in self._run(sql, (limit,))]

    def remove_outbox(self, numbers: Iterable[int]) -> int:
        return self._many("DELETE FROM outbox WHERE n = ?", ((n,) for n in numbers))

    def refuse(self, n: int, reason: str) -> bool:
        """Move entry `n` to the refused table; False when it is not pending."""
        moved = self._run(
            f"INSERT INTO refused ({_OUTBOX_COLS}, reason) "
            f"SELECT {_OUTBOX_COLS}, ? FROM outbox WHERE n = ?",
            (reason, n),
        ).rowcount
        self._run("DELETE FROM outbox WHERE n = ?", (n,))
        return moved == 1

    def refused(self) -> list[tuple[OutboxRow, str]]:
        rows = self._run(f"SELECT {_OUTBOX_COLS}, reason FROM refused ORDER BY n")
        return [(OutboxRow(*r[:-1]), r[-1]) for r in rows]

    def pending_count(self) -> int:
        return int(self._run("SELECT count(*) FROM outbox").fetchone()[0])

    # -- conflict log ---------------------------------------------------------

    def add_conflicts(self, bodies: Iterable[str]) -> int:
        """Store each body once; return how many were new."""
        return self._many(
            "INSERT OR IGNORE INTO conflicts (body) VALUES (?)", ((b,) for b in bodies)
        )

    def conflicts(self) -> list[str]:
        return [r[0] for r in self._run("SELECT body FROM conflicts ORDER BY n")]

    # -- lifecycle ------------------------------------------------------------

    def close(self) -> None:
        self._conn.close()
