"""CRDT text fields: thin helpers over pycrdt (Yjs-compatible).

A CRDT field stores a Yjs document whose root ``"text"`` is a `pycrdt.Text`.
Its state travels as Yjs update bytes; merging is `apply_update`, which is
commutative and idempotent, so CRDT fields never conflict.

Two pitfalls of the underlying library are handled here:

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
  its `get_update()`. `CrdtText.apply` therefore checks after every apply
  whether the doc integrated the update's structs, keeps the ones it did not in
  its own pending update (merged losslessly with `merge_updates`), and retries
  them after each later apply. The pure-bytes `merge_text_updates` never had
  the problem. (``tests/conflicts/test_crdt.py`` pins the case down.)
* **Out-of-range edits are not errors in pycrdt**: an insert past the end is
  silently clamped, and a delete past the end panics in Rust. `CrdtText`
  checks ranges first and raises `IndexError`.

Garbage update bytes raise `CrdtUpdateError` and leave the document unchanged.
"""

from __future__ import annotations

import hashlib

from pycrdt import Doc, Text, get_state, get_update, merge_updates

from quietsync.conflicts.conflict import FieldRef
from quietsync.conflicts.errors import CrdtUpdateError

__all__ = ["ROOT", "CrdtText", "initial_text_update", "merge_text_updates", "text_of"]

ROOT = "text"
_CLIENT_ID_BITS = 53  # Yjs client ids must fit a JavaScript safe integer


def _derived_client_id(ref: FieldRef, content: str) -> int:
    material = "\0".join((ref.collection, ref.key, ref.field, content)).encode()
    digest = hashlib.blake2b(material, digest_size=8).digest()
    return (int.from_bytes(digest, "big") >> (64 - _CLIENT_ID_BITS)) or 1


def initial_text_update(ref: FieldRef, content: str) -> bytes:
    """The update that initialises field `ref` with `content`, identical on every node."""
    doc = Doc(client_id=_derived_client_id(ref, content))
    doc[ROOT] = Text(content)
    return doc.get_update()


class CrdtText:
    """One CRDT text field's document, with range-checked edits that return updates."""

    def __init__(self, state: bytes | None = None, *, client_id: int | None = None) -> None:
        self._doc = Doc(client_id=client_id)
        self._text = self._doc.get(ROOT, type=Text)
        self._pending: bytes | None = None  # structs the doc has not integrated yet
        if state:
            self.apply(state)

    @property
    def text(self) -> str:
        return str(self._text)

    def __len__(self) -> int:
        return len(self._text)

    def apply(self, update: bytes) -> None:
        """Merge a Yjs update; `CrdtUpdateError` (document unchanged) if it is garbage."""
        if not isinstance(update, bytes | bytearray | memoryview):
            raise CrdtUpdateError(f"a CRDT update must be bytes, got {type(update).__name__}")
        update = bytes(update)
        try:
            self._doc.apply_update(update)
        except ValueError as exc:
            raise CrdtUpdateError(f"not a valid Yjs update ({len(update)} bytes): {exc}") from exc
        retry, self._pending = self._pending, None
        self._stash_unintegrated(update)
        if retry is not None:  # the new update may be what the stashed structs waited for
            self._doc.apply_update(retry)
            self._stash_unintegrated(retry)

    @property
    def has_pending(self) -> bool:
        """True while some applied structs wait for updates they depend on."""
        return self._pending is not None

    def _stash_unintegrated(self, update: bytes) -> None:
        missing = get_update(update, self._doc.get_state())
        if missing[0] != 0:  # first varuint: how many clients still have structs missing
            self._pending = (
                missing if self._pending is None else merge_updates(self._pending, missing)
            )

    def insert(self, index: int, text: str) -> bytes:
        """Insert `text` at `index` (0..len); return the update describing the edit."""
        if not isinstance(text, str):
            raise TypeError(f"text to insert must be a str, got {type(text).__name__}")
        length = len(self._text)
        if not 0 <= index <= length:
            raise IndexError(f"insert index {index} out of range for text of length {length}")
        before = self._doc.get_state()
        self._text.insert(index, text)
        return self._doc.get_update(before)

    def delete(self, index: int, length: int) -> bytes:
        """Delete `length` characters from `index`; return the update describing the edit."""
        size = len(self._text)
        if length < 0 or index < 0 or index + length > size:
            raise IndexError(
                f"cannot delete {length} characters at {index} from text of length {size}"
            )
        before = self._doc.get_state()
        del self._text[index : index + length]
        return self._doc.get_update(before)

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


def merge_text_updates(state: bytes | None, *updates: bytes) -> bytes:
    """Merge `updates` into the stored `state` bytes without building a document.

    Validates every update first (`CrdtUpdateError` if one is garbage), then
    merges them all at once: one pass over the state, however many updates.
    """
    for update in updates:
        try:
            get_state(update)
        except ValueError as exc:
            raise CrdtUpdateError(f"not a valid Yjs update ({len(update)} bytes): {exc}") from exc
    parts = [state, *updates] if state else list(updates)
    if len(parts) == 1:
        return bytes(parts[0])
    try:
        return merge_updates(*parts)
    except ValueError as exc:
        raise CrdtUpdateError(f"cannot merge Yjs updates: {exc}") from exc


def text_of(state: bytes | None) -> str:
    """The text held by stored `state` bytes."""
    return CrdtText(state).text if state else ""
