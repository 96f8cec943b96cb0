"""The sync client's seam to the network: the `Transport` protocol and its decoded answers.

A transport moves one request and decodes one answer; it holds no policy (no
retries, no batching, no backoff: `replica.sync_client` does all of that). So
the real aiohttp transport (`replica.transport_http`) stays small and tests can
put a fault-injecting or in-memory transport in its place.

Every sync call names its space (`space`: a shared space's id; None, the
default, is the private space and sends no ``space`` parameter at all, so a
server from before spaces is spoken to exactly as before).

The decoders here turn the server's 2xx answers (``docs/protocol.md``) into
attrs values, through the schemas both sides share
(`quietsync.protocol.messages`: one pass over the bytes), and raise
`ProtocolError` for anything the protocol does not allow (the 4xx bodies are
decoded by `quietsync.replica.http.decode_error`). Every transport uses
them, so the wire is decoded exactly one way.

Must not import `quietsync.server`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Literal, Protocol, TypeVar

import attrs

from quietsync.conflicts import Conflict
from quietsync.protocol import (
    PRIVATE_PREFIX,
    Change,
    Mutation,
    WireChange,
    WireChanges,
    WireConflict,
    WireConflictsAnswer,
    WireError,
    WireHello,
    WireLive,
    WirePullAnswer,
    WirePushAnswer,
    WireSpacesAnswer,
    WireSpacesChanged,
    conflict_from_wire,
    decode_answer,
)
from quietsync.replica.errors import ProtocolError
from quietsync.replica.spaces import check_space

__all__ = [
    "ConflictPage",
    "LiveMessage",
    "PullPage",
    "PushAnswer",
    "SpaceInfo",
    "Transport",
    "decode_conflicts",
    "decode_live",
    "decode_pull",
    "decode_push",
    "decode_spaces",
    "decode_wire",
]


@attrs.frozen
class PushAnswer:
    """A 200 answer to a push: outcome per mutation id, conflicts, suppressed count."""

    outcomes: Mapping[str, str]
    conflicts: list[Conflict]
    suppressed: int
    cursor: int
    history: str | None = None


@attrs.frozen
class PullPage:
    """One page of the fields changed after a cursor, and the server's history id."""

    changes: list[Change]
    cursor: int
    has_more: bool
    history: str | None = None


@attrs.frozen
class ConflictPage:
    """One page of the user's conflict log; `cursor` is the opaque position after it."""

    conflicts: list[Conflict]
    cursor: int
    has_more: bool


@attrs.frozen
class SpaceInfo:
    """A space the user is a member of (``GET /v1/spaces``), with the user's role there."""

    id: str
    name: str
    role: Literal["read", "write", "admin"]
    private: bool


@attrs.frozen
class LiveMessage:
    """One message of the live socket; `changes` is empty except for ``changes``.

    A ``changes`` message holds every change after `after` up to `cursor`
    (those overwritten later excepted); a ``hello`` names the `history`; a
    ``spaces`` message (private space only, `cursor` 0) says the user's
    memberships changed.
    """

    type: Literal["hello", "changes", "pull", "spaces"]
    cursor: int
    changes: list[Change] = attrs.Factory(list)
    after: int | None = None
    history: str | None = None


class Transport(Protocol):
    """One user's connection to one server; every method may raise `TransportError`."""

    async def push(self, mutations: Sequence[Mutation], space: str | None = None) -> PushAnswer:
        """Send one batch; `PushRefusedError` names refused mutations (nothing applied)."""
        ...

    async def pull(
        self, since: int, limit: int, history: str | None = None, space: str | None = None
    ) -> PullPage:
        """The changes after `since`, at most `limit`; `ResyncRequiredError` if `since`
        means nothing in the server's history (`history`: the one the replica knows)."""
        ...

    def live(
        self, since: int, history: str | None = None, space: str | None = None
    ) -> AbstractAsyncContextManager[AsyncIterator[LiveMessage]]:
        """Open the live socket from `since`; iterating ends when the server closes it,
        with `SpaceRevokedError` if it closed it because access was revoked (4003)."""
        ...

    async def conflicts(self, since: int, limit: int, space: str | None = None) -> ConflictPage:
        """The space's conflicts after position `since` (the log every replica follows)."""
        ...

    async def spaces(self) -> list[SpaceInfo]:
        """The spaces the user is a member of, the private one first (``GET /v1/spaces``)."""
        ...

    async def close(self) -> None:
        """Release connections; the transport is not used afterwards."""
        ...


