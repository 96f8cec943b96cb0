"""HTTP handlers of the sync API, and the middleware that turns errors into JSON.

Handlers parse and check the request, run the `SyncService` call on the store's
worker thread, and answer JSON. They never build error bodies: they raise a
`server.errors.RequestError` and `error_middleware` answers it. aiohttp's own
HTTP errors (404, 405, ...) get the same JSON body shape.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any, ParamSpec, TypeVar

from aiohttp import web

from quietsync.protocol import (
    NotJsonError,
    WireError,
    WirePullAnswer,
    conflict_to_wire,
    decode_push,
    encode,
)
from quietsync.server.errors import (
    BadRequestError,
    BodyTooLargeError,
    MalformedJsonError,
    ServerError,
    error_body,
)
from quietsync.server.keys import (
    CHANGE_READER_KEY,
    CONFIG_KEY,
    CORE_KEY,
    HUB_KEY,
    SYNC_KEY,
    USER_KEY,
)
from quietsync.server.live import LiveSession, Published
from quietsync.server.spaces.access import in_space, requested_space
from quietsync.server.store import ChangePage

__all__ = ["conflicts", "error_middleware", "health", "json_body", "live", "pull", "push"]

log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_HTTP_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "body_too_large",
}


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ServerError as exc:
        if exc.status >= 500:
            log.exception("%s %s failed", request.method, request.path)
        return web.json_response(error_body(exc), status=exc.status)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = _HTTP_CODES.get(exc.status, "http_error")
        body = {"error": {"code": code, "message": exc.text or exc.reason}}
        return web.json_response(body, status=exc.status)
    except (asyncio.CancelledError, ConnectionResetError):
        raise
    except Exception:  # a bug (a resolver that raises, say): log it, answer JSON
        log.exception("%s %s failed", request.method, request.path)
        body = {"error": {"code": "internal_error", "message": "internal server error"}}
        return web.json_response(body, status=500)


async def _on_store_thread(
    request: web.Request, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs
) -> T:
    return await request.app[CORE_KEY].run(lambda: fn(*args, **kwargs))


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


async def read_body(request: web.Request) -> bytes:
    """The request's body, refused (413) past `max_body_bytes` before it is read."""
    limit = request.app[CONFIG_KEY].max_body_bytes
    too_large = f"request body over the {limit}-byte limit"
    if request.content_length is not None and request.content_length > limit:
        raise BodyTooLargeError(too_large)
    try:
        return await request.read()
    except web.HTTPRequestEntityTooLarge as exc:
        raise BodyTooLargeError(too_large) from exc


async def json_body(request: web.Request) -> Any:
    data = await read_body(request)
    try:
        return json.loads(data, parse_constant=_reject_constant)
    except ValueError as exc:  # includes UnicodeDecodeError and JSONDecodeError
        raise MalformedJsonError(f"request body is not valid JSON: {exc}") from exc
    except RecursionError:  # nested past what the parser can follow (limit: protocol.nesting)
        raise MalformedJsonError("request body is nested too deep to parse") from None


_MAX_DIGITS = len(str(2**63 - 1))


def _int_param(request: web.Request, name: str, default: int, *, minimum: int) -> int:
    """The integer query parameter `name`: `minimum` to 2**63 - 1 (what SQLite stores)."""
    text = request.query.get(name)
    if text is None:
        return default
    # the length check comes first: int() of thousands of digits is slow, then refused
    if (
        not text.isascii()
        or not text.isdigit()
        or len(text) > _MAX_DIGITS
        or not minimum <= int(text) < 2**63
    ):
        raise BadRequestError(
            f"query parameter {name!r} must be an integer >= {minimum} and < 2**63"
        )
    return int(text)


def _page_params(request: web.Request) -> tuple[int, int]:
    config = request.app[CONFIG_KEY]
    since = _int_param(request, "since", 0, minimum=0)
    limit = _int_param(request, "limit", config.pull_limit_default, minimum=1)
    return since, min(limit, config.pull_limit_max)


def _json_response(body: bytes) -> web.Response:
    return web.Response(body=body, content_type="application/json")


async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok", "node": request.app[CONFIG_KEY].node_id})


def _history_param(request: web.Request) -> str | None:
    """The history id the replica knows (None: it knows none yet)."""
    history = request.query.get("history")
    if history is not None and not 0 < len(history) <= 64:
        raise BadRequestError("query parameter 'history' must be 1-64 characters")
    return history


async def push(request: web.Request) -> web.Response:
    user, sync = request[USER_KEY], request.app[SYNC_KEY]
    try:
        writes = decode_push(await read_body(request))
    except NotJsonError as exc:
        raise MalformedJsonError(f"request body is not valid JSON: {exc}") from exc
    except WireError as exc:
        raise BadRequestError(str(exc)) from exc
    result = await in_space(request, "write", lambda space: sync.push(space, writes, by=user))
    hub = request.app[HUB_KEY]
    if hub.listening(result.space):  # else numbering 1,000 changes would be for nobody
        hub.publish(
            result.space,
            Published(result.first_seq - 1, result.changes(), request.content_length or 0),
        )
    return _json_response(result.to_json_bytes())


async def pull(request: web.Request) -> web.Response:
    since, limit = _page_params(request)
    history = _history_param(request)
    sync = request.app[SYNC_KEY]
    page = await in_space(request, "read", lambda space: sync.pull(space, since, limit, history))
    changes = [c.to_wire() for c in page.changes]
    return _json_response(encode(WirePullAnswer(changes, page.cursor, page.has_more, sync.history)))


async def conflicts(request: web.Request) -> web.Response:
    since, limit = _page_params(request)
    sync = request.app[SYNC_KEY]
    page = await in_space(request, "read", lambda space: sync.conflicts(space, since, limit))
    conflicts = [conflict_to_wire(c) for c in page.conflicts]
    return _json_response(
        encode({"conflicts": conflicts, "cursor": page.cursor, "has_more": page.has_more})
    )


async def live(request: web.Request) -> web.WebSocketResponse:
    user = request[USER_KEY]
    since = _int_param(request, "since", 0, minimum=0) if "since" in request.query else None
    history = _history_param(request)
    sync, hub, config = request.app[SYNC_KEY], request.app[HUB_KEY], request.app[CONFIG_KEY]
    reader = request.app.get(CHANGE_READER_KEY)
    page_size = config.pull_limit_default
    ws = web.WebSocketResponse(heartbeat=30.0)
    # Subscribed before the access check: a removal committed after the check revokes
    # this subscription (`LiveHub.revoke`); one committed before it fails the check.
    space = requested_space(request)
    sub = hub.subscribe(user, space, ws)
    try:
        # a cursor that cannot go on is answered before the upgrade, as a pull would be
        await in_space(request, "read", lambda s: sync.check_cursor(s, since or 0, history))

        async def read_cursor() -> int:
            return await _on_store_thread(request, sync.cursor, space)

        async def read_page(after: int) -> ChangePage:
            if reader is not None:  # on the event loop: not queued behind pushes
                page = await reader.read_changes(space, after, page_size, config.page_max_bytes)
                if page is not None:
                    return page
            return await _on_store_thread(request, sync.page, space, after, page_size)

        try:
            await ws.prepare(request)
        except ConnectionResetError:  # the client left during the handshake: nobody to answer
            raise web.HTTPBadRequest(text="the client closed the connection") from None
        await LiveSession(sub, sync.history, read_cursor, read_page).serve(since)
    finally:
        hub.unsubscribe(sub)
    return ws
