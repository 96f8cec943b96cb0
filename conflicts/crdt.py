"""CRDT text fields: thin helpers over pycrdt (Yjs-compatible).

A CRDT field stores a Yjs document whose root ``"text"`` is a `pycrdt.Text`.
Its state travels as Yjs update bytes; merging is `apply_update`, which is
commutative and idempotent, so CRDT fields never conflict.

The pitfalls of the underlying library handled here:

* **Identical concurrent inserts are duplicated.** Two replicas that each
  insert ``"hello"`` into an empty text end up with ``"hellohello"``. So
  initial content is created by `initial_text_update`, which derives the Yjs
  client id from the field and the content: two replicas initialising a field
  with the same content produce byte-identical updates, and applying one after
  the other is a no-op. *Different* initial contents are both kept, one after
  the other, in an order every replica agrees on (Yjs orders concurrent inserts
  at one position by client id).
* **Out-of-order delivery can lose text in pycrdt.** When updates arrive before
  the updates they depend on, and form a chain (B needs A, C needs B), applying
  A integrates B but silently drops C: it is gone from the document and from
  its `get_update()`. Likewise a deletion of an item the doc has not received
  is applied when the item comes, but is never part of `get_update()` until
  then: a snapshot taken meanwhile loses it (a replica compacting mid-sync
  brought deleted text back on reopen). `CrdtText.apply` therefore checks
  after every apply whether the doc integrated the update's structs and
  deletions, keeps what it did not in its own pending update (merged
  losslessly with `merge_updates`), and retries it after each later apply;
  `state()` includes it. The pure-bytes `merge_text_updates` never had the
  problem. (``tests/conflicts/test_crdt.py`` pins both cases down.)
* **Merged updates never compact.** `merge_updates` keeps each update's
  structs and delete ranges as they came; only a document squashes them.
  The automerge-paper trace merged push by push was 12x its document's
  encoding and took seconds to apply. So a state kept for long (the
  server's) is merged through a document, `merge_text_state`, which is
  lossless thanks to the pending update above.
* **Out-of-range edits are not errors in pycrdt**: an insert past the end is
  silently clamped, and a delete past the end panics in Rust. `CrdtText`
  checks ranges first and raises `IndexError`.
* **pycrdt counts UTF-8 bytes.** ``len(Text("café"))`` is 5 and an index is a
  byte offset; one inside a character lands elsewhere or leaves a struct that
  never integrates. `CrdtText` takes and returns code points (Python ``str``
  indexes) and converts them to byte offsets in one place (`CrdtText.edit`,
  through `TextChunks.utf8_offset`).
  Yjs in JavaScript counts UTF-16 units; no position ever travels between
  the two, only updates (``docs/protocol.md``).

Garbage update bytes raise `CrdtUpdateError` and leave the document unchanged.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import attrs
from pycrdt import Doc, Text, get_state, get_update, merge_updates

from quietsync.conflicts.conflict import FieldRef
from quietsync.conflicts.errors import CrdtUpdateError
from quietsync.conflicts.text_chunks import TextChunks
from quietsync.conflicts.yjs_v1 import check_v1_update, deletes_past, read_state_vector

__all__ = [
    "ROOT",
    "CrdtText",
    "TextMerge",
    "TextOp",
    "check_text_update",
    "initial_client_id",
    "initial_text_update",
    "join_updates",
    "merge_text_state",
    "merge_text_updates",
    "text_of",
]

ROOT = "text"
_CLIENT_ID_BITS = 53  # Yjs client ids must fit a JavaScript safe integer


def initial_client_id(ref: FieldRef, content: str) -> int:
    """The Yjs client id of `initial_text_update` (the recipe in ``docs/protocol.md``).

    The first 8 bytes of SHA-256 over the UTF-8 of ``collection NUL key NUL
    field NUL content``, big-endian, shifted right to 53 bits (a JavaScript
    safe integer), or 1 if that is 0. SHA-256 because every platform has it
    (``crypto.subtle`` in a browser, ``node:crypto``).
    """
    material = "\0".join((ref.collection, ref.key, ref.field, content)).encode()
    digest = hashlib.sha256(material).digest()
    return (int.from_bytes(digest[:8], "big") >> (64 - _CLIENT_ID_BITS)) or 1


def initial_text_update(ref: FieldRef, content: str) -> bytes:
    """The update that initialises field `ref` with `content`, identical on every node.

    A Yjs document with client id `initial_client_id(ref, content)` whose root
    text ``"text"`` gets `content` in one insert at 0, encoded as a v1 update.
    """
    _check_encodable(content)
    doc = Doc(client_id=initial_client_id(ref, content))
    doc[ROOT] = Text(content)
    return doc.get_update()


TextOp = tuple[int, int, str]
"""One edit of `CrdtText.edit`: at code point ``index``, delete ``count``, then insert ``text``."""


class CrdtText:
    """One CRDT text field's document, with range-checked edits that return updates.

    Positions and lengths are code points. The text is kept beside the
    document in chunks (`TextChunks`) and updated by each edit, so converting
    a position costs a chunk, not the text, and never walks the document.

    An edit returns the update of its own transaction, as the document's
    update event reports it, not a diff against the state before: a diff
    carries the document's whole delete set, which grows with every deletion
    ever made (near the end of the automerge-paper trace, most of a kilobyte
    per keystroke); the event's update holds only what the edit deleted.
    """

    def __init__(self, state: bytes | None = None, *, client_id: int | None = None) -> None:
        self._doc = Doc(client_id=client_id)
        self._text = self._doc.get(ROOT, type=Text)
        self._pending: bytes | None = None  # structs the doc has not integrated yet
        self._chunks: TextChunks | None = TextChunks()  # None when an apply made it unknown
        self._events: list[bytes] = []  # updates of the transactions of this edit or apply
        self._subscription = self._doc.observe(lambda event: self._events.append(event.update))
        if state:
            self.apply(state)

    @property
    def text(self) -> str:
        return str(self._current())

    def __len__(self) -> int:
        return len(self._current())

    def _current(self) -> TextChunks:
        if self._chunks is None:
            self._chunks = TextChunks(str(self._text))
        return self._chunks

    def apply(self, update: bytes) -> bool:
        """Merge a Yjs update; `CrdtUpdateError` (document unchanged) if it is garbage.

        Returns whether the document gained anything: False when it already
        held every struct and deletion of `update` (applying it again is a
        no-op), so a caller may skip storing it. Decided from what pycrdt
        reports, not by comparing encodings (merged bytes and a document's
        encoding of the same content differ, and yrs promises no byte order):
        the doc's update event, which fires only when a transaction
        integrated a struct or deleted an item, and what the update left
        pending. An update that must wait for one it depends on
        counts as new even if the same part was already waiting: judging that
        would mean comparing ID sets, and saying "new" too often only costs a
        store, where "nothing new" too often would lose it.
        """
        if not isinstance(update, bytes | bytearray | memoryview):
            raise CrdtUpdateError(f"a CRDT update must be bytes, got {type(update).__name__}")
        update = bytes(update)
        self._events.clear()
        try:
            self._doc.apply_update(update)
        except ValueError as exc:
            raise CrdtUpdateError(f"not a valid Yjs update ({len(update)} bytes): {exc}") from exc
        self._chunks = None
        retry, self._pending = self._pending, None
        gained = self._stash_unintegrated(update) or bool(self._events)
        if retry is not None:  # the new update may be what the stashed structs waited for
            self._doc.apply_update(retry)
            self._stash_unintegrated(retry)  # what stays was pending already: nothing gained
        self._events.clear()
        return gained

    @property
    def has_pending(self) -> bool:
        """True while some applied structs wait for updates they depend on."""
        return self._pending is not None

    def _stash_unintegrated(self, update: bytes) -> bool:
        """Keep what the doc did not integrate of `update` in `_pending`; True if there was any."""
        state = self._doc.get_state()
        missing = get_update(update, state)
        # first varuint: how many clients still have structs missing; without any, the
        # deletions of items not received yet, which the doc keeps in memory only
        if missing[0] == 0 and not deletes_past(missing, read_state_vector(state)):
            return False
        self._pending = missing if self._pending is None else merge_updates(self._pending, missing)
        return True

    def insert(self, index: int, text: str) -> bytes:
        """Insert `text` at code point `index` (0..len); return the update describing the edit."""
        return self.edit([(index, 0, text)])

    def delete(self, index: int, length: int) -> bytes:
        """Delete `length` code points from `index`; return the update describing the edit."""
        return self.edit([(index, length, "")])

    def edit(self, ops: Iterable[TextOp]) -> bytes:
        """Apply `ops` in order, in one transaction; return its update (b"" if nothing changed).

        Each op is checked against the text as the ops before it left it; a bad
        one raises (`IndexError`, `TypeError`, `ValueError` for a lone
        surrogate) before the document changes at all.
        """
        text = self._current()
        steps: list[tuple[int, int, str]] = []  # (byte offset, byte length, text)
        try:
            for index, count, insert in ops:
                if not isinstance(insert, str):
                    raise TypeError(f"text to insert must be a str, got {type(insert).__name__}")
                _check_encodable(insert)
                if count < 0 or index < 0 or index + count > len(text):
                    if count:
                        raise IndexError(
                            f"cannot delete {count} characters at {index} "
                            f"from text of length {len(text)}"
                        )
                    raise IndexError(
                        f"insert index {index} out of range for text of length {len(text)}"
                    )
                start = text.utf8_offset(index)
                length = text.utf8_offset(index + count) - start if count else 0
                steps.append((start, length, insert))
                text.replace(index, count, insert)
            self._events.clear()
            with self._doc.transaction():
                for start, length, insert in steps:
                    if length:
                        del self._text[start : start + length]
                    if insert:
                        self._text.insert(start, insert)
        except BaseException:
            if steps:  # the chunks already hold ops the document may not: read it again
                self._chunks = None
            raise
        events, self._events = self._events, []
        if len(events) > 1:  # pycrdt reports one transaction as one event; be safe anyway
            return merge_updates(*events)
        return events[0] if events else b""

    def state(self) -> bytes:
        """The whole document as one update, including structs still pending."""
        state = self._doc.get_update()
        return state if self._pending is None else merge_updates(state, self._pending)

    def state_vector(self) -> bytes:
        return self._doc.get_state()

    def delta_since(self, state_vector: bytes) -> bytes:
        """What a peer holding `state_vector` is missing, as one update."""
        try:
            return self._doc.get_update(state_vector)
        except ValueError as exc:
            raise CrdtUpdateError(f"not a valid Yjs state vector: {exc}") from exc


def _check_encodable(text: str) -> None:
    """Refuse a lone surrogate: no UTF-8 (so no Yjs document, no JSON) can hold one."""
    if not text.isascii():
        try:
            text.encode()
        except UnicodeEncodeError as exc:
            raise ValueError(
                f"text holds a lone surrogate at {exc.start} ({text[exc.start]!r}): "
                "not a character, so no document can store it"
            ) from None


def check_text_update(update: bytes) -> None:
    """Raise `CrdtUpdateError` unless `update` is one whole Yjs v1 update pycrdt can read.

    pycrdt alone takes a Yjs v2 update, or a v1 update followed by junk, for
    an empty v1 update: `check_v1_update` reads the whole structure first.
    """
    if not isinstance(update, bytes | bytearray | memoryview):
        raise CrdtUpdateError(f"a CRDT update must be bytes, got {type(update).__name__}")
    check_v1_update(bytes(update))
    try:
        get_state(update)
    except ValueError as exc:
        raise CrdtUpdateError(f"not a valid Yjs update ({len(update)} bytes): {exc}") from exc


def join_updates(*updates: bytes) -> bytes:
    """Merge updates this node made itself (already checked) into one, without a document."""
    return updates[0] if len(updates) == 1 else merge_updates(*updates)


def merge_text_updates(state: bytes | None, *updates: bytes) -> bytes:
    """Merge `updates` into `state` bytes without building a document.

    Checks every update first (`check_text_update`), then merges them all at
    once: one pass over the state, however many updates. Lossless whatever
    the order, but the result keeps every update's structs and delete ranges
    as they came (a document squashes them): merged keystroke by keystroke,
    the automerge-paper trace is 4.5 MB where its document encodes in 377 KB
    and applies hundreds of times faster. Fine for a handful of updates
    (a replica's first pull); a state kept for long is `merge_text_state`'s.
    """
    for update in updates:
        check_text_update(update)
    parts = [state, *updates] if state else list(updates)
    if len(parts) == 1:
        return bytes(parts[0])
    try:
        return merge_updates(*parts)
    except ValueError as exc:
        raise CrdtUpdateError(f"cannot merge Yjs updates: {exc}") from exc


@attrs.frozen
class TextMerge:
    """What `merge_text_state` made of a state and some updates."""

    state: bytes
    """The document holding the state and every update, as one compact update."""
    added: bool
    """Whether the updates held anything the state did not (`CrdtText.apply`)."""


def merge_text_state(state: bytes | None, *updates: bytes, checked: bool = False) -> TextMerge:
    """Merge `updates` into the stored `state` through a document; return it re-encoded.

    The result is the document's own encoding (`CrdtText.state`): structs
    and delete ranges squashed, its size that of the document rather than of
    the history of its edits, and any older state (a `merge_text_updates`
    blob) compacted on the way. What the document could not integrate yet
    (structs, and deletions of text not received) is kept beside it, so
    nothing is lost whatever the delivery order. Every update is checked
    first (`check_text_update`), unless the caller did (`checked`: the server
    checks each write of a push on its own, to refuse it by name; checking
    again cost ~9 ms per 1,000 keystrokes); `CrdtUpdateError` if one is
    garbage or they cannot be applied. Pure: `state` is not changed, only read.
    """
    if not checked:
        for update in updates:
            check_text_update(update)
    doc = CrdtText(state)
    added = False
    for update in updates:
        added = doc.apply(update) or added
    return TextMerge(doc.state(), added)


def text_of(state: bytes | None) -> str:
    """The text held by stored `state` bytes."""
    return CrdtText(state).text if state else ""
