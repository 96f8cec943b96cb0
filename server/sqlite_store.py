"""`SQLiteStore`: the embedded `server.store.Store` backend, on one sqlite3 connection.

Durability: WAL journal with ``synchronous=FULL``, so a transaction whose
COMMIT returned is on disk and survives a SIGKILL or a power cut; that is what
lets the server acknowledge a push. Writes are short (one ``BEGIN IMMEDIATE``
per push, rows written with ``executemany``) and serialized on the one
connection; the caller runs every method on one worker thread.

Tables (every row keyed by ``user`` first, so one user's space is a key range):

* ``heads(user, seq)``: the seq of each user's latest change;
* ``changes(user, seq, ...)``: the change log;
* ``fields(user, collection, key, field, ...)``: the state of every field;
* ``mutations(user, id, outcome)``: every mutation id seen, with its outcome;
* ``conflicts(pos, user, body)``: conflicts detected, as `Conflict` JSON.

Companion stores of the same database (the jobs feature's
`quietsync.server.jobs.sqlite_store.SQLiteJobStore`) use `connection` and
write inside the transactions opened here; they translate errors with
`translated_errors`. sqlite3 errors are translated into `StoreError` and go
no further.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Collection, Iterator
from contextlib import AbstractContextManager, contextmanager
from itertools import chain
from pathlib import Path
from typing import Any, TypeVar

from quietsync.conflicts import HLC, Conflict, FieldRef
from quietsync.protocol import Change
from quietsync.server.errors import StoreError
from quietsync.server.store import (
    BatchWrite,
    ChangePage,
    ConflictPage,
    FieldId,
    FieldKey,
    StoredField,
)

__all__ = ["SQLiteStore", "translated_errors"]

T = TypeVar("T")

_SCHEMA = """
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
"""

_dumps = json.JSONEncoder(separators=(",", ":"), allow_nan=False, ensure_ascii=False).encode

# `_dumps` is quick for a str only; any other value takes json's general path (~1 us
# where these take ~0.1). Their text is fixed: exactly what that path produces.
_SCALAR_TEXT: dict[type, Callable[[Any], str]] = {
    int: int.__repr__,
    bool: lambda value: "true" if value else "false",
    type(None): lambda _: "null",
}


def _value_text(value: object) -> str:
    """The JSON text stored for a field's value (as `_dumps` encodes it)."""
    return _SCALAR_TEXT.get(type(value), _dumps)(value)


def _key_of(ref: FieldRef | FieldKey) -> FieldKey:
    return ref if isinstance(ref, tuple) else (ref.collection, ref.key, ref.field)


def _stamp_or_none(text: str | None) -> HLC | None:
    return None if text is None else HLC.parse(text)


def _str_or_none(stamp: HLC | None) -> str | None:
    return None if stamp is None else str(stamp)


@contextmanager
def translated_errors(what: str) -> Iterator[None]:
    """Turn a sqlite3 error raised inside into `StoreError` ("SQLite failed to <what>")."""
    try:
        yield
    except sqlite3.Error as exc:
        raise StoreError(f"SQLite failed to {what}: {exc}") from exc