W = TypeVar("W")


def decode_wire(data: bytes | str, kind: Any, what: str) -> Any:
    """`data` decoded as `kind` (one pass, `quietsync.protocol.messages`), else `ProtocolError`."""
    try:
        return decode_answer(data, kind)
    except WireError as exc:
        raise ProtocolError(f"{what} does not fit the protocol: {exc}") from exc


def _changes(wires: list[WireChange]) -> list[Change]:
    try:
        return [Change.from_wire(wire, parsed=True) for wire in wires]
    except (WireError, ValueError) as exc:
        raise ProtocolError(f"the server sent a bad change: {exc}") from exc


def _conflicts(wires: list[WireConflict]) -> list[Conflict]:
    try:
        return [conflict_from_wire(c) for c in wires]
    except ValueError as exc:
        raise ProtocolError(f"the server sent a bad conflict: {exc}") from exc


def decode_push(data: bytes | str) -> PushAnswer:
    """Decode a 200 push answer."""
    wire: WirePushAnswer = decode_wire(data, WirePushAnswer, "a push answer")
    conflicts = _conflicts(wire.conflicts)
    outcomes = {result.id: result.outcome for result in wire.results}
    return PushAnswer(outcomes, conflicts, wire.suppressed, wire.cursor, wire.history)


def decode_pull(data: bytes | str) -> PullPage:
    """Decode a 200 pull answer."""
    wire: WirePullAnswer = decode_wire(data, WirePullAnswer, "a pull answer")
    return PullPage(_changes(wire.changes), wire.cursor, wire.has_more, wire.history)


def decode_conflicts(data: bytes | str) -> ConflictPage:
    """Decode a 200 answer of the conflict log."""
    wire: WireConflictsAnswer = decode_wire(data, WireConflictsAnswer, "a conflicts answer")
    return ConflictPage(_conflicts(wire.conflicts), wire.cursor, wire.has_more)


def decode_spaces(data: bytes | str) -> list[SpaceInfo]:
    """Decode a 200 answer of ``GET /v1/spaces``.

    The protocol's promises are checked, since the client acts on them: the
    private space (a ``u:`` id) comes first and alone, no shared space has a
    ``u:`` id, no id repeats, and every id is one the replica can hold.
    """
    wire: WireSpacesAnswer = decode_wire(data, WireSpacesAnswer, "a spaces answer")
    found = [SpaceInfo(s.id, s.name, s.role, s.private) for s in wire.spaces]
    private = [s.private or s.id.startswith(PRIVATE_PREFIX) for s in found]
    if private != [True] + [False] * (len(found) - 1) or not found[0].id.startswith(PRIVATE_PREFIX):
        raise ProtocolError("a spaces answer must list the private space ('u:' id) first, alone")
    if len({s.id for s in found}) != len(found):
        raise ProtocolError("a spaces answer lists a space twice")
    try:
        for space in found:
            check_space(space.id)
    except ValueError as exc:
        raise ProtocolError(f"a spaces answer holds an id no space can have: {exc}") from exc
    return found


def decode_live(data: bytes | str) -> LiveMessage:
    """Decode one live socket message."""
    wire = decode_wire(data, WireLive, "a live message")
    if isinstance(wire, WireChanges):
        changes = _changes(wire.changes)
        after = wire.after
        if after is None:  # a server from before gaps: its batches had consecutive seqs
            after = None if not changes or changes[0].seq is None else changes[0].seq - 1
        return LiveMessage("changes", wire.cursor, changes, after=after)
    if isinstance(wire, WireHello):
        return LiveMessage("hello", wire.cursor, history=wire.history)
    if isinstance(wire, WireSpacesChanged):
        return LiveMessage("spaces", 0)
    return LiveMessage("pull", wire.cursor)
