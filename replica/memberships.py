"""`SpacesClient`: the app's calls to the spaces API: create shared spaces, manage members.

Syncing spaces is the `SyncClient`'s job (it follows membership changes by
itself); this client is what an app's "share" screen calls. Each call is one
request (``docs/protocol.md``, "Spaces"); a refusal is the `RequestRefusedError`
its answer names (`SpaceNotFoundError` for a space the user is not in, else
``code`` ``forbidden``, ``private_space``, ``last_admin``, ``too_many_spaces``),
a network failure a `TransportError`, an answer off the protocol a
`ProtocolError`.

Must not import `quietsync.server`.
"""

from __future__ import annotations

from urllib.parse import quote

import attrs

from quietsync.protocol import (
    Role,
    WireMember,
    WireMembersAnswer,
    WireSpace,
    check_name,
)
from quietsync.replica.http import HttpClient
from quietsync.replica.transport import SpaceInfo, decode_spaces, decode_wire

__all__ = ["SpaceMember", "SpacesClient"]


@attrs.frozen
class SpaceMember:
    user: str
    role: Role


def _space_path(space: str, *rest: str) -> str:
    return "/".join(["/v1/spaces", quote(space, safe=""), *(quote(p, safe="") for p in rest)])


class SpacesClient:
    """The spaces API of the server at `url`, as the user of `token` (module docstring)."""

    def __init__(self, url: str, *, token: str) -> None:
        self._http = HttpClient(url, token=token, max_answer_bytes=16 * 1024 * 1024)

    async def close(self) -> None:
        await self._http.close()

    async def __aenter__(self) -> SpacesClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def list(self) -> list[SpaceInfo]:
        """The user's spaces: the private one first, then the shared ones, oldest first."""
        return decode_spaces(await self._http.body("GET", "/v1/spaces"))

    async def create(self, name: str) -> SpaceInfo:
        """A new shared space named `name` (1-200 characters); the user is its admin."""
        data = await self._http.body("POST", "/v1/spaces", json={"name": name})
        space: WireSpace = decode_wire(data, WireSpace, "a new space")
        return SpaceInfo(space.id, space.name, space.role, space.private)

    async def members(self, space: str) -> list[SpaceMember]:
        data = await self._http.body("GET", _space_path(space, "members"))
        answer: WireMembersAnswer = decode_wire(data, WireMembersAnswer, "a members answer")
        return [SpaceMember(m.user, m.role) for m in answer.members]

    async def set_role(self, space: str, user: str, role: Role) -> SpaceMember:
        """Add `user` to `space` as `role`, or change their role (the caller is its admin)."""
        path = _space_path(space, "members", check_name("key", user))
        data = await self._http.body("PUT", path, json={"role": role})
        member: WireMember = decode_wire(data, WireMember, "a member")
        return SpaceMember(member.user, member.role)

    async def remove(self, space: str, user: str) -> None:
        """Remove `user` from `space` (an admin's call), or leave it (`user` is the caller)."""
        await self._http.body("DELETE", _space_path(space, "members", check_name("key", user)))
