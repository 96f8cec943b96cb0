"""`HttpClient`: the replica's one door to the server, and its one error translation.

The sync transport (`quietsync.replica.transport_http`) and the jobs client
(`quietsync.replica.jobs.client`) both talk through it, so whatever goes wrong
becomes the same `SyncError` wherever it happens:

* the network failing (refused, reset, timed out; an event stream or a
  socket that breaks) and every 5xx answer: `TransportError`: retry later,
  nothing is known about what the server did;
* a 4xx answer: the `RequestRefusedError` its body describes
  (`PushRefusedError` when it names refused mutations, `UnknownJobError` for
  ``unknown_job``, `SpaceNotFoundError` for ``space_not_found``): retrying
  the same request cannot help;
* a WebSocket the server closes with code 4003 (access to its space
  revoked): `SpaceRevokedError`;
* an answer the protocol does not allow (not JSON, not UTF-8, over
  `max_answer_bytes`): `ProtocolError`.

Each is raised ``from`` the original. This is the only module of the replica
that imports aiohttp.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import aiohttp

from quietsync.protocol import REVOKED_CLOSE_CODE
from quietsync.replica.errors import (
    ProtocolError,
    PushRefusedError,
    RequestRefusedError,
    ResyncRequiredError,
    SpaceNotFoundError,
    SpaceRevokedError,
    TransportError,
    UnknownJobError,
)

__all__ = ["EventStream", "HttpClient", "decode_error"]

_NETWORK_ERRORS = (aiohttp.ClientError, OSError, asyncio.TimeoutError)


@contextmanager
def _network(what: str) -> Iterator[None]:
    """Turn a network failure inside into `TransportError` naming `what`."""
    try:
        yield
    except _NETWORK_ERRORS as exc:
        raise TransportError(f"{what}: {exc!r}") from exc


def decode_error(status: int, body: Any) -> RequestRefusedError:
    """The error a 4xx answer stands for (see the module docstring)."""
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return RequestRefusedError(status, "http_error", f"{body!r:.200}")
    code, message = str(error.get("code", "http_error")), str(error.get("message", ""))
    if code == "unknown_job":
        return UnknownJobError(status, code, message)
    if code == "space_not_found":
        return SpaceNotFoundError(status, code, message)
    resync = body.get("resync")
    if code == "resync":
        if not isinstance(resync, dict) or not all(
            isinstance(resync.get(k), str) and resync[k] for k in ("reason", "history")
        ):
            raise ProtocolError(f"a resync answer needs a reason and a history: {body!r:.200}")
        return ResyncRequiredError(status, code, message, resync["reason"], resync["history"])
    refused = body.get("refused")
    if not isinstance(refused, list):
        return RequestRefusedError(status, code, message)
    items = []
    for item in refused:
        if not isinstance(item, dict) or not isinstance(item.get("id"), str):
            raise ProtocolError(f"a refused mutation needs a string 'id', got {item!r:.80}")
        reason = f"{item.get('code', code)}: {item.get('reason', message)}"
        items.append((item["id"], reason))
    return PushRefusedError(status, code, message, items)


def _json(data: bytes, what: str) -> Any:
    try:
        return json.loads(data)
    except ValueError as exc:
        raise ProtocolError(f"{what}: the answer is not JSON: {data[:200]!r}") from exc


def _refusal_body(data: bytes) -> Any:
    """A 4xx body: its JSON, or its text when it is none (a router's or a proxy's page;
    a server from before an endpoint answers a plain ``404: Not Found``)."""
    try:
        return json.loads(data)
    except ValueError:
        return data[:200].decode(errors="replace")


async def _read(resp: aiohttp.ClientResponse, limit: int | None, what: str) -> bytes:
    """The whole body, or `ProtocolError` as soon as it passes `limit` bytes."""
    if limit is None:
        return await resp.read()
    if resp.content_length is not None and resp.content_length > limit:
        raise ProtocolError(f"{what}: the answer is {resp.content_length} bytes, over {limit}")
    data = bytearray()
    async for chunk in resp.content.iter_chunked(64 * 1024):
        data += chunk
        if len(data) > limit:
            raise ProtocolError(f"{what}: the answer is over {limit} bytes")
    return bytes(data)


class EventStream:
    """A 2xx answer whose body is read line by line as it arrives; `close` it when done."""

    def __init__(self, response: aiohttp.ClientResponse, what: str) -> None:
        self._response = response
        self._what = what
        self.headers: Mapping[str, str] = response.headers

    async def lines(self) -> AsyncIterator[str]:
        """Each line of the body, without its line break, until the server ends it."""
        with _network(f"{self._what}: the stream broke"):
            async for raw in self._response.content:
                try:
                    yield raw.decode().rstrip("\r\n")
                except UnicodeDecodeError as exc:
                    raise ProtocolError(f"{self._what}: a line is not UTF-8") from exc

    def close(self) -> None:
        self._response.release()


class HttpClient:
    """Requests to the server at `url` as the user of `token` (module docstring).

    `timeout` bounds a whole request (None: no bound, for streams);
    `read_timeout` bounds the wait for each read; `connections` caps the
    connections kept open at once (0: no cap, for one stream per job);
    `max_answer_bytes` caps the body `body` and `json` read (None: no cap),
    so a server cannot make the client hold an endless answer in memory.
    """

    def __init__(
        self,
        url: str,
        *,
        token: str,
        timeout: float | None = 30.0,
        read_timeout: float | None = None,
        connections: int = 100,
        max_answer_bytes: int | None = None,
    ) -> None:
        self._url = url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {token}"}
        self._timeout = aiohttp.ClientTimeout(
            total=timeout, sock_connect=10, sock_read=read_timeout
        )
        self._connections = connections
        self._max_answer = max_answer_bytes
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                headers=self._headers,
                timeout=self._timeout,
                connector=aiohttp.TCPConnector(limit=self._connections),
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def body(self, method: str, path: str, **kwargs: Any) -> bytes:
        """Send one request; the bytes of its 2xx answer (a 4xx or 5xx is raised)."""
        what = f"{method} {path}"
        with _network(what):
            async with self._client().request(method, self._url + path, **kwargs) as resp:
                data = await _read(resp, self._max_answer, what)
                status = resp.status
        if status >= 500:
            raise TransportError(f"{what}: the server answered {status}: {data[:200]!r}")
        if status >= 400:
            raise decode_error(status, _refusal_body(data))
        return data

    async def json(self, method: str, path: str, **kwargs: Any) -> Any:
        """Send one request; the JSON of its 2xx answer."""
        return _json(await self.body(method, path, **kwargs), f"{method} {path}")

    async def stream(self, method: str, path: str, **kwargs: Any) -> EventStream:
        """Send one request whose 2xx answer is read as it arrives (`EventStream`)."""
        what = f"{method} {path}"
        with _network(what):
            resp = await self._client().request(method, self._url + path, **kwargs)
        if resp.status < 400:
            return EventStream(resp, what)
        async with resp:
            with _network(what):
                data = await resp.read()
        if resp.status >= 500:
            raise TransportError(f"{what}: the server answered {resp.status}: {data[:200]!r}")
        raise decode_error(resp.status, _json(data, what))

    @asynccontextmanager
    async def websocket(
        self, path: str, *, params: Mapping[str, str]
    ) -> AsyncIterator[AsyncIterator[str]]:
        """Open a WebSocket; iterate its text messages until the server closes it."""
        what = f"WebSocket {path}"
        try:
            ws = await self._client().ws_connect(self._url + path, params=params, heartbeat=30.0)
        except aiohttp.WSServerHandshakeError as exc:
            if 400 <= exc.status < 500:
                raise decode_error(exc.status, {"error": {"message": exc.message}}) from exc
            raise TransportError(f"{what}: {exc!r}") from exc
        except _NETWORK_ERRORS as exc:
            raise TransportError(f"{what}: {exc!r}") from exc
        try:
            yield self._texts(ws, what)
        finally:
            await ws.close()

    @staticmethod
    async def _texts(ws: aiohttp.ClientWebSocketResponse, what: str) -> AsyncIterator[str]:
        with _network(what):
            async for msg in ws:
                if msg.type != aiohttp.WSMsgType.TEXT:
                    break
                yield msg.data
        if ws.close_code == REVOKED_CLOSE_CODE:
            raise SpaceRevokedError(f"{what}: closed by the server, access revoked (4003)")
