"""CRDT text fields of one replica: open documents, their durable updates, compaction.

Rewriting a text field's whole Yjs document on every keystroke made an edit
cost the document's size: replaying the automerge-paper trace slowed from
429 to ~70 edits/s and grew the file to 703 MB for 100 KB of text. Here an
edit costs its own size:

* **Open documents stay in memory** (`TextFields`, a bounded LRU of
  `CrdtText`), so an edit neither reads nor decodes the document.
* **An edit appends its update** as one small row of ``text_updates``, with
  the field's stamp and base after it; the snapshot (``texts.state``) and
  the record row are left alone. Both rows are in the caller's transaction,
  so an edit is durable when it returns, like every write.
* **Compaction** folds a field's updates into a new snapshot (the document
  re-encoded, deleted text gone) once they hold `COMPACT_ROWS` rows or as
  many bytes as the snapshot, and at `compact_all` (`Replica.compact`).
  Amortised, that is a constant per edit.
* **The record row catches up lazily.** While a field has updates its record
  row holds `STALE` (``null``) for its text and may hold an older stamp
  (``texts.fresh`` is 0). Readers get both from here: `patch` puts the text
  into a read record, `current` the stamp and base into the fields a write
  merges against. Compaction writes both into the row; a query that filters
  or sorts on a stale field materialises it first (`materialize`), so SQL
  always sees the current text.

The cache is rolled back with the transaction: a document an aborted
transaction touched is dropped and reloaded from the file on next use.

Must not import `quietsync.server`.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable

from quietsync.conflicts import CrdtText
from quietsync.replica.layout import StoredField, dump_record, load_record, value_text
from quietsync.replica.store import RecordRow, Store, TextUpdate

__all__ = ["COMPACT_ROWS", "STALE", "TextFields", "TextRef"]

TextRef = tuple[str, str, str]
"""A text field: ``(collection, key, field)``."""

COMPACT_ROWS = 10_000
"""Updates a field collects, at most, before they are folded into its snapshot.

