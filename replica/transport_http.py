"""`HttpTransport`: the `Transport` over aiohttp (HTTP for push/pull, a WebSocket for live).

The only module of `replica` that touches aiohttp. Every aiohttp or socket
error, a timeout and a 5xx answer become `TransportError` (retry later); a
4xx becomes the `RequestRefusedError` the body describes; an answer that does
not decode is a `ProtocolError`. Each is raised ``from`` the original.

Must not import `server`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import aiohttp

from quietsync.protocol import Mutation
from quietsync.replica.errors import ProtocolError, TransportError
from quietsync.replica.transport import (
    LiveMessage,
    PullPage,
    PushAnswer,
    decode_error,
    decode_live,
    decode_pull,
    decode_push,
)

__all__ = ["HttpTransport"]

_NETWORK_ERRORS = (aiohttp.ClientError, OSError, asyncio.TimeoutError)


class HttpTransport:
    """Talks to the server at `url` as the user of `token`.

    `timeout` bounds each request (seconds): a push whose answer does not come
    back in time is a `TransportError`, and the client re-sends it unchanged.
    """

    def __init__(self, url: str, *, token: str, timeout: float = 30.0) -> None:
        self._url = url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {token}"}
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(headers=self._headers, timeout=self._timeout)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            async with self._client().request(method, self._url + path, **kwargs) as resp:
                text = await resp.text()
                status = resp.status
        except _NETWORK_ERRORS as exc:
            raise TransportError(f"{method} {path}: {exc!r}") from exc
        if status >= 500:
            raise TransportError(f"{method} {path}: server answered {status}: {text:.200}")
        try:
            body = json.loads(text)
        except ValueError as exc:
            raise ProtocolError(f"{method} {path}: answer is not JSON: {text:.200}") from exc
        if status >= 400:
            raise decode_error(status, body)
        return body

    async def push(self, mutations: Sequence[Mutation]) -> PushAnswer:
        body = {"mutations": [m.to_json() for m in mutations]}
        return decode_push(await self._request("POST", "/v1/push", json=body))

    async def pull(self, since: int, limit: int) -> PullPage:
        params = {"since": str(since), "limit": str(limit)}
        return decode_pull(await self._request("GET", "/v1/pull", params=params))

    @asynccontextmanager
    async def live(self, since: int) -> AsyncIterator[AsyncIterator[LiveMessage]]:
        try:
            ws = await self._client().ws_connect(
                f"{self._url}/v1/live", params={"since": str(since)}, heartbeat=30.0
            )
        except aiohttp.WSServerHandshakeError as exc:
            if 400 <= exc.status < 500:
                raise decode_error(exc.status, {"error": {"message": exc.message}}) from exc
            raise TransportError(f"live socket: {exc!r}") from exc
        except _NETWORK_ERRORS as exc:
            raise TransportError(f"live socket: {exc!r}") from exc
        try:
            yield self._messages(ws)
        finally:
            await ws.close()

    async def _messages(self, ws: aiohttp.ClientWebSocketResponse) -> AsyncIterator[LiveMessage]:
        try:
            async for msg in ws:
                if msg.type != aiohttp.WSMsgType.TEXT:
                    break
                try:
                    body = json.loads(msg.data)
                except ValueError as exc:
                    raise ProtocolError(f"live message is not JSON: {msg.data:.200}") from exc
                yield decode_live(body)
        except _NETWORK_ERRORS as exc:
            raise TransportError(f"live socket: {exc!r}") from exc
