"""How records look on either side of the store: canonical JSON in, plain dicts out.

Helpers shared by the `Replica` facade and the remote-change merge, so both
encode values and decode rows exactly one way.

Must not import `server`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from typing import Any

import attrs

from conflicts import HLC, FieldWrite, Kind, canonical_json, text_of
from replica.store import FieldRow, RecordRow

__all__ = [
    "FALSE",
    "TRUE",
    "FieldState",
    "Record",
    "decode_records",
    "encode_json",
    "field_state",
    "yjs_client_id",
]

TRUE, FALSE = canonical_json(True), canonical_json(False)
Record = dict[str, Any] | None
_CLIENT_ID_BITS = 53  # Yjs client ids must fit a JavaScript safe integer


@attrs.frozen
class FieldState:
    """A stored field: its kind and the write that currently wins.

    `write.value` is the JSON value of an LWW field and the text of a CRDT
    field; `state` is a CRDT field's whole Yjs document (None for LWW).
    """

    kind: Kind
    write: FieldWrite
    state: bytes | None = None


def encode_json(where: str, value: Any) -> str:
    """Canonical JSON text of `value`; `TypeError` naming `where` if it is not JSON."""
    try:
        text = canonical_json(value)
    except (TypeError, ValueError, RecursionError) as exc:
        raise TypeError(f"{where}: value is not JSON-serialisable ({exc})") from exc
    return text


def decode_records(
    rows: Sequence[RecordRow], crdt_state: Callable[[str, str], bytes | None]
) -> list[Record]:
    """The public form of each record (CRDT text as a string); None when deleted or empty.

    All bodies are parsed in one `json.loads`; `crdt_state(key, field)` loads
    a CRDT field's state, so only records that have one pay for it.
    """
    bodies = json.loads("[" + ",".join(row.body for row in rows) + "]")
    records: list[Record] = []
    for row, (record, crdt, tombstone) in zip(rows, bodies, strict=True):
        for field in crdt:
            record[field] = text_of(crdt_state(row.key, field))
        empty = not record and tombstone is None
        records.append(None if tombstone is True or empty else record)
    return records


def yjs_client_id(node_id: str) -> int:
    """This node's Yjs client id for text edits: stable, so the state vector stays small.

    Reusing it across sessions is safe because every edit starts from the
    whole stored document, which holds all this node's earlier edits.
    """
    digest = hashlib.blake2b(node_id.encode(), digest_size=8, person=b"qs-yjs").digest()
    return (int.from_bytes(digest, "big") >> (64 - _CLIENT_ID_BITS)) or 1


def field_state(row: FieldRow) -> FieldState:
    """The public form of one stored field."""
    base = None if row.base is None else HLC.parse(row.base)
    if row.kind == "crdt":
        return FieldState(
            "crdt", FieldWrite(text_of(row.state), HLC.parse(row.stamp), base), row.state
        )
    value = json.loads(row.value or "null")
    return FieldState("lww", FieldWrite(value, HLC.parse(row.stamp), base))
