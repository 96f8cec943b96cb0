"""`SQLiteStore`: the embedded `server.store.Store` backend, on one sqlite3 connection.

Durability: WAL journal with ``synchronous=FULL``, so a transaction whose
COMMIT returned is on disk and survives a SIGKILL or a power cut; that is what
lets the server acknowledge a push. Writes are short (one ``BEGIN IMMEDIATE``
per push, rows written with ``executemany``) and serialized on the one
connection; the caller runs every method on one worker thread. One process
serves a database: a second one is refused (an exclusive lock on
``<db>.lock``), since its live sockets would never hear of the first one's
writes. Its transactions are `server.store.OverwriteTransaction`s: a push of
plain overwrites is one upsert whose ``WHERE`` is `conflicts.lww.overwrites`
on the stamps' text, under a savepoint it rolls back to when a row is
refused or a record written is deleted (`server.overwrite`).

Tables (schema and migrations: `server.sqlite_schema`; every row keyed by
``space`` first, so one space is a key range; see `quietsync.protocol.spaces`):

* ``fields(space, collection, key, field, seq, size, kind, stamp, base, mid,
  value, state, writer)``: every field's current state, the seq of its last
  change, its size, the id of the write that made it and the user who pushed
  it; an index on ``(space, seq, size)`` serves pulls (a page is cut by size
  from the index alone: reading a column of this WITHOUT ROWID table reads
  the whole row, values and all), a partial index the tombstones compaction
  looks for;
* ``heads(space, seq, gc_seq, stamp)``: each space's head, tombstone horizon
  and the highest stamp written (`last_stamp` reads this small table);
* ``clients(space, client, hw, last)``: one `ClientMark` per pushing client;
* ``conflicts(pos, space, collection, key, field, loser, body)``: conflicts
  detected, as `Conflict` JSON, one per losing write;
* ``meta(name, value)``: the schema versions and the history id.

Companion stores of the same database (the jobs feature's
`quietsync.server.jobs.sqlite_store.SQLiteJobStore`) use `connection` and
write inside the transactions opened here; they translate errors with
`translated_errors`. sqlite3 errors are translated into `StoreError` and go
no further.
"""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
from collections.abc import Callable, Collection, Iterator, Sequence, Sized
from contextlib import AbstractContextManager, contextmanager
from itertools import chain
from pathlib import Path
from typing import Any, TypeVar

from quietsync.conflicts import HLC, Conflict, FieldRef
from quietsync.protocol import DELETED_FIELD, Mutation, WireWrite
from quietsync.server.backend import (
    TOMBSTONE,
    change_from_row,
    dumps,
    key_of,
    mark_from_row,
    mark_text,
    page_end,
    stamp_or_none,
    stored,
    str_or_none,
    value_text,
)
from quietsync.server.errors import ConfigError, StoreError
from quietsync.server.sqlite_schema import migrate, read_meta
from quietsync.server.store import (
    BatchWrite,
    ChangePage,
    ClientMark,
    ConflictPage,
    FieldId,
    FieldKey,
    StoredField,
)

__all__ = ["SQLiteStore", "SQLiteWriteTransaction", "translated_errors"]

T = TypeVar("T")

_UPSERT_FIELD = (
    "INSERT INTO fields (space, collection, key, field, seq, size, kind, stamp, base, mid, value,"
    " state, writer) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (space, collection, key, field) DO UPDATE SET seq = excluded.seq,"
    " size = excluded.size, kind = excluded.kind, stamp = excluded.stamp, base = excluded.base,"
    " mid = excluded.mid, value = excluded.value, state = excluded.state, writer = excluded.writer"
)
_OVERWRITE_FIELD = (  # `conflicts.lww.overwrites`, on the stamps' text (its order is theirs)
    f"{_UPSERT_FIELD} WHERE fields.kind = 'lww'"
    " AND excluded.stamp > fields.stamp AND excluded.base >= fields.stamp"
)
_TOMBSTONES = (  # the partial index's own condition, as literals, or SQLite cannot use it
    "SELECT space, collection, key FROM fields INDEXED BY fields_tombstones"
    f" WHERE field = '{DELETED_FIELD}' AND value = '{TOMBSTONE}' AND stamp < ? LIMIT 500"
)
_JOURNAL_LIMIT = 64 * 1024 * 1024
"""Bytes the WAL file is cut back to after a checkpoint (it would keep its largest size)."""


