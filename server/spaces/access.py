"""How every handler finds the space it acts on, and checks the caller may.

A request names its space with ``?space=`` (the caller's private space
without it); `in_space` runs the handler's store work once
`SpaceService.require` allows it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from aiohttp import web

from quietsync.protocol import SPACE_ID_MAX, Role, private_space
from quietsync.server.errors import SpaceNotFoundError
from quietsync.server.keys import CORE_KEY, SPACES_KEY, USER_KEY

__all__ = ["in_space", "requested_space"]

T = TypeVar("T")


def requested_space(request: web.Request) -> str:
    """The space a request names with ``?space=`` (the caller's private space without it)."""
    space = request.query.get("space")
    if space is None:
        return private_space(request[USER_KEY])
    if not 0 < len(space) <= SPACE_ID_MAX:
        raise SpaceNotFoundError()
    return space


async def in_space(request: web.Request, needed: Role, fn: Callable[[str], T]) -> T:
    """``fn(space)`` on the store thread, once the caller's role in the space allows `needed`.

    The check and `fn` run in one store-thread call, so a membership change
    cannot slip between them.
    """
    user, space, spaces = request[USER_KEY], requested_space(request), request.app[SPACES_KEY]

    def checked() -> T:
        spaces.require(user, space, needed)
        return fn(space)

    return await request.app[CORE_KEY].run(checked)
