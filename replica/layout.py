"""How one record is laid out in its ``records`` row: two JSON texts, and their parts in memory.

A record is one row, so a batch of 1,000 records is 1,000 row writes, not one
per field (see `replica.schema`, version 3). The row holds:

* ``vals``: a JSON object mapping each field to its value. LWW values are
  spliced in as their canonical JSON text, so the text SQLite extracts for a
  field (``vals -> '$."f"'``) is byte for byte the value's canonical text and
  SQL equality is canonical equality (`replica.store` indexes and queries on
  it). A CRDT text field holds its current plain text; the tombstone field
  ``_deleted`` holds ``true``/``false``.
* ``stamps``: a JSON object mapping each field to ``[stamp, base]``, or
  ``[stamp, base, "crdt"]`` for CRDT text; stamps are HLC strings, ``base``
  is null when the write saw no earlier one.

In memory a record is a ``dict[str, StoredField]``: only the hot paths that
merge into existing records pay for splitting the row into fields; a record
written for the first time is encoded whole (`new_row_stamps`).

Must not import `quietsync.server`.
"""

from __future__ import annotations

import json
import json.encoder
from collections.abc import Iterable, Mapping
from typing import NamedTuple

from quietsync.conflicts import encode_normalized
from quietsync.protocol import Kind

__all__ = [
    "StoredField",
    "dump_record",
    "json_string",
    "load_record",
    "new_row_stamps",
    "object_text",
    "value_text",
]

value_text = encode_normalized
"""The canonical text of a value decoded from canonical text (already normalized)."""


class StoredField(NamedTuple):
    """One field of a stored record: its kind, canonical value text and stamps (HLC strings)."""

    kind: Kind
    value: str  # canonical JSON text; for CRDT text, the JSON string of the plain text
    stamp: str
    base: str | None


json_string = json.encoder.encode_basestring
"""A str as JSON text, like ``json.dumps(text, ensure_ascii=False)`` without its overhead."""


def object_text(members: Mapping[str, str | None]) -> str:
    """A JSON object from already-encoded member values (None is null)."""
    parts = [f"{json_string(k)}:{'null' if v is None else v}" for k, v in members.items()]
    return "{" + ",".join(parts) + "}"


def load_record(vals: str, stamps: str) -> dict[str, StoredField]:
    """The fields of a stored row."""
    values = json.loads(vals)
    return {
        name: StoredField(
            "crdt" if len(entry) > 2 else "lww", value_text(values[name]), entry[0], entry[1]
        )
        for name, entry in json.loads(stamps).items()
    }


def dump_record(fields: Mapping[str, StoredField]) -> tuple[str, str]:
    """The ``(vals, stamps)`` texts of a record's fields (one pass: every pull runs it)."""
    vals, stamps = [], []
    for name, field in fields.items():
        key = json_string(name)
        vals.append(f"{key}:{field.value}")
        # HLC strings are ASCII letters, digits and ``_.-*``: nothing to escape.
        base = "null" if field.base is None else f'"{field.base}"'
        crdt = ',"crdt"' if field.kind == "crdt" else ""
        stamps.append(f'{key}:["{field.stamp}",{base}{crdt}]')
    return "{" + ",".join(vals) + "}", "{" + ",".join(stamps) + "}"


def new_row_stamps(names: Iterable[str], stamp: str) -> str:
    """The ``stamps`` text of a new record whose LWW fields `names` were all written at `stamp`."""
    entry = f'["{stamp}",null]'
    return "{" + ",".join(f"{json_string(name)}:{entry}" for name in names) + "}"