@contextmanager
def translated_errors(what: str) -> Iterator[None]:
    """Turn a sqlite3 error raised inside into `StoreError` ("SQLite failed to <what>")."""
    try:
        yield
    except sqlite3.Error as exc:
        raise StoreError(f"SQLite failed to {what}: {exc}") from exc


def _chunks(items: list[T], size: int = 500) -> Iterator[list[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class _SQLiteTransaction:
    """`server.store.Transaction` on an open ``BEGIN IMMEDIATE``."""

    def __init__(self, db: sqlite3.Connection, space: str) -> None:
        self._db = db
        self._space = space

    def marks(self, clients: Collection[str]) -> dict[str, ClientMark]:
        found: dict[str, ClientMark] = {}
        for chunk in _chunks(list(clients)):
            rows = self._db.execute(
                f"SELECT client, hw, last FROM clients WHERE space = ?"
                f" AND client IN ({','.join('?' * len(chunk))})",
                [self._space, *chunk],
            )
            for client, hw, last in rows:
                found[client] = mark_from_row(hw, last)
        return found

    def fields(self, refs: Collection[FieldId]) -> dict[FieldId, StoredField]:
        asked = {key_of(ref): ref for ref in refs}
        found: dict[FieldId, StoredField] = {}
        for chunk in _chunks(list(asked)):
            # a VALUES table joined on the primary key: one indexed lookup per ref
            wanted = ",".join(["(?, ?, ?)"] * len(chunk))
            rows = self._db.execute(
                f"WITH w(c, k, f) AS (VALUES {wanted})"
                " SELECT collection, key, field, kind, value, state, stamp, base, writer"
                " FROM w CROSS JOIN fields ON fields.space = ? AND fields.collection = w.c"
                " AND fields.key = w.k AND fields.field = w.f",
                [*chain.from_iterable(chunk), self._space],
            )
            for collection, key, field, *row in rows:
                found[asked[collection, key, field]] = stored(*row)
        return found

    def records(self, keys: Collection[tuple[str, str]]) -> dict[FieldKey, StoredField]:
        found: dict[FieldKey, StoredField] = {}
        for chunk in _chunks(list(keys)):
            wanted = ",".join(["(?, ?)"] * len(chunk))
            rows = self._db.execute(
                f"WITH w(c, k) AS (VALUES {wanted})"
                " SELECT collection, key, field, kind, value, state, stamp, base, writer"
                " FROM w CROSS JOIN fields ON fields.space = ? AND fields.collection = w.c"
                " AND fields.key = w.k",
                [*chain.from_iterable(chunk), self._space],
            )
            for collection, key, field, *row in rows:
                found[collection, key, field] = stored(*row)
        return found

    def head(self) -> int:
        row = self._db.execute("SELECT seq FROM heads WHERE space = ?", (self._space,)).fetchone()
        return row[0] if row else 0

    def write(self, batch: BatchWrite) -> None:
        space, crdt, writer = self._space, batch.fields, batch.writer
        self._check_seq(batch.first_seq, batch.log)
        highest = ""  # the highest stamp written: the heads row keeps it for the clock

        def row(seq: int, m: Mutation) -> tuple[Any, ...]:
            nonlocal highest
            if m.kind != "crdt":
                highest = max(highest, str(m.stamp))
                return _lww_row(space, writer, seq, m)
            state = crdt[FieldRef(m.collection, m.key, m.field)]  # merged, under its top stamp
            stamp, blob = str(state.stamp), state.state
            highest = max(highest, stamp)
            return (space, m.collection, m.key, m.field, seq, len(blob or b""), m.kind, stamp,
                    str_or_none(state.base), m.id, None, blob, writer)  # fmt: skip

        # Rows are generated, not listed: each is bound and freed before the next is built,
        # so a push of 1,000 does not hold 1,000 rows alive (and through the cyclic GC).
        self._db.executemany(_UPSERT_FIELD, (row(seq, m) for seq, m in batch.final_writes()))
        self._write_marks(batch.marks)
        self._db.executemany(  # one report per losing write (law 5), however often it loses
            "INSERT OR IGNORE INTO conflicts (space, collection, key, field, loser, body)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (
                (space, c.collection, c.key, c.field, str(c.loser.stamp), dumps(c.to_json()))
                for c in batch.conflicts
            ),
        )
        if batch.log:
            self._write_head(batch.last_seq, highest)

    def overwrite(
        self,
        first_seq: int,
        writes: Sequence[WireWrite],
        marks: dict[str, ClientMark],
        writer: str | None,
    ) -> bool:
        db, space = self._db, self._space
        self._check_seq(first_seq, writes)
        last_seq = first_seq + len(writes) - 1
        db.execute("SAVEPOINT overwrite")
        before = db.total_changes
        db.executemany(
            _OVERWRITE_FIELD,
            (_lww_row(space, writer, seq, w) for seq, w in enumerate(writes, first_seq)),
        )
        # a row the WHERE refused changes nothing; the records are looked up from the rows
        # just written (by seq), cheaper than asking for each one
        done = db.total_changes - before == len(writes) and not _any_deleted(
            db, space, first_seq, last_seq
        )
        if not done:
            db.execute("ROLLBACK TO overwrite")
        db.execute("RELEASE overwrite")
        if done:
            self._write_marks(marks)
            self._write_head(last_seq, max(w.stamp for w in writes))
        return done

    def _check_seq(self, first_seq: int, log: Sized) -> None:
        if log and first_seq <= self.head():
            raise StoreError(f"seq {first_seq} of {self._space!r} is already written")

    def _write_marks(self, marks: dict[str, ClientMark]) -> None:
        self._db.executemany(
            "INSERT INTO clients (space, client, hw, last) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (space, client) DO UPDATE SET hw = excluded.hw, last = excluded.last",
            ((self._space, client, mark.hw, mark_text(mark)) for client, mark in marks.items()),
        )

    def _write_head(self, last_seq: int, highest: str) -> None:
        """The space's new head, and the highest stamp stored (it keeps the higher one)."""
        self._db.execute(
            "INSERT INTO heads (space, seq, stamp) VALUES (?, ?, ?) ON CONFLICT (space)"
            " DO UPDATE SET seq = excluded.seq, stamp = max(ifnull(stamp, ''), excluded.stamp)",
            (self._space, last_seq, highest),
        )


def _any_deleted(db: sqlite3.Connection, space: str, first_seq: int, last_seq: int) -> bool:
    """Whether a record written with a seq from `first_seq` to `last_seq` is deleted."""
    row = db.execute(
        "SELECT 1 FROM fields AS w JOIN fields AS t ON t.space = w.space"
        " AND t.collection = w.collection AND t.key = w.key AND t.field = ?"
        " WHERE w.space = ? AND w.seq BETWEEN ? AND ? AND t.value = ? LIMIT 1",
        (DELETED_FIELD, space, first_seq, last_seq, TOMBSTONE),
    ).fetchone()
    return row is not None


def _lww_row(space: str, writer: str | None, seq: int, m: Mutation | WireWrite) -> tuple[Any, ...]:
    """The ``fields`` row of lww write `m` (its stamps as `HLC`s or as their text)."""
    value = value_text(m.value)
    return (space, m.collection, m.key, m.field, seq, len(value), m.kind, str(m.stamp),
            None if m.base is None else str(m.base), m.id, value, None, writer)  # fmt: skip


class SQLiteWriteTransaction:
    """`server.store.WriteTransaction` on an open ``BEGIN IMMEDIATE``.

    `connection` is for companion stores writing their own rows inside it.
    """

    def __init__(self, db: sqlite3.Connection) -> None:
        self.connection = db

    def space(self, space: str) -> _SQLiteTransaction:
        return _SQLiteTransaction(self.connection, space)


def _lock(path: Path) -> int:
    """An exclusive lock on ``<db>.lock``, held until its descriptor closes or the process dies."""
    lock_path = path.with_name(path.name + ".lock")
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise StoreError(f"cannot open {path}: cannot create its lock file: {exc}") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise ConfigError(
            f"{path} is already served by another process: one SQLite database has one "
            "server process (several processes need the PostgreSQL store)"
        ) from None
    return fd


class SQLiteStore:
    """The SQLite `server.store.Store` (see the module docstring).

    ``path=":memory:"`` gives a private in-memory database (property tests).
    """

    def __init__(self, path: Path | str) -> None:
        self._lock: int | None = None if str(path) == ":memory:" else _lock(Path(path))
        try:
            with translated_errors(f"open {path}"):
                self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
                self._db.execute("PRAGMA journal_mode = WAL")
                self._db.execute("PRAGMA synchronous = FULL")
                self._db.execute("PRAGMA busy_timeout = 5000")
                self._db.execute(f"PRAGMA journal_size_limit = {_JOURNAL_LIMIT}")
            with self._begin(lambda: self._db):
                migrate(self._db)
            self._history = read_meta(self._db)["history_id"]
        except BaseException:
            self._release()
            raise

    def transaction(self, space: str) -> AbstractContextManager[_SQLiteTransaction]:
        return self._begin(lambda: _SQLiteTransaction(self._db, space))

    def write_transaction(self) -> AbstractContextManager[SQLiteWriteTransaction]:
        return self._begin(lambda: SQLiteWriteTransaction(self._db))

    @property
    def connection(self) -> sqlite3.Connection:
        """The one connection, for companion stores of this database (store thread only)."""
        return self._db

    @contextmanager
    def _begin(self, make: Callable[[], T]) -> Iterator[T]:
        """``BEGIN IMMEDIATE``; yield ``make()``; commit, or roll back on any error."""
        with translated_errors("write"):
            self._db.execute("BEGIN IMMEDIATE")
        try:
            with translated_errors("write"):
                yield make()
                self._db.execute("COMMIT")
        except BaseException:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise

    def changes(self, space: str, since: int, limit: int, max_bytes: int) -> ChangePage:
        with translated_errors("read changes"):
            # sizes first (an index walk, no values read), then exactly the rows that fit
            sizes = self._db.execute(
                "SELECT seq, size FROM fields WHERE space = ? AND seq > ? ORDER BY seq LIMIT ?",
                (space, since, limit + 1),
            ).fetchall()
            take = page_end(sizes, limit, max_bytes)
            rows = []
            if take:
                rows = self._db.execute(
                    "SELECT seq, mid, collection, key, field, kind, value, state, stamp, base"
                    " FROM fields WHERE space = ? AND seq > ? AND seq <= ? ORDER BY seq",
                    (space, since, sizes[take - 1][0]),
                ).fetchall()
            has_more = take < len(sizes)
            cursor = rows[-1][0] if has_more else max(since, self._head(space))
        return ChangePage([change_from_row(r) for r in rows], cursor, has_more)

    def _head(self, space: str) -> int:
        row = self._db.execute("SELECT seq FROM heads WHERE space = ?", (space,)).fetchone()
        return row[0] if row else 0

    def cursor(self, space: str) -> int:
        with translated_errors("read the cursor"):
            return self._head(space)

    def horizon(self, space: str) -> int:
        with translated_errors("read the horizon"):
            row = self._db.execute("SELECT gc_seq FROM heads WHERE space = ?", (space,)).fetchone()
        return row[0] if row else 0

    def history(self) -> str:
        return self._history

    def conflicts(self, space: str, since: int, limit: int, max_bytes: int) -> ConflictPage:
        with translated_errors("read conflicts"):
            sizes = self._db.execute(
                "SELECT pos, length(body) FROM conflicts WHERE space = ? AND pos > ?"
                " ORDER BY pos LIMIT ?",
                (space, since, limit + 1),
            ).fetchall()
            take = page_end(sizes, limit, max_bytes)
            rows = []
            if take:
                rows = self._db.execute(
                    "SELECT pos, body FROM conflicts WHERE space = ? AND pos > ? AND pos <= ?"
                    " ORDER BY pos",
                    (space, since, sizes[take - 1][0]),
                ).fetchall()
        return ConflictPage(
            [Conflict.from_json(json.loads(body)) for _, body in rows],
            cursor=rows[-1][0] if rows else since,
            has_more=take < len(sizes),
        )

    def last_stamp(self) -> HLC | None:
        with translated_errors("read the last stamp"):
            row = self._db.execute("SELECT max(stamp) FROM heads").fetchone()
        return stamp_or_none(row[0])

    def collect_tombstones(self, deleted_before_ms: int) -> int:
        # A stamp's text starts with its wall time, fixed width: text order is time order.
        cutoff = f"{deleted_before_ms:015d}"
        removed = 0
        while True:
            with self._begin(lambda: self._db), translated_errors("collect tombstones"):
                records = self._db.execute(_TOMBSTONES, (cutoff,)).fetchall()
                for space, collection, key in records:
                    (last,) = self._db.execute(
                        "SELECT max(seq) FROM fields"
                        " WHERE space = ? AND collection = ? AND key = ?",
                        (space, collection, key),
                    ).fetchone()
                    self._db.execute(
                        "DELETE FROM fields WHERE space = ? AND collection = ? AND key = ?",
                        (space, collection, key),
                    )
                    self._db.execute(
                        "UPDATE heads SET gc_seq = max(gc_seq, ?) WHERE space = ?", (last, space)
                    )
            removed += len(records)
            if len(records) < 500:
                return removed

    def close(self) -> None:
        try:
            with translated_errors("close"):
                self._db.close()
        finally:
            self._release()

    def _release(self) -> None:
        if self._lock is not None:
            os.close(self._lock)  # closing the descriptor drops the lock
            self._lock = None
