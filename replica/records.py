"""How records look on either side of the store: canonical JSON in, plain dicts out.

Helpers shared by the `Replica` facade and the remote-change merge, so both
encode values and decode rows exactly one way.

Must not import `quietsync.server`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

import attrs

from quietsync.conflicts import HLC, FieldWrite, canonical_json
from quietsync.protocol import DELETED_FIELD, Kind
from quietsync.replica.layout import StoredField

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


def decode_records(vals: Sequence[str]) -> list[Record]:
    """The public form of each stored record; None when deleted or empty.

    All rows are parsed in one `json.loads`. CRDT text fields already hold
    their plain text (`replica.layout`); the tombstone is taken out.
    """
    records: list[Record] = []
    for record in json.loads("[" + ",".join(vals) + "]"):
        tombstone = record.pop(DELETED_FIELD, None)
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


def field_state(field: StoredField, state: bytes | None) -> FieldState:
    """The public form of one stored field (`state`: a CRDT field's Yjs document)."""
    base = None if field.base is None else HLC.parse(field.base)
    write = FieldWrite(json.loads(field.value), HLC.parse(field.stamp), base)
    return FieldState(field.kind, write, state if field.kind == "crdt" else None)
