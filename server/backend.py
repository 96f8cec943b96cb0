"""The SQL-free half of a `server.store.Store` backend, shared by every backend.

How a field, a mark and a conflict are encoded as row values (JSON text for
values and marks, stamps as their fixed-width text, whose text order is time
order), how a page is cut by size, and how a schema version is checked: the
SQLite and PostgreSQL stores keep the same text in their rows and answer the
same pages, so one copy of this logic serves both.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from quietsync.conflicts import HLC, FieldRef
from quietsync.protocol import Change
from quietsync.server.errors import ConfigError
from quietsync.server.store import ClientMark, FieldKey, StoredField

__all__ = [
    "TOMBSTONE",
    "change_from_row",
    "check_version",
    "dumps",
    "key_of",
    "mark_from_row",
    "mark_text",
    "new_history_id",
    "page_end",
    "stamp_or_none",
    "stored",
    "str_or_none",
    "value_text",
]

dumps = json.JSONEncoder(separators=(",", ":"), allow_nan=False, ensure_ascii=False).encode

# `dumps` is quick for a str only; any other value takes json's general path (~1 us
# where these take ~0.1). Their text is fixed: exactly what that path produces.
_SCALAR_TEXT: dict[type, Callable[[Any], str]] = {
    int: int.__repr__,
    bool: lambda value: "true" if value else "false",
    type(None): lambda _: "null",
}
TOMBSTONE = _SCALAR_TEXT[bool](True)
"""The stored value of a record's ``_deleted`` field once it is deleted."""


def value_text(value: object) -> str:
    """The JSON text stored for a field's value (as `dumps` encodes it)."""
    return _SCALAR_TEXT.get(type(value), dumps)(value)


def key_of(ref: FieldRef | FieldKey) -> FieldKey:
    return ref if isinstance(ref, tuple) else (ref.collection, ref.key, ref.field)


def stamp_or_none(text: str | None) -> HLC | None:
    return None if text is None else HLC.parse(text)


def str_or_none(stamp: HLC | None) -> str | None:
    return None if stamp is None else str(stamp)


def mark_text(mark: ClientMark) -> str:
    """The stored form of a mark's last outcomes (``clients.last``)."""
    return json.dumps(mark.last, separators=(",", ":"))


def mark_from_row(hw: int, last: str | None) -> ClientMark:
    runs = () if last is None else tuple(tuple(run) for run in json.loads(last))
    return ClientMark(hw, runs)  # type: ignore[arg-type]


def page_end(sizes: Sequence[tuple[int, int]], limit: int, max_bytes: int) -> int:
    """How many of these ``(position, size)`` rows one page takes: at most `limit`, and no
    more than `max_bytes` unless a single row is larger (it then goes alone)."""
    total = 0
    for count, (_, size) in enumerate(sizes[:limit]):
        total += size
        if total > max_bytes and count:
            return count
    return min(len(sizes), limit)


def stored(
    kind: str,
    value: str | None,
    state: bytes | None,
    stamp: str,
    base: str | None,
    writer: str | None,
) -> StoredField:
    """A row of ``fields`` as a `StoredField`."""
    return StoredField(
        kind=kind,  # type: ignore[arg-type]
        stamp=HLC.parse(stamp),
        base=stamp_or_none(base),
        value=None if value is None else json.loads(value),
        state=state,
        writer=writer,
    )


def change_from_row(row: Sequence[Any]) -> Change:
    """A ``(seq, mid, collection, key, field, kind, value, state, stamp, base)`` row."""
    seq, mid, collection, key, field, kind, value, state, stamp, base = row
    return Change(
        id=mid,
        collection=collection,
        key=key,
        field=field,
        kind=kind,
        stamp=HLC.parse(stamp),
        base=stamp_or_none(base),
        value=None if value is None else json.loads(value),
        update=state,
        seq=seq,
    )


def new_history_id() -> str:
    return uuid.uuid4().hex


def check_version(found: int, known: int, version_key: str) -> None:
    """Refuse a database whose `version_key` is newer than the `known` steps: never touch it."""
    if found > known:
        raise ConfigError(
            f"the database has {version_key} {found}, newer than the {known} this "
            "version of quietsync knows; upgrade quietsync to open it"
        )