class _SQLiteTransaction:
    """`server.store.Transaction` on an open ``BEGIN IMMEDIATE``."""

    def __init__(self, db: sqlite3.Connection, user: str) -> None:
        self._db = db
        self._user = user

    def outcomes(self, mutation_ids: Collection[str]) -> dict[str, str]:
        found: dict[str, str] = {}
        for chunk in _chunks(list(mutation_ids)):
            # joined on the primary key like `fields`: a third faster than ``id IN (...)``,
            # which first builds a temporary index of the ids
            wanted = ",".join(["(?)"] * len(chunk))
            rows = self._db.execute(
                f"WITH w(i) AS (VALUES {wanted}) SELECT id, outcome"
                " FROM w CROSS JOIN mutations ON mutations.user = ? AND mutations.id = w.i",
                [*chunk, self._user],
            )
            found.update(rows)
        return found

    def fields(self, refs: Collection[FieldId]) -> dict[FieldId, StoredField]:
        asked = {_key_of(ref): ref for ref in refs}
        found: dict[FieldId, StoredField] = {}
        for chunk in _chunks(list(asked)):
            # a VALUES table joined on the primary key: one indexed lookup per ref
            wanted = ",".join(["(?, ?, ?)"] * len(chunk))
            rows = self._db.execute(
                f"WITH w(c, k, f) AS (VALUES {wanted})"
                " SELECT collection, key, field, kind, value, state, stamp, base"
                " FROM w CROSS JOIN fields ON fields.user = ? AND fields.collection = w.c"
                " AND fields.key = w.k AND fields.field = w.f",
                [*chain.from_iterable(chunk), self._user],
            )
            for collection, key, field, kind, value, state, stamp, base in rows:
                found[asked[collection, key, field]] = StoredField(
                    kind=kind,
                    stamp=HLC.parse(stamp),
                    base=_stamp_or_none(base),
                    value=None if value is None else json.loads(value),
                    state=state,
                )
        return found

    def head(self) -> int:
        row = self._db.execute("SELECT seq FROM heads WHERE user = ?", (self._user,)).fetchone()
        return row[0] if row else 0

    def write(self, batch: BatchWrite) -> None:
        db, user = self._db, self._user
        # A value is usually both a field's and a change's: encode it once.
        encoded: dict[int, str] = {}

        def dumps(value: object) -> str:
            text = encoded.get(id(value))
            if text is None:
                text = encoded[id(value)] = _value_text(value)
            return text

        # Rows are generated, not listed: each is bound and freed before the next is built,
        # so a push of 1,000 does not hold 3,000 rows alive (and through the cyclic GC).
        states_set = (
            (
                user,
                ref.collection,
                ref.key,
                ref.field,
                f.kind,
                None if f.kind == "crdt" else dumps(f.value),
                f.state,
                str(f.stamp),
                _str_or_none(f.base),
            )
            for ref, f in batch.fields.items()
        )
        lww_states = (  # in log order, so the last write of a field is what it holds
            (
                user,
                m.collection,
                m.key,
                m.field,
                "lww",
                dumps(m.value),
                None,
                str(m.stamp),
                _str_or_none(m.base),
            )
            for m in batch.log
            if m.kind == "lww"
        )
        db.executemany(
            "INSERT OR REPLACE INTO fields VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            chain(states_set, lww_states),
        )
        db.executemany(
            "INSERT OR REPLACE INTO mutations VALUES (?, ?, ?)",
            ((user, mid, outcome) for mid, outcome in batch.outcomes.items()),
        )
        db.executemany(
            "INSERT INTO conflicts (user, body) VALUES (?, ?)",
            ((user, _dumps(c.to_json())) for c in batch.conflicts),
        )
        if batch.log:
            db.executemany(
                "INSERT INTO changes VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    (
                        user,
                        seq,
                        m.id,
                        m.collection,
                        m.key,
                        m.field,
                        m.kind,
                        None if m.kind == "crdt" else dumps(m.value),
                        m.update,
                        str(m.stamp),
                        _str_or_none(m.base),
                    )
                    for seq, m in enumerate(batch.log, batch.first_seq)
                ),
            )
            db.execute("INSERT OR REPLACE INTO heads VALUES (?, ?)", (user, batch.last_seq))


class SQLiteWriteTransaction:
    """`server.store.WriteTransaction` on an open ``BEGIN IMMEDIATE``.

    `connection` is for companion stores writing their own rows inside it.
    """

    def __init__(self, db: sqlite3.Connection) -> None:
        self.connection = db

    def space(self, user: str) -> _SQLiteTransaction:
        return _SQLiteTransaction(self.connection, user)


def _chunks(items: list[T], size: int = 500) -> Iterator[list[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _change_from_row(row: tuple[Any, ...]) -> Change:
    seq, mid, collection, key, field, kind, value, update, stamp, base = row
    return Change(
        id=mid,
        collection=collection,
        key=key,
        field=field,
        kind=kind,
        stamp=HLC.parse(stamp),
        base=_stamp_or_none(base),
        value=None if value is None else json.loads(value),
        update=update,
        seq=seq,
    )


class SQLiteStore:
    """The SQLite `server.store.Store` (see the module docstring).

    ``path=":memory:"`` gives a private in-memory database (property tests).
    """

    def __init__(self, path: Path | str) -> None:
        with translated_errors(f"open {path}"):
            self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode = WAL")
            self._db.execute("PRAGMA synchronous = FULL")
            self._db.execute("PRAGMA busy_timeout = 5000")
            self._db.executescript(_SCHEMA)

    def transaction(self, user: str) -> AbstractContextManager[_SQLiteTransaction]:
        return self._begin(lambda: _SQLiteTransaction(self._db, user))

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

    def changes(self, user: str, since: int, limit: int) -> ChangePage:
        with translated_errors("read changes"):
            rows = self._db.execute(
                "SELECT seq, id, collection, key, field, kind, value, crdt_update, stamp, base"
                " FROM changes WHERE user = ? AND seq > ? ORDER BY seq LIMIT ?",
                (user, since, limit + 1),
            ).fetchall()
        page = rows[:limit]
        return ChangePage(
            [_change_from_row(r) for r in page],
            cursor=page[-1][0] if page else since,
            has_more=len(rows) > limit,
        )

    def cursor(self, user: str) -> int:
        with translated_errors("read the cursor"):
            row = self._db.execute("SELECT seq FROM heads WHERE user = ?", (user,)).fetchone()
        return row[0] if row else 0

    def conflicts(self, user: str, since: int, limit: int) -> ConflictPage:
        with translated_errors("read conflicts"):
            rows = self._db.execute(
                "SELECT pos, body FROM conflicts WHERE user = ? AND pos > ? ORDER BY pos LIMIT ?",
                (user, since, limit + 1),
            ).fetchall()
        page = rows[:limit]
        return ConflictPage(
            [Conflict.from_json(json.loads(body)) for _, body in page],
            cursor=page[-1][0] if page else since,
            has_more=len(rows) > limit,
        )

    def last_stamp(self) -> HLC | None:
        with translated_errors("read the last stamp"):
            row = self._db.execute("SELECT max(stamp) FROM changes").fetchone()
        return _stamp_or_none(row[0])

    def close(self) -> None:
        with translated_errors("close"):
            self._db.close()
