"""The sync client's seam to the network: the `Transport` protocol and its decoded answers.

A transport moves one request and decodes one answer; it holds no policy (no
retries, no batching, no backoff: `replica.sync_client` does all of that). So
the real aiohttp transport (`replica.transport_http`) stays small and tests can
put a fault-injecting or in-memory transport in its place.

The decoders here turn the server's 2xx JSON (``docs/protocol.md``) into
attrs values and raise `ProtocolError` for anything the protocol does not
allow (the 4xx bodies are decoded by `quietsync.replica.http.decode_error`).
Every transport uses them, so the wire is decoded exactly one way.

Must not import `quietsync.server`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Literal, Protocol

import attrs

from quietsync.conflicts import Conflict
from quietsync.protocol import Change, Mutation, WireError
from quietsync.replica.errors import ProtocolError

__all__ = [
    "LiveMessage",
    "PullPage",
    "PushAnswer",
    "Transport",
    "decode_live",
    "decode_pull",
    "decode_push",
]

_OUTCOMES = frozenset({"applied", "duplicate", "dropped", "resolved"})


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
class LiveMessage:
    """One message of the live socket; `changes` is empty except for ``changes``.

    A ``changes`` message holds every change after `after` up to `cursor`
    (those overwritten later excepted); a ``hello`` names the `history`.
    """

    type: Literal["hello", "changes", "pull"]
    cursor: int
    changes: list[Change] = attrs.Factory(list)
    after: int | None = None
    history: str | None = None


class Transport(Protocol):
    """One user's connection to one server; every method may raise `TransportError`."""

    async def push(self, mutations: Sequence[Mutation]) -> PushAnswer:
        """Send one batch; `PushRefusedError` names refused mutations (nothing applied)."""
        ...

    async def pull(self, since: int, limit: int, history: str | None = None) -> PullPage:
        """The changes after `since`, at most `limit`; `ResyncRequiredError` if `since`
        means nothing in the server's history (`history`: the one the replica knows)."""
        ...

    def live(
        self, since: int, history: str | None = None
    ) -> AbstractAsyncContextManager[AsyncIterator[LiveMessage]]:
        """Open the live socket from `since`; iterating ends when the server closes it."""
        ...

    async def close(self) -> None:
        """Release connections; the transport is not used afterwards."""
        ...


def _history(obj: Mapping[str, Any]) -> str | None:
    value = obj.get("history")
    if value is not None and (not isinstance(value, str) or not 0 < len(value) <= 64):
        raise ProtocolError(f"'history' must be a string of 1-64 characters, got {value!r:.80}")
    return value


def _int(obj: Mapping[str, Any], member: str) -> int:
    value = obj.get(member)
    if type(value) is not int or value < 0:
        raise ProtocolError(f"{member!r} must be a non-negative integer, got {value!r:.80}")
    return value


def _object(body: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(body, dict):
        raise ProtocolError(f"{what} must be a JSON object, got {body!r:.80}")
    return body


def _list(obj: Mapping[str, Any], member: str) -> list[Any]:
    value = obj.get(member)
    if not isinstance(value, list):
        raise ProtocolError(f"{member!r} must be a list, got {value!r:.80}")
    return value


def _changes(items: list[Any]) -> list[Change]:
    try:
        return [Change.from_json(item) for item in items]
    except WireError as exc:
        raise ProtocolError(f"the server sent a bad change: {exc}") from exc


def decode_push(body: Any) -> PushAnswer:
    """Decode a 200 push answer."""
    obj = _object(body, "a push answer")
    outcomes: dict[str, str] = {}
    for item in _list(obj, "results"):
        if not isinstance(item, dict) or not isinstance(item.get("id"), str):
            raise ProtocolError(f"a push result needs a string 'id', got {item!r:.80}")
        if item.get("outcome") not in _OUTCOMES:
            raise ProtocolError(f"unknown push outcome {item.get('outcome')!r:.80}")
        outcomes[item["id"]] = item["outcome"]
    try:
        conflicts = [Conflict.from_json(c) for c in _list(obj, "conflicts")]
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ProtocolError(f"the server sent a bad conflict: {exc!r}") from exc
    return PushAnswer(
        outcomes, conflicts, _int(obj, "suppressed"), _int(obj, "cursor"), _history(obj)
    )


def decode_pull(body: Any) -> PullPage:
    """Decode a 200 pull answer."""
    obj = _object(body, "a pull answer")
    has_more = obj.get("has_more")
    if not isinstance(has_more, bool):
        raise ProtocolError(f"'has_more' must be a boolean, got {has_more!r:.80}")
    changes = _changes(_list(obj, "changes"))
    return PullPage(changes, _int(obj, "cursor"), has_more, _history(obj))


def decode_live(body: Any) -> LiveMessage:
    """Decode one live socket message."""
    obj = _object(body, "a live message")
    kind = obj.get("type")
    if kind == "changes":
        changes = _changes(_list(obj, "changes"))
        if "after" in obj:
            after: int | None = _int(obj, "after")
        else:  # a server from before gaps: its batches had consecutive seqs
            after = None if not changes or changes[0].seq is None else changes[0].seq - 1
        return LiveMessage("changes", _int(obj, "cursor"), changes, after=after)
    if kind == "hello":
        return LiveMessage(kind, _int(obj, "cursor"), history=_history(obj))
    if kind == "pull":
        return LiveMessage(kind, _int(obj, "cursor"))
    raise ProtocolError(f"unknown live message type {kind!r:.80}")
