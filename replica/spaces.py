"""Spaces in the replica file: the one mapping that keeps every space's records apart.

A record lives in a space (``docs/protocol.md``, "Spaces"): the user's
private space or a shared one. The replica's tables are keyed by collection
name, so a space is a prefix of that name, and this module is the only one
that knows its form:

* **The private space** keeps its collections under their own names, exactly
  as before spaces existed: files written by older versions need no
  migration and the private API (`Replica`) did not change. Its key here is
  `PRIVATE` (None); any ``u:`` id names it (`space_key`), because a replica
  holds one user's data and a user can read no other user's private space.
* **A shared space** ``S`` keeps collection ``c`` under ``"\\0" + S + "\\0" + c``.

Why this is collision-proof: no collection name holds NUL
(`quietsync.protocol.check_name` refuses it, and so does the wire decode),
and neither does a space id (`check_space`). So a private name never starts
with NUL, and a qualified name splits at its second NUL into exactly one
``(space, collection)``: two spaces never share a stored name, whatever their
collections and keys are.

Why NUL first: it makes every space one contiguous range of stored names
(`collection_range`). Private names start with a character >= U+0001;
shared ones with U+0000, then their space id and a NUL, which sorts below
every other continuation of that id. The store therefore knows nothing of
spaces, only ranges of collection names, and a space's outbox, purge or
resync scan is a range scan of a primary key.

Per-space sync state (cursor, history, conflict position, sweep flag) lives
in the meta table under `meta_key`: the private space's keys are the names
they always had.

Must not import `quietsync.server`.
"""

from __future__ import annotations

from typing import Final, NamedTuple

from quietsync.protocol import PRIVATE_PREFIX, SPACE_ID_MAX

__all__ = [
    "PRIVATE",
    "SHARED",
    "CollectionRange",
    "SpaceKey",
    "check_space",
    "collection_range",
    "meta_key",
    "qualify",
    "space_key",
    "unqualify",
]

SpaceKey = str | None
"""How the replica names a space: a shared space's id, or `PRIVATE`."""
PRIVATE: Final[SpaceKey] = None
_SEP: Final = "\x00"


class CollectionRange(NamedTuple):
    """The stored collection names ``low <= name < high`` (no upper bound if `high` is None)."""

    low: str
    high: str | None


def check_space(space: object) -> str:
    """Return `space` if it can be a shared space's id, else `ValueError`.

    1 to `SPACE_ID_MAX` characters of valid UTF-8, without NUL (the separator
    above). The server decides which ids exist; a well-formed id that does
    not is a ``404 space_not_found`` at sync time, never a collision here.
    """
    if not isinstance(space, str) or not 0 < len(space) <= SPACE_ID_MAX:
        raise ValueError(f"a space id is a string of 1 to {SPACE_ID_MAX} characters: {space!r}")
    if _SEP in space:
        raise ValueError(f"a space id cannot hold NUL: {space!r}")
    try:
        space.encode()
    except UnicodeEncodeError:
        raise ValueError(f"a space id must be valid UTF-8 (a lone surrogate): {space!r}") from None
    return space


def space_key(space: str) -> SpaceKey:
    """The replica's key of the space with id `space`: `PRIVATE` for any ``u:`` id."""
    return PRIVATE if check_space(space).startswith(PRIVATE_PREFIX) else space


def qualify(space: SpaceKey, collection: str) -> str:
    """The stored name of `collection` of `space` (the caller checked `collection`)."""
    return collection if space is None else f"{_SEP}{space}{_SEP}{collection}"


def unqualify(stored: str) -> tuple[SpaceKey, str]:
    """``(space, collection)`` of a stored collection name (inverse of `qualify`)."""
    if not stored.startswith(_SEP):
        return PRIVATE, stored
    space, _, collection = stored[1:].partition(_SEP)
    return space, collection


def collection_range(space: SpaceKey) -> CollectionRange:
    """The stored names of exactly `space`'s collections (module docstring)."""
    if space is None:
        return CollectionRange("\x01", None)
    return CollectionRange(f"{_SEP}{space}{_SEP}", f"{_SEP}{space}\x01")


SHARED: Final = CollectionRange(_SEP, "\x01")
"""The stored names of every shared space's collections."""


def meta_key(space: SpaceKey, name: str) -> str:
    """The meta table's name of `space`'s sync state `name` (`name` itself when private)."""
    return name if space is None else f"{name}{_SEP}{space}"
