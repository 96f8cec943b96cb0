"""The messages replicas and the server exchange, with one validating decode each.

Both sides import these from `quietsync.protocol`, because the replica and the
server never import each other. A `Mutation` is one field write a replica pushes; a
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
import math
from typing import Any, Final, Literal, Self

import attrs

from quietsync.conflicts.canonical import canonical_json
from quietsync.conflicts.hlc import HLC
from quietsync.protocol.errors import WireError

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


_ID_MAX, _COLLECTION_MAX, _KEY_MAX, _FIELD_MAX = _NAME_LIMITS.values()


def _names(obj: dict[str, Any]) -> tuple[str, str, str, str]:
    """The id, collection, key and field of `obj`, checked as `check_name` does.

    Unrolled, calling `check_name` only to raise its error: four calls of it
    per mutation were a fifth of the cost of a decode.
    """
    names = mid, collection, key, field = (
        obj.get("id"),
        obj.get("collection"),
        obj.get("key"),
        obj.get("field"),
    )
    if not (
        type(mid) is str
        and type(collection) is str
        and type(key) is str
        and type(field) is str
        and 0 < len(mid) <= _ID_MAX
        and 0 < len(collection) <= _COLLECTION_MAX
        and 0 < len(key) <= _KEY_MAX
        and 0 < len(field) <= _FIELD_MAX
    ):
        for member, value in zip(_NAME_LIMITS, names, strict=True):
            check_name(member, value)  # raises for the first bad one (or passes a str subclass)
    return names


def _stamp(obj: dict[str, Any], member: str, *, optional: bool = False) -> HLC | None:
    value = obj.get(member)
    if value is None and optional:
        return None
    try:
        return HLC.parse(value)
    except ValueError as exc:
        raise WireError(f"{member!r}: {exc}") from None


_SAFE_INT: Final = 2**63


def _check_storable(value: Any) -> None:
    """Raise `WireError` unless `canonical_json` accepts `value`.

    The common scalars are answered without encoding them (encoding every value
    was a quarter of the cost of a decode): None, booleans, ASCII text, finite
    floats and ints of 64 bits are always storable, whatever
    `sys.get_int_max_str_digits` says. Everything else takes the full check.
    """
    kind = type(value)
    if (
        value is None
        or kind is bool
        or (kind is str and value.isascii())
        or (kind is int and -_SAFE_INT < value < _SAFE_INT)
        or (kind is float and math.isfinite(value))
    ):
        return
    try:
        canonical_json(value)
    except (TypeError, ValueError) as exc:
        raise WireError(f"'value' is not storable JSON: {exc}") from None


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
        # Positional: this runs once per mutation of every push and change of every pull.
        return cls(*_decode_common(cls, obj))


def _decode_common(cls: type[Mutation], obj: Any) -> tuple[Any, ...]:
    """Mutation's attributes decoded from `obj` (a `cls` as JSON), in attribute order."""
    if not isinstance(obj, dict):
        raise WireError(f"a {cls.__name__.lower()} must be a JSON object, got {obj!r:.80}")
    kind = obj.get("kind")
    if kind not in KINDS:
        raise WireError(f"'kind' must be one of {', '.join(KINDS)}, got {kind!r}")
    names = _names(obj)
    stamps = _stamp(obj, "stamp"), _stamp(obj, "base", optional=True)
    if kind == "lww":
        if "value" not in obj:
            raise WireError("an lww write needs 'value' (null is a value)")
        if "update" in obj:
            raise WireError("an lww write carries 'value', not 'update'")
        value = obj["value"]
        _check_storable(value)
        return *names, kind, *stamps, value, None
    if "value" in obj:
        raise WireError("a crdt write carries 'update', not 'value'")
    update = obj.get("update")
    if not isinstance(update, str):
        raise WireError(f"'update' must be a base64 string, got {update!r:.80}")
    try:
        decoded = base64.b64decode(update, validate=True)
    except (binascii.Error, ValueError):
        raise WireError("'update' is not valid base64") from None
    return *names, kind, *stamps, None, decoded


@attrs.frozen
class Change(Mutation):
    """One entry of the server's change log; `seq` orders it (None for mirror writes)."""

    seq: int | None = None

    def to_json(self) -> dict[str, Any]:
        obj = super().to_json()
        obj["seq"] = self.seq
        return obj

    @classmethod
    def from_json(cls, obj: Any) -> Self:
        """Decode and validate; `WireError` names the first bad member."""
        fields = _decode_common(cls, obj)
        seq = obj.get("seq")
        if seq is not None and (type(seq) is not int or seq < 0):
            raise WireError(f"'seq' must be a non-negative integer or null, got {seq!r}")
        return cls(*fields, seq)
