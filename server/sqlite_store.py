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

sqlite3 errors are translated into `StoreError` here and go no further.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import attrs

from conflicts import HLC, Change, Conflict, FieldRef
from server.errors import StoreError
from server.store import BatchWrite, ChangePage, ConflictPage, StoredField

__all__ = ["SQLiteStore"]

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


def _stamp_or_none(text: str | None) -> HLC | None:
    return None if text is None else HLC.parse(text)


def _str_or_none(stamp: HLC | None) -> str | None:
    return None if stamp is None else str(stamp)


@contextmanager
def _translated(what: str) -> Iterator[None]:
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
        query = "SELECT outcome FROM mutations WHERE user = ? AND id = ?"
        found: dict[str, str] = {}
        for mid in mutation_ids:
            row = self._db.execute(query, (self._user, mid)).fetchone()
            if row is not None:
                found[mid] = row[0]
        return found

    def fields(self, refs: Collection[FieldRef]) -> dict[FieldRef, StoredField]:
        query = (
            "SELECT kind, value, state, stamp, base FROM fields"
            " WHERE user = ? AND collection = ? AND key = ? AND field = ?"
        )
        found: dict[FieldRef, StoredField] = {}
        for ref in refs:
            row = self._db.execute(query, (self._user, ref.collection, ref.key, ref.field))
            hit = row.fetchone()
            if hit is not None:
                kind, value, state, stamp, base = hit
                found[ref] = StoredField(
                    kind=kind,
                    stamp=HLC.parse(stamp),
                    base=_stamp_or_none(base),
                    value=None if value is None else json.loads(value),
                    state=state,
                )
        return found

    def write(self, batch: BatchWrite) -> list[Change]:
        db, user = self._db, self._user
        db.executemany(
            "INSERT OR REPLACE INTO fields VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    user,
                    ref.collection,
                    ref.key,
                    ref.field,
                    f.kind,
                    None if f.kind == "crdt" else _dumps(f.value),
                    f.state,
                    str(f.stamp),
                    _str_or_none(f.base),
                )
                for ref, f in batch.fields.items()
            ],
        )
        db.executemany(
            "INSERT OR REPLACE INTO mutations VALUES (?, ?, ?)",
            [(user, mid, outcome) for mid, outcome in batch.outcomes.items()],
        )
        db.executemany(
            "INSERT INTO conflicts (user, body) VALUES (?, ?)",
            [(user, _dumps(c.to_json())) for c in batch.conflicts],
        )
        if not batch.changes:
            return []
        row = db.execute("SELECT seq FROM heads WHERE user = ?", (user,)).fetchone()
        head = row[0] if row else 0
        numbered = [attrs.evolve(c, seq=head + i) for i, c in enumerate(batch.changes, start=1)]
        db.executemany(
            "INSERT INTO changes VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [_change_row(user, c) for c in numbered],
        )
        db.execute("INSERT OR REPLACE INTO heads VALUES (?, ?)", (user, head + len(numbered)))
        return numbered


def _change_row(user: str, c: Change) -> tuple[Any, ...]:
    return (
        user,
        c.seq,
        c.id,
        c.collection,
        c.key,
        c.field,
        c.kind,
        None if c.kind == "crdt" else _dumps(c.value),
        c.update,
        str(c.stamp),
        _str_or_none(c.base),
    )


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
        with _translated(f"open {path}"):
            self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode = WAL")
            self._db.execute("PRAGMA synchronous = FULL")
            self._db.execute("PRAGMA busy_timeout = 5000")
            self._db.executescript(_SCHEMA)

    @contextmanager
    def transaction(self, user: str) -> Iterator[_SQLiteTransaction]:
        with _translated("write"):
            self._db.execute("BEGIN IMMEDIATE")
        try:
            with _translated("write"):
                yield _SQLiteTransaction(self._db, user)
                self._db.execute("COMMIT")
        except BaseException:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise

    def changes(self, user: str, since: int, limit: int) -> ChangePage:
        with _translated("read changes"):
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
        with _translated("read the cursor"):
            row = self._db.execute("SELECT seq FROM heads WHERE user = ?", (user,)).fetchone()
        return row[0] if row else 0

    def conflicts(self, user: str, since: int, limit: int) -> ConflictPage:
        with _translated("read conflicts"):
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
        with _translated("read the last stamp"):
            row = self._db.execute("SELECT max(stamp) FROM changes").fetchone()
        return _stamp_or_none(row[0])

    def close(self) -> None:
        with _translated("close"):
            self._db.close()
