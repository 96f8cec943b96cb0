"""The sync API's answers as schemas: what the server encodes and a replica decodes.

One declaration per message (``docs/protocol.md`` shows each): the push
answer, a pull page, a page of the conflict log, and the live socket's three
messages (a union tagged by ``type``). The server builds these from its
results and encodes them with `quietsync.protocol.encode`; the replica decodes them in one pass with
`decode_answer`, then turns their writes into `Change`s and conflicts into
`Conflict`s. Requests carry records only (`quietsync.protocol.sync`).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypeVar

import msgspec

from quietsync.conflicts import HLC, Conflict, Side
from quietsync.conflicts.hlc import STAMP_PATTERN
from quietsync.protocol.errors import NotJsonError, WireError
from quietsync.protocol.nesting import too_deep_message
from quietsync.protocol.sync import WireChange

__all__ = [
    "OUTCOMES",
    "WireChanges",
    "WireConflict",
    "WireConflictsAnswer",
    "WireHello",
    "WireLive",
    "WirePull",
    "WirePullAnswer",
    "WirePushAnswer",
    "WireResult",
    "WireSide",
    "WireSpacesChanged",
    "conflict_from_wire",
    "conflict_to_wire",
    "decode_answer",
]

Outcome = Literal["applied", "duplicate", "dropped", "resolved"]
OUTCOMES = ("applied", "duplicate", "dropped", "resolved")
_Count = Annotated[int, msgspec.Meta(ge=0)]
_History = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
_Stamp = Annotated[str, msgspec.Meta(pattern=f"^{STAMP_PATTERN}$")]


class WireSide(msgspec.Struct, frozen=True, omit_defaults=True):
    value: Any
    stamp: _Stamp
    node: str
    user: str | None = None
    """The user whose push wrote it (None: written by the server, or not recorded)."""


class WireConflict(msgspec.Struct, frozen=True):
    collection: str
    key: str
    field: str
    winner: WireSide
    loser: WireSide
    detected_by: str


class WireResult(msgspec.Struct, frozen=True):
    id: str
    outcome: Outcome


class WirePushAnswer(msgspec.Struct, frozen=True):
    results: list[WireResult]
    conflicts: list[WireConflict]
    suppressed: _Count
    cursor: _Count
    history: _History | None = None


class WirePullAnswer(msgspec.Struct, frozen=True):
    changes: list[WireChange]
    cursor: _Count
    has_more: bool
    history: _History | None = None


class WireConflictsAnswer(msgspec.Struct, frozen=True):
    conflicts: list[WireConflict]
    cursor: _Count
    has_more: bool


class WireHello(msgspec.Struct, frozen=True, tag="hello", tag_field="type"):
    cursor: _Count
    history: _History | None = None


class WireChanges(msgspec.Struct, frozen=True, tag="changes", tag_field="type"):
    changes: list[WireChange]
    cursor: _Count
    after: _Count | None = None
    """Every change after it up to `cursor` is here (but those overwritten later)."""


class WirePull(msgspec.Struct, frozen=True, tag="pull", tag_field="type"):
    cursor: _Count


class WireSpacesChanged(msgspec.Struct, frozen=True, tag="spaces", tag_field="type"):
    """Sent on a private space's sockets: the user's memberships changed (re-read them)."""


WireLive = WireHello | WireChanges | WirePull | WireSpacesChanged


A = TypeVar("A")
_DECODERS: dict[Any, msgspec.json.Decoder[Any]] = {}


def decode_answer(data: bytes | str, kind: type[A] | Any) -> A:
    """Decode one answer of `kind` (`WireLive` for a live message) in one pass.

    `NotJsonError` if the text is not JSON, `WireError` naming the member if
    it does not fit the schema or is nested too deep to parse (a value past
    `MAX_NESTING` that parses is refused where it becomes a `Change`).
    """
    decoder = _DECODERS.get(kind)
    if decoder is None:
        decoder = _DECODERS[kind] = msgspec.json.Decoder(kind)
    try:
        return decoder.decode(data)  # type: ignore[no-any-return]
    except msgspec.ValidationError as exc:
        raise WireError(str(exc)) from None
    except msgspec.DecodeError as exc:
        raise NotJsonError(f"not JSON: {exc}") from None
    except RecursionError:
        raise WireError(too_deep_message("the message")) from None


def conflict_to_wire(conflict: Conflict) -> WireConflict:
    def side(s: Side) -> WireSide:
        return WireSide(s.value, str(s.stamp), s.node, s.user)

    return WireConflict(
        conflict.collection,
        conflict.key,
        conflict.field,
        side(conflict.winner),
        side(conflict.loser),
        conflict.detected_by,
    )


def conflict_from_wire(wire: WireConflict) -> Conflict:
    def side(s: WireSide) -> Side:
        return Side(s.value, HLC.parse(s.stamp), s.user)

    return Conflict(
        wire.collection,
        wire.key,
        wire.field,
        side(wire.winner),
        side(wire.loser),
        wire.detected_by,
    )
