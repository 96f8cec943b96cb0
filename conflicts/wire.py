"""The messages replicas and the server exchange, with one validating decode each.

Both sides import these from the pure core, because `replica` and `server`
never import each other. A `Mutation` is one field write a replica pushes; a
`Change` is one entry of the server's change log that replicas pull (or a
mirror write the stream tracker applies with the server's stamps before the log
delivers it: then `seq` is None).

JSON shape of both (``seq`` only on changes; exactly one of ``value`` / ``update``)::

    {"id": "n1:42", "collection": "messages", "key": "m1", "field": "content",
     "kind": "lww", "value": "hi", "stamp": "<HLC>", "base": "<HLC>" | null,
     "seq": 17}
    {"id": "...", ..., "kind": "crdt", "update": "<base64 Yjs update>", ...}

`from_json` raises `WireError` naming the offending member; it never returns a
half-valid object.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any, Final, Literal, Self

import attrs

from conflicts.canonical import canonical_json
from conflicts.errors import WireError
from conflicts.hlc import HLC

__all__ = ["DELETED_FIELD", "KINDS", "Change", "Kind", "Mutation", "check_name"]

Kind = Literal["lww", "crdt"]
KINDS: Final = ("lww", "crdt")
DELETED_FIELD: Final = "_deleted"
"""The tombstone field: a record is deleted while this LWW field holds ``True``."""

_NAME_LIMITS: Final = {"id": 128, "collection": 64, "key": 256, "field": 64}


def check_name(member: str, value: object) -> str:
    """Return `value` if it is a valid `member` ("id", "collection", "key" or "field").

    Replicas check names with this before writing, so nothing they store can
    be refused by the server for its name. Raises `WireError` (a ValueError).
    """
    if not isinstance(value, str) or not value:
        raise WireError(f"{member!r} must be a non-empty string, got {value!r}")
    if len(value) > _NAME_LIMITS[member]:
        raise WireError(f"{member!r} is longer than {_NAME_LIMITS[member]} characters")
    return value


def _name(obj: dict[str, Any], member: str) -> str:
    return check_name(member, obj.get(member))


def _stamp(obj: dict[str, Any], member: str, *, optional: bool = False) -> HLC | None:
    value = obj.get(member)
    if value is None and optional:
        return None
    try:
        return HLC.parse(value)
    except ValueError as exc:
        raise WireError(f"{member!r}: {exc}") from None


@attrs.frozen
class Mutation:
    """One field write pushed by a replica; `id` makes retries idempotent."""

    id: str
    collection: str
    key: str
    field: str
    kind: Kind
    stamp: HLC
    base: HLC | None = None
    value: Any = None
    update: bytes | None = None

    def to_json(self) -> dict[str, Any]:
        obj: dict[str, Any] = {
            "id": self.id,
            "collection": self.collection,
            "key": self.key,
            "field": self.field,
            "kind": self.kind,
            "stamp": str(self.stamp),
            "base": None if self.base is None else str(self.base),
        }
        if self.kind == "crdt":
            obj["update"] = base64.b64encode(self.update or b"").decode("ascii")
        else:
            obj["value"] = self.value
        return obj

    @classmethod
    def from_json(cls, obj: Any) -> Self:
        """Decode and validate; `WireError` names the first bad member."""
        if not isinstance(obj, dict):
            raise WireError(f"a {cls.__name__.lower()} must be a JSON object, got {obj!r:.80}")
        fields = _decode_common(obj)
        return cls(**fields, **cls._decode_extra(obj))

    @classmethod
    def _decode_extra(cls, obj: dict[str, Any]) -> dict[str, Any]:
        return {}


def _decode_common(obj: dict[str, Any]) -> dict[str, Any]:
    kind = obj.get("kind")
    if kind not in KINDS:
        raise WireError(f"'kind' must be one of {', '.join(KINDS)}, got {kind!r}")
    fields: dict[str, Any] = {m: _name(obj, m) for m in ("id", "collection", "key", "field")}
    fields.update(kind=kind, stamp=_stamp(obj, "stamp"), base=_stamp(obj, "base", optional=True))
    if kind == "lww":
        if "value" not in obj:
            raise WireError("an lww write needs 'value' (null is a value)")
        if "update" in obj:
            raise WireError("an lww write carries 'value', not 'update'")
        try:
            canonical_json(obj["value"])
        except (TypeError, ValueError) as exc:
            raise WireError(f"'value' is not storable JSON: {exc}") from None
        fields["value"] = obj["value"]
    else:
        if "value" in obj:
            raise WireError("a crdt write carries 'update', not 'value'")
        update = obj.get("update")
        if not isinstance(update, str):
            raise WireError(f"'update' must be a base64 string, got {update!r:.80}")
        try:
            fields["update"] = base64.b64decode(update, validate=True)
        except (binascii.Error, ValueError):
            raise WireError("'update' is not valid base64") from None
    return fields


@attrs.frozen
class Change(Mutation):
    """One entry of the server's change log; `seq` orders it (None for mirror writes)."""

    seq: int | None = None

    def to_json(self) -> dict[str, Any]:
        obj = super().to_json()
        obj["seq"] = self.seq
        return obj

    @classmethod
    def _decode_extra(cls, obj: dict[str, Any]) -> dict[str, Any]:
        seq = obj.get("seq")
        if seq is not None and (type(seq) is not int or seq < 0):
            raise WireError(f"'seq' must be a non-negative integer or null, got {seq!r}")
        return {"seq": seq}