A field is folded sooner, once its updates hold as many bytes as its snapshot
(or 64 KB, for a small one): rewriting the snapshot every so many bytes of
edits keeps the amortised cost per edit constant. A fixed 1,000 rows made
each keystroke near the end of the automerge-paper trace pay for a thousandth
of a 480 KB rewrite, and the cost grew with the document."""
_MIN_COMPACT_BYTES = 64 * 1024  # below this, a document is cheap to reload: no hurry

STALE = "null"
"""What a record row holds for a text field whose current text is not materialised."""


class _Open:
    """One open document, its latest stamp and base, and what is stored beside the snapshot."""

    __slots__ = ("base", "doc", "snapshot_bytes", "stamp", "update_bytes", "updates")

    def __init__(self, doc: CrdtText, snapshot_bytes: int, updates: list[TextUpdate]) -> None:
        self.doc = doc
        self.snapshot_bytes = snapshot_bytes
        self.updates = len(updates)
        self.update_bytes = sum(len(u.update) for u in updates)
        self.stamp: str | None = updates[-1].stamp if updates else None
        self.base: str | None = updates[-1].base if updates else None


class TextFields:
    """The text fields of one replica file (see the module docstring)."""

    def __init__(self, store: Store, client_id: int, *, cache_size: int = 32) -> None:
        self._store = store
        self._client_id = client_id
        self._cache_size = cache_size
        self._open: OrderedDict[TextRef, _Open] = OrderedDict()
        self._touched: set[TextRef] = set()  # opened or changed in the current transaction
        # collection -> key -> the record's fields whose row lags behind
        self._stale: dict[str, dict[str, set[str]]] = {}
        self._load_stale()

    def _load_stale(self) -> None:
        self._stale = {}
        for collection, key, field in self._store.stale_texts():
            self._stale.setdefault(collection, {}).setdefault(key, set()).add(field)

    # -- reading ----------------------------------------------------------------------

    def doc(self, ref: TextRef) -> CrdtText | None:
        """The field's open document (loaded on first use); None if the field has none."""
        entry = self._entry(ref)
        return None if entry is None else entry.doc

    def text(self, ref: TextRef) -> str:
        doc = self.doc(ref)
        return "" if doc is None else doc.text

    def state(self, ref: TextRef) -> bytes | None:
        """The field's whole document as one update (None if it has none)."""
        doc = self.doc(ref)
        return None if doc is None else doc.state()

    def any_stale(self, collection: str) -> bool:
        """Whether some record row of the collection lags behind its text."""
        return bool(self._stale.get(collection))

    def stale_field_names(self, collection: str) -> set[str]:
        """The names of the collection's fields that lag behind in some record row."""
        return set().union(*self._stale.get(collection, {}).values())

    def is_stale(self, ref: TextRef) -> bool:
        collection, key, field = ref
        return field in self._stale.get(collection, {}).get(key, ())

    def patch(self, collection: str, key: str, record: dict[str, object]) -> None:
        """Put the current text of the record's stale fields into its decoded `record`."""
        for field in self._stale.get(collection, {}).get(key, ()):
            if field in record:
                record[field] = self.text((collection, key, field))

    def current(self, collection: str, key: str, fields: dict[str, StoredField]) -> None:
        """Bring the stamps and bases of the record's stale fields (as read from its row)
        up to date, in place: what a write must merge against."""
        for field in self._stale.get(collection, {}).get(key, ()):
            stored = fields.get(field)
            if stored is not None:
                latest = self._latest((collection, key, field))
                if latest is not None and latest[0] > stored.stamp:
                    fields[field] = StoredField("crdt", STALE, *latest)

    def latest_stamp(self, ref: TextRef) -> str | None:
        """The stamp of a stale field (its last appended update's, which is the highest)."""
        latest = self._latest(ref)
        return None if latest is None else latest[0]

    def _latest(self, ref: TextRef) -> tuple[str, str | None] | None:
        """The stamp and base of the field's last appended update (None: none since the row)."""
        entry = self._open.get(ref)
        if entry is not None:
            return None if entry.stamp is None else (entry.stamp, entry.base)
        return self._store.text_latest(*ref)

    def _entry(self, ref: TextRef) -> _Open | None:
        entry = self._open.get(ref)
        if entry is not None:
            self._open.move_to_end(ref)
            return entry
        row = self._store.text_state(*ref)
        if row is None:
            return None
        doc = CrdtText(row.snapshot, client_id=self._client_id)
        for update in row.updates:  # one by one: merging 10,000 first took 7x longer
            doc.apply(update.update)
        return self._remember(ref, _Open(doc, len(row.snapshot), row.updates))

    def _remember(self, ref: TextRef, entry: _Open) -> _Open:
        self._open[ref] = entry
        self._touched.add(ref)
        while len(self._open) > self._cache_size:
            oldest = next(iter(self._open))
            if oldest in self._touched:  # needed until the transaction ends
                break
            del self._open[oldest]
        return entry

    # -- writing (inside the caller's transaction) -------------------------------------

    def create(self, ref: TextRef, state: bytes) -> CrdtText:
        """Store a new field whose document is `state`; its record row holds its text."""
        self._store.write_text_snapshot(*ref, state)
        doc = CrdtText(state, client_id=self._client_id)
        self._remember(ref, _Open(doc, len(state), []))
        self._set_fresh(ref)
        return doc

    def appended(
        self, ref: TextRef, updates: Iterable[bytes], stamp: str, base: str | None
    ) -> None:
        """Store `updates`, already applied to the open document of `ref`, after which
        the field's stamp and base are `stamp` and `base`.

        The record row lags from now on (it must hold `STALE` for the field's
        text, or already does); compacts when the updates grew enough.
        """
        entry = self._open[ref]
        rows = [TextUpdate(stamp, base, update) for update in updates if update] or [
            TextUpdate(stamp, base, b"\x00\x00")
        ]  # an empty update keeps the stamp
        self._store.append_text_updates(ref, rows)
        self._touched.add(ref)
        entry.updates += len(rows)
        entry.update_bytes += sum(len(row.update) for row in rows)
        entry.stamp, entry.base = stamp, base
        if not self.is_stale(ref):
            self._store.set_text_fresh(*ref, False)
            collection, key, field = ref
            self._stale.setdefault(collection, {}).setdefault(key, set()).add(field)
        if entry.updates >= COMPACT_ROWS or entry.update_bytes >= max(
            _MIN_COMPACT_BYTES, entry.snapshot_bytes
        ):
            self.compact(ref)

    def compact(self, ref: TextRef) -> None:
        """Fold the field's updates into a new snapshot; its record row catches up."""
        entry = self._entry(ref)
        if entry is None:
            return
        state = entry.doc.state()
        self._write_row(ref, entry)  # before the snapshot: it reads the latest stamp
        self._store.write_text_snapshot(*ref, state)
        entry.snapshot_bytes, entry.updates, entry.update_bytes = len(state), 0, 0
        entry.stamp = entry.base = None
        self._touched.add(ref)

    def compact_all(self) -> int:
        """Compact every field whose record row lags; how many were compacted."""
        refs = [
            (collection, key, field)
            for collection, records in self._stale.items()
            for key, fields in records.items()
            for field in fields
        ]
        for ref in sorted(refs):
            self.compact(ref)
        return len(refs)

    def materialize(self, collection: str, fields: Iterable[str]) -> None:
        """Write the current text (and stamp) of the collection's stale `fields` into
        their record rows; their updates stay until compaction."""
        wanted = set(fields)
        stale = self._stale.get(collection, {})
        for key, field in sorted((k, f) for k, fs in stale.items() for f in fs & wanted):
            ref = (collection, key, field)
            entry = self._entry(ref)
            if entry is not None:
                self._write_row(ref, entry)

    def drop(self, ref: TextRef) -> None:
        """Forget the field entirely (its record row is the caller's)."""
        self._store.drop_text_state(*ref)
        self._open.pop(ref, None)
        self._forget_stale(ref)

    def _write_row(self, ref: TextRef, entry: _Open) -> None:
        """Write the field's text and latest stamp into its record row; it is fresh again."""
        collection, key, field = ref
        row = self._store.record(collection, key)
        if row is not None:
            fields = load_record(row.vals, row.stamps)
            stored = fields.get(field)
            if stored is not None:
                stamp, base = (
                    (entry.stamp, entry.base)
                    if entry.stamp is not None and entry.stamp > stored.stamp
                    else (stored.stamp, stored.base)
                )
                fields[field] = StoredField("crdt", value_text(entry.doc.text), stamp, base)
                self._store.write_records(collection, [RecordRow(key, *dump_record(fields))])
        self._set_fresh(ref)

    def _set_fresh(self, ref: TextRef) -> None:
        if self._forget_stale(ref):
            self._store.set_text_fresh(*ref, True)

    def _forget_stale(self, ref: TextRef) -> bool:
        """Take `ref` out of the stale index; whether it was there."""
        collection, key, field = ref
        records = self._stale.get(collection, {})
        fields = records.get(key)
        if fields is None or field not in fields:
            return False
        fields.discard(field)
        if not fields:
            del records[key]
        return True

    # -- the transaction's end ---------------------------------------------------------

    def committed(self) -> None:
        self._touched.clear()

    def rolled_back(self) -> None:
        """Drop what the aborted transaction touched: the file is the truth again."""
        for ref in self._touched:
            self._open.pop(ref, None)
        self._touched.clear()
        self._load_stale()
