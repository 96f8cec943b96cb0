"""`PostgresStore`: the `server.store.Store` backend on PostgreSQL (asyncpg).

Install with ``pip install 'quietsync[postgres]'``; select it with a
``postgresql://`` URL as the database (``quietsync serve --db``,
``ServerConfig.db_path``). The tables are the SQLite store's
(`quietsync.server.sqlite_store`), keyed by ``space`` first; schema and
migrations are in `quietsync.server.postgres_schema`:

* ``fields(space, collection, key, field, seq, size, kind, stamp, base, mid,
  value, state, writer)``: every field's current state with the seq of its
  last change; ``(space, seq) INCLUDE (size)`` serves pulls (a page is cut by
  size from the index alone), a partial index the tombstones compaction finds;
* ``heads(space, seq, gc_seq, stamp)``: each space's head, tombstone horizon
  and highest stamp; the head row is also the space's write lock (below);
* ``clients(space, client, hw, last)``, ``conflicts(pos, space, ..., loser,
  body)`` (one report per losing write: a unique index), ``meta``.

**A push is six statements, one round trip each**: ``BEGIN``; the head row lock
(below); the fields it names, by key (a loop of primary-key lookups, so its cost is
the push's, not the space's); the clients' marks; everything it writes, in one
statement (`_PostgresTransaction.write`); ``COMMIT``. The rows a statement
sends go as one jsonb argument per table (`_json_rows`).

Calls are synchronous, on the server's store thread, through a
`quietsync.server.postgres_connection.SyncConnection` (why: its docstring).
Values, marks and pages are encoded by `quietsync.server.backend`, as in
SQLite. A committed transaction is durable by PostgreSQL's own settings
(``synchronous_commit``, on by default).

**Sequence numbers under concurrent writers.** Pulls read "fields whose seq is
above the cursor", which has a classic hole when several processes write: if
writer A takes seq 5, writer B seq 6, and B commits first, a reader seeing 6
moves its cursor past 5 and never sees A's write. Here it cannot happen:

1. Every write transaction on a space first takes the row lock of that space's
   ``heads`` row (``INSERT ... ON CONFLICT DO UPDATE ... RETURNING seq``: the
   row is created if new, locked, and its committed head read, in one round
   trip). A second writer of the space, in any process, waits until the first
   commits or rolls back, then reads the head that one left. So a space's
   seqs are handed out and committed in one order: every commit holds seqs
   above those of every commit before it, and the head row is updated in the
   same transaction as the rows it numbers.
2. A pull reads the head with the sizes of its page in one statement (one
   snapshot), then the page's rows (`quietsync.server.postgres_changes`, which
   says why no transaction is needed): its cursor is at most the head it read,
   and by (1) everything at or below that head was committed before, so what
   a later commit writes lands above it.

Conflict positions (an identity column) are taken inside those locked
transactions too, so a space's conflicts commit in position order. A
transaction writing several spaces (`write_transaction`) locks them in the
order it touches them; two such transactions touching the same spaces in
opposite orders would deadlock, which PostgreSQL detects and refuses one of
(a `StoreError`): the jobs flusher, the one such writer, is one per process.

**Live changes across processes.** A write that advances a space's head also
notifies `LIVE_CHANNEL` with the space and its new head, in the same statement
(PostgreSQL delivers it at commit, in commit order, and never for a rollback),
so pushes and job flushes alike wake every process listening.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any, TypeVar

import msgspec

from quietsync.conflicts import HLC, Conflict, FieldRef
from quietsync.protocol import DELETED_FIELD
from quietsync.server.backend import (
    TOMBSTONE,
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
from quietsync.server.errors import StoreError
from quietsync.server.postgres_changes import read_changes
from quietsync.server.postgres_connection import SyncConnection, translated_errors
from quietsync.server.postgres_schema import STEPS, migrate, read_meta
from quietsync.server.store import (
    BatchWrite,
    ChangePage,
    ClientMark,
    ConflictPage,
    FieldId,
    FieldKey,
    StoredField,
    WriteTransaction,
)

__all__ = ["LIVE_CHANNEL", "PostgresStore", "PostgresWriteTransaction", "connection_of"]

LIVE_CHANNEL = "quietsync_live"
"""Every commit that advances a space's head sends ``NOTIFY quietsync_live, '<space>
<head>'``: a wake-up for the live sockets of the other server processes on this
database (`quietsync.server.postgres_listen`), who read the rows from the store."""

T = TypeVar("T")

_LOCK_HEAD = (  # creates the row if new; DO UPDATE (not DO NOTHING) takes the row lock
    "INSERT INTO heads (space) VALUES ($1)"
    " ON CONFLICT (space) DO UPDATE SET seq = heads.seq RETURNING seq"
)
_INSERT_FIELDS = (  # fields known to be new (`_PostgresTransaction.write`)
    "INSERT INTO fields (space, collection, key, field, seq, size, kind, stamp, base, mid, value,"
    " state, writer) SELECT {space}, r->>0, r->>1, r->>2, (r->>3)::bigint, (r->>4)::int, r->>5,"
    " r->>6, r->>7, r->>8, r->>9, decode(r->>10, 'base64'), {} FROM jsonb_array_elements({}::jsonb)"
    " AS w(r)"
)
_UPSERT_FIELDS = _INSERT_FIELDS + (
    " ON CONFLICT (space, collection, key, field) DO UPDATE SET seq = excluded.seq,"
    " size = excluded.size, kind = excluded.kind, stamp = excluded.stamp, base = excluded.base,"
    " mid = excluded.mid, value = excluded.value, state = excluded.state, writer = excluded.writer"
)
_UPSERT_CLIENTS = (
    "INSERT INTO clients (space, client, hw, last) SELECT {space}, r->>0, (r->>1)::bigint, r->>2"
    " FROM jsonb_array_elements({}::jsonb) AS w(r)"
    " ON CONFLICT (space, client) DO UPDATE SET hw = excluded.hw, last = excluded.last"
)
_INSERT_CONFLICTS = (  # in the push's order: their positions (an identity) are given in it
    "INSERT INTO conflicts (space, collection, key, field, loser, body)"
    " SELECT {space}, r->>0, r->>1, r->>2, r->>3, r->>4"
    " FROM jsonb_array_elements({}::jsonb) WITH ORDINALITY AS w(r, n) ORDER BY n"
    " ON CONFLICT DO NOTHING"  # one report per losing write (law 5), however often it loses
)
_ADVANCE_HEAD = (  # the notification is delivered at commit (none on a rollback)
    "UPDATE heads SET seq = {}, stamp = GREATEST(stamp, {}) WHERE space = {space}"
    f" RETURNING pg_notify('{LIVE_CHANNEL}', space || ' ' || seq)"
)
_FIELD_COLUMNS = "f.collection, f.key, f.field, kind, value, state, stamp, base, writer"
_SNAPSHOT = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"
_TOMBSTONE_BATCH = 500


def _json_rows(rows: Iterable[Sequence[Any]]) -> str:
    """`rows` as one JSON array: a statement's one argument for any number of rows, read
    by ``jsonb_array_elements`` (bytes go as base64, undone by ``decode``).

    Why not an array argument per column (``unnest``): asyncpg checks each element of
    an array argument against abstract base classes on the way out. Inserting 1,000
    field rows took 17-22 ms as arrays and 6-9 ms as one jsonb (2 loaded cores,
    2026-12-01); ``json``, which parses an element again for each ``->>``, 23-31 ms.
    (One jsonb holds at most 256 MB; a push's rows, text states included, are far less.)"""
    return _JSON.encode(list(rows)).decode()


_JSON = msgspec.json.Encoder()


class _PostgresTransaction:
    """`server.store.Transaction`: one space, its head row locked, in an open transaction."""

    def __init__(self, db: SyncConnection, space: str) -> None:
        self._db = db
        self._space = space
        self._head: int = db.fetchval(_LOCK_HEAD, space)
        self._absent: set[FieldKey] = set()
        """Fields `fields` found missing and nothing wrote since (`write`)."""

    def marks(self, clients: Collection[str]) -> dict[str, ClientMark]:
        rows = self._db.fetch(
            "SELECT client, hw, last FROM clients WHERE space = $1 AND client = ANY($2::text[])",
            self._space,
            list(clients),
        )
        return {client: mark_from_row(hw, last) for client, hw, last in rows}

    def fields(self, refs: Collection[FieldId]) -> dict[FieldId, StoredField]:
        asked = {key_of(ref): ref for ref in refs}
        rows = self._db.fetch(  # LIMIT 1 (a key: at most one) keeps it a loop of key lookups
            f"SELECT {_FIELD_COLUMNS} FROM jsonb_array_elements($2::jsonb) AS w(r), LATERAL"
            " (SELECT * FROM fields WHERE space = $1 AND collection = r->>0 AND key = r->>1"
            " AND field = r->>2 LIMIT 1) AS f",
            self._space,
            _json_rows(asked),
        )
        found = {(c, k, f): stored(*row) for c, k, f, *row in rows}
        self._absent |= asked.keys() - found.keys()
        return {asked[key]: state for key, state in found.items()}

    def records(self, keys: Collection[tuple[str, str]]) -> dict[FieldKey, StoredField]:
        rows = self._db.fetch(  # OFFSET 0, like LIMIT in `fields`: a loop of index lookups
            f"SELECT {_FIELD_COLUMNS} FROM jsonb_array_elements($2::jsonb) AS w(r), LATERAL"
            " (SELECT * FROM fields WHERE space = $1 AND collection = r->>0 AND key = r->>1"
            " OFFSET 0) AS f",
            self._space,
            _json_rows(keys),
        )
        return {(c, k, f): stored(*row) for c, k, f, *row in rows}

    def head(self) -> int:
        return self._head

    def write(self, batch: BatchWrite) -> None:
        """Everything `batch` writes, in one statement (one round trip): a statement per
        table, and one per row for the fields, were most of a push's time.

        A field that `fields` found missing is inserted without ``ON CONFLICT``, a
        third cheaper than the upsert (it writes no speculative insertion): with the
        head row locked no other transaction writes this space's fields (every
        writer takes that lock first), so the row is still missing. Were it not, the
        insert would fail on the primary key and the transaction write nothing."""
        space = self._space
        if batch.log and batch.first_seq <= self._head:
            raise StoreError(f"seq {batch.first_seq} of {space!r} is already written")
        parts: list[tuple[str, list[Any]]] = []
        rows = _field_rows(batch)
        for sql, new in ((_INSERT_FIELDS, True), (_UPSERT_FIELDS, False)):
            some = [row for key, row in rows.items() if (key in self._absent) == new]
            if some:
                parts.append((sql, [batch.writer, _json_rows(some)]))
        if batch.marks:
            marks = [(client, m.hw, mark_text(m)) for client, m in batch.marks.items()]
            parts.append((_UPSERT_CLIENTS, [_json_rows(marks)]))
        if batch.conflicts:
            losers = [
                (c.collection, c.key, c.field, str(c.loser.stamp), dumps(c.to_json()))
                for c in batch.conflicts
            ]
            parts.append((_INSERT_CONFLICTS, [_json_rows(losers)]))
        if batch.log:  # with the highest stamp written, for the clock
            parts.append((_ADVANCE_HEAD, [batch.last_seq, max(row[6] for row in rows.values())]))
        if parts:
            self._db.execute(*_one_statement(space, parts))
        if batch.log:
            self._head = batch.last_seq
            self._absent -= rows.keys()


def _field_rows(batch: BatchWrite) -> dict[FieldKey, tuple[Any, ...]]:
    """The field rows `batch` writes, by field, as ``_INSERT_FIELDS`` reads them.

    A field written twice in the batch is written once, as its last write: one
    ``INSERT ... ON CONFLICT DO UPDATE`` may not update a row twice, and the
    earlier write's seq would be overwritten in the same commit anyway."""
    rows: dict[FieldKey, tuple[Any, ...]] = {}
    for seq, m in batch.final_writes():
        if m.kind == "crdt":  # the field's merged state, under its highest stamp
            state = batch.fields[FieldRef(m.collection, m.key, m.field)]
            stamp, base, value, blob = state.stamp, state.base, None, state.state
            size = len(blob or b"")
        else:
            stamp, base, value, blob = m.stamp, m.base, value_text(m.value), None
            size = len(value)
        rows[m.collection, m.key, m.field] = (
            m.collection, m.key, m.field, seq, size, m.kind, str(stamp), str_or_none(base), m.id,
            value, blob,
        )  # fmt: skip
    return rows


def _one_statement(space: str, parts: list[tuple[str, list[Any]]]) -> tuple[Any, ...]:
    """`parts` (SQL with a ``{}`` for each of its arguments, ``{space}`` for `space`) as one
    statement and its arguments: the last part the main statement, the others
    data-modifying CTEs (PostgreSQL runs each of them to completion)."""
    args: list[Any] = [space]
    texts = []
    for sql, values in parts:
        numbers = range(len(args) + 1, len(args) + 1 + len(values))
        texts.append(sql.format(*(f"${n}" for n in numbers), space="$1"))
        args.extend(values)
    *ctes, main = texts
    if ctes:
        main = "WITH " + ", ".join(f"w{n} AS ({cte})" for n, cte in enumerate(ctes)) + " " + main
    return (main, *args)


class PostgresWriteTransaction:
    """`server.store.WriteTransaction` on an open transaction; each space's head row is
    locked when the space is first asked for. `connection` is for companion stores."""

    def __init__(self, db: SyncConnection) -> None:
        self.connection = db
        self._spaces: dict[str, _PostgresTransaction] = {}

    def space(self, space: str) -> _PostgresTransaction:
        if space not in self._spaces:
            self._spaces[space] = _PostgresTransaction(self.connection, space)
        return self._spaces[space]


def connection_of(tx: WriteTransaction) -> SyncConnection:
    """The connection of `tx`, for a companion store writing inside it: a write
    transaction a companion gets is always its `PostgresStore`'s."""
    assert isinstance(tx, PostgresWriteTransaction)
    return tx.connection


class PostgresStore:
    """The PostgreSQL `server.store.Store` on database `url` (see the module docstring)."""

    def __init__(self, url: str) -> None:
        with translated_errors("connect"):
            self._db = SyncConnection(url)
        try:
            with self._begin(lambda: None), translated_errors("migrate the schema"):
                migrate(self._db, STEPS, version_key="schema_version")
            with translated_errors("read the history id"):
                self._history = read_meta(self._db)["history_id"]
        except BaseException:
            self._db.close()
            raise

    @property
    def connection(self) -> SyncConnection:
        """The one connection, for companion stores of this database (store thread only)."""
        return self._db

    def transaction(self, space: str) -> AbstractContextManager[_PostgresTransaction]:
        return self._begin(lambda: _PostgresTransaction(self._db, space))

    def write_transaction(self) -> AbstractContextManager[PostgresWriteTransaction]:
        return self._begin(lambda: PostgresWriteTransaction(self._db))

    @contextmanager
    def _begin(self, make: Callable[[], T]) -> Iterator[T]:
        """A READ COMMITTED transaction: each statement sees what committed before it, so a
        writer that waited for a head row lock reads the rows its predecessor wrote."""
        with self._db.transaction(), translated_errors("write"):
            yield make()

    def changes(self, space: str, since: int, limit: int, max_bytes: int) -> ChangePage:
        with translated_errors("read changes"):
            return self._db.call(lambda db: read_changes(db, space, since, limit, max_bytes))

    def _head(self, space: str) -> int:
        return self._db.fetchval("SELECT seq FROM heads WHERE space = $1", space) or 0

    def cursor(self, space: str) -> int:
        with translated_errors("read the cursor"):
            return self._head(space)

    def horizon(self, space: str) -> int:
        with translated_errors("read the horizon"):
            return self._db.fetchval("SELECT gc_seq FROM heads WHERE space = $1", space) or 0

    def history(self) -> str:
        return self._history

    def conflicts(self, space: str, since: int, limit: int, max_bytes: int) -> ConflictPage:
        with self._db.transaction(_SNAPSHOT), translated_errors("read conflicts"):
            sizes = self._db.fetch(
                "SELECT pos, length(body) FROM conflicts WHERE space = $1 AND pos > $2"
                " ORDER BY pos LIMIT $3",
                space,
                since,
                limit + 1,
            )
            take = page_end(sizes, limit, max_bytes)
            rows = []
            if take:
                rows = self._db.fetch(
                    "SELECT pos, body FROM conflicts WHERE space = $1 AND pos > $2 AND pos <= $3"
                    " ORDER BY pos",
                    space,
                    since,
                    sizes[take - 1][0],
                )
        return ConflictPage(
            [Conflict.from_json(json.loads(body)) for _, body in rows],
            cursor=rows[-1][0] if rows else since,
            has_more=take < len(sizes),
        )

    def last_stamp(self) -> HLC | None:
        with translated_errors("read the last stamp"):
            return stamp_or_none(self._db.fetchval("SELECT max(stamp) FROM heads"))

    def collect_tombstones(self, deleted_before_ms: int) -> int:
        # A stamp's text starts with its wall time, fixed width: text order is time order.
        cutoff = f"{deleted_before_ms:015d}"
        removed = 0
        while True:
            with self._begin(lambda: None), translated_errors("collect tombstones"):
                records = self._db.fetch(
                    "SELECT space, collection, key FROM fields WHERE field = $1 AND value = $2"
                    " AND stamp < $3 LIMIT $4",
                    DELETED_FIELD,
                    TOMBSTONE,
                    cutoff,
                    _TOMBSTONE_BATCH,
                )
                removed += sum(self._collect(cutoff, *record) for record in records)
            if len(records) < _TOMBSTONE_BATCH:
                return removed

    def _collect(self, cutoff: str, space: str, collection: str, key: str) -> bool:
        """Remove one record if, with its space's head row locked (no push is writing the
        space), it is still deleted before `cutoff`; raise the horizon past its seqs."""
        self._db.execute("SELECT 1 FROM heads WHERE space = $1 FOR UPDATE", space)
        last = self._db.fetchval(
            "WITH gone AS (DELETE FROM fields WHERE space = $1 AND collection = $2 AND key = $3"
            " AND EXISTS (SELECT 1 FROM fields AS t WHERE t.space = $1 AND t.collection = $2"
            " AND t.key = $3 AND t.field = $4 AND t.value = $5 AND t.stamp < $6)"
            " RETURNING seq) SELECT max(seq) FROM gone",
            space,
            collection,
            key,
            DELETED_FIELD,
            TOMBSTONE,
            cutoff,
        )
        if last is None:
            return False
        self._db.execute(
            "UPDATE heads SET gc_seq = GREATEST(gc_seq, $2) WHERE space = $1", space, last
        )
        return True

    def close(self) -> None:
        self._db.close()
