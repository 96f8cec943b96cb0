"""Bearer-token authentication: every ``/v1`` endpoint but health and the API description
needs a known token.

The token comes from ``Authorization: Bearer <token>``; for the WebSocket
endpoint ``/v1/live`` a ``?token=`` query parameter is accepted too, because
browsers cannot set headers on a WebSocket handshake. The user id the token
maps to is stored under `server.keys.USER_KEY`; handlers read it from there
and pass it to every store call, which is what keeps users apart.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, Mapping

from aiohttp import web

from quietsync.server.errors import UnauthorizedError
from quietsync.server.keys import CONFIG_KEY, USER_KEY
from quietsync.server.routes import OPENAPI_PATH

__all__ = ["LIVE_PATH", "PUBLIC_PATHS", "auth_middleware", "find_user"]

PUBLIC_PATHS = frozenset({"/v1/health", OPENAPI_PATH})
LIVE_PATH = "/v1/live"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def find_user(tokens: Mapping[str, str], token: str) -> str | None:
    """The user of `token`, comparing in constant time against every known token.

    aiohttp decodes header bytes that are not UTF-8 (``\\xff``) as lone
    surrogates: they are encoded as they are (``surrogatepass``), so they
    match no token instead of failing to encode (a 500). Known tokens are
    valid UTF-8 (`quietsync.server.config.parse_tokens`).
    """
    found = None
    given = token.encode("utf-8", "surrogatepass")
    for known, user in tokens.items():
        if hmac.compare_digest(known.encode(), given):
            found = user
    return found


def _token_of(request: web.Request) -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    if request.path == LIVE_PATH and request.query.get("token"):
        return request.query["token"]
    if header:
        raise UnauthorizedError("the Authorization header must be 'Bearer <token>'")
    raise UnauthorizedError("missing bearer token (Authorization: Bearer <token>)")


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path.startswith("/v1/") and request.path not in PUBLIC_PATHS:
        user = find_user(request.app[CONFIG_KEY].tokens, _token_of(request))
        if user is None:
            raise UnauthorizedError("unknown bearer token")
        request[USER_KEY] = user
    return await handler(request)
