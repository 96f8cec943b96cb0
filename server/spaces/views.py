"""HTTP handlers of the spaces API.

``GET/POST /v1/spaces``, ``GET /v1/spaces/{id}/members``,
``PUT/DELETE /v1/spaces/{id}/members/{user}`` (``docs/protocol.md``,
"Spaces"). A membership change is told to the live hub after it committed:
a removed member's sockets on the space close (`LiveHub.revoke`), and the
member's private sockets hear ``{"type": "spaces"}`` (the creator's, for a
new space).
"""

from __future__ import annotations

from typing import Any, TypeVar

import msgspec
from aiohttp import web

from quietsync.protocol import (
    WireMember,
    WireMembersAnswer,
    WireNewSpace,
    WireRoleChange,
    WireSpacesAnswer,
    encode,
)
from quietsync.server.errors import BadRequestError, MalformedJsonError
from quietsync.server.keys import CORE_KEY, HUB_KEY, SPACES_KEY, USER_KEY
from quietsync.server.views import read_body

__all__ = ["add_routes"]

T = TypeVar("T")


async def _decode(request: web.Request, kind: type[T]) -> T:
    body = await read_body(request)
    try:
        return msgspec.json.decode(body, type=kind)
    except msgspec.ValidationError as exc:
        raise BadRequestError(f"request body: {exc}") from None
    except msgspec.DecodeError as exc:
        raise MalformedJsonError(f"request body is not valid JSON: {exc}") from None


def _json(body: Any, status: int = 200) -> web.Response:
    return web.Response(body=encode(body), status=status, content_type="application/json")


def _member_param(request: web.Request) -> str:
    member = request.match_info["user"]
    if not 0 < len(member) <= 128:
        raise BadRequestError("a user id is 1-128 characters")
    return member


async def list_spaces(request: web.Request) -> web.Response:
    spaces, user = request.app[SPACES_KEY], request[USER_KEY]
    found = await request.app[CORE_KEY].run(lambda: spaces.list(user))
    return _json(WireSpacesAnswer(found))


async def create_space(request: web.Request) -> web.Response:
    body = await _decode(request, WireNewSpace)
    spaces, user = request.app[SPACES_KEY], request[USER_KEY]
    space = await request.app[CORE_KEY].run(lambda: spaces.create(user, body.name))
    request.app[HUB_KEY].spaces_changed(user)  # the creator's other devices follow it too
    return _json(space, status=201)


async def members(request: web.Request) -> web.Response:
    spaces, user, space = request.app[SPACES_KEY], request[USER_KEY], request.match_info["space"]
    found = await request.app[CORE_KEY].run(lambda: spaces.members(user, space))
    return _json(WireMembersAnswer([WireMember(m.user, m.role) for m in found]))


async def set_member(request: web.Request) -> web.Response:
    member = _member_param(request)
    body = await _decode(request, WireRoleChange)
    spaces, user, space = request.app[SPACES_KEY], request[USER_KEY], request.match_info["space"]
    changed = await request.app[CORE_KEY].run(
        lambda: spaces.set_role(user, space, member, body.role)
    )
    request.app[HUB_KEY].spaces_changed(member)
    return _json(WireMember(changed.user, changed.role))


async def remove_member(request: web.Request) -> web.Response:
    member = _member_param(request)
    spaces, user, space = request.app[SPACES_KEY], request[USER_KEY], request.match_info["space"]
    removed = await request.app[CORE_KEY].run(lambda: spaces.remove(user, space, member))
    if removed:
        hub = request.app[HUB_KEY]
        hub.revoke(member, space)
        hub.spaces_changed(member)
    return web.Response(status=204)


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/v1/spaces", list_spaces)
    router.add_post("/v1/spaces", create_space)
    router.add_get("/v1/spaces/{space}/members", members)
    router.add_put("/v1/spaces/{space}/members/{user}", set_member)
    router.add_delete("/v1/spaces/{space}/members/{user}", remove_member)
