"""`HttpTransport`: the `Transport` over HTTP (push, pull, conflicts) and a WebSocket (live).

It speaks the sync endpoints of ``docs/protocol.md`` through the replica's one
HTTP layer (`quietsync.replica.http`), which translates every network or
server failure into a `SyncError`; a space is the ``space`` query parameter
(none for the private space); the answers are decoded by
`quietsync.replica.transport`, so a malformed one is a `ProtocolError`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from quietsync.protocol import Mutation, encode
from quietsync.replica.http import HttpClient
from quietsync.replica.transport import (
    ConflictPage,
    LiveMessage,
    PullPage,
    PushAnswer,
    SpaceInfo,
    decode_conflicts,
    decode_live,
    decode_pull,
    decode_push,
    decode_spaces,
)

__all__ = ["MAX_ANSWER_BYTES", "HttpTransport"]

MAX_ANSWER_BYTES = 64 * 2**20
"""64 MiB: sixteen of the server's largest pull pages (4 MiB, ``--page-max-bytes``)."""


class HttpTransport:
    """Talks to the server at `url` as the user of `token`.

    `timeout` bounds each request (seconds): a push whose answer does not come
    back in time is a `TransportError`, and the client re-sends it unchanged.
    `max_answer_bytes` bounds an answer's body: a larger one is a
    `ProtocolError` (a server's pull page is far smaller, ``docs/protocol.md``).
    """

    def __init__(
        self,
        url: str,
        *,
        token: str,
        timeout: float = 30.0,
        max_answer_bytes: int = MAX_ANSWER_BYTES,
    ) -> None:
        self._http = HttpClient(
            url, token=token, timeout=timeout, max_answer_bytes=max_answer_bytes
        )

    async def close(self) -> None:
        await self._http.close()

    async def push(self, mutations: Sequence[Mutation], space: str | None = None) -> PushAnswer:
        body = encode({"mutations": [m.to_wire() for m in mutations]})
        headers = {"Content-Type": "application/json"}
        data = await self._http.body(
            "POST", "/v1/push", data=body, headers=headers, params=_space(space)
        )
        return decode_push(data)

    async def pull(
        self, since: int, limit: int, history: str | None = None, space: str | None = None
    ) -> PullPage:
        params = _cursor(since, history, space) | {"limit": str(limit)}
        return decode_pull(await self._http.body("GET", "/v1/pull", params=params))

    async def conflicts(self, since: int, limit: int, space: str | None = None) -> ConflictPage:
        params = _space(space) | {"since": str(since), "limit": str(limit)}
        return decode_conflicts(await self._http.body("GET", "/v1/conflicts", params=params))

    async def spaces(self) -> list[SpaceInfo]:
        return decode_spaces(await self._http.body("GET", "/v1/spaces"))

    @asynccontextmanager
    async def live(
        self, since: int, history: str | None = None, space: str | None = None
    ) -> AsyncIterator[AsyncIterator[LiveMessage]]:
        params = _cursor(since, history, space)
        async with self._http.websocket("/v1/live", params=params) as texts:
            yield _messages(texts)


def _space(space: str | None) -> dict[str, str]:
    """The query parameter naming a shared space (none for the private space)."""
    return {} if space is None else {"space": space}


def _cursor(since: int, history: str | None, space: str | None) -> dict[str, str]:
    """The query parameters naming a cursor (and the history it belongs to, once known)."""
    params = _space(space) | {"since": str(since)}
    return params if history is None else params | {"history": history}


async def _messages(texts: AsyncIterator[str]) -> AsyncIterator[LiveMessage]:
    async for text in texts:
        yield decode_live(text)
