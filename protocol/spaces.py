"""Spaces on the wire: their ids, the roles of their members, and the spaces API's bodies.

Every record lives in a space (``docs/protocol.md``, "Spaces"). Each user has
one private space, implicit and never shared, whose id is `private_space` of
the user id; a shared space has an id the server draws at random
(`SHARED_PREFIX` and 26 base32 characters). The two prefixes keep the two
kinds of id apart whatever the user ids are. Requests name a space with the
``space`` query parameter; without it they mean the caller's private space,
so a client that knows nothing of spaces works as before.
"""

from __future__ import annotations

from typing import Annotated, Final, Literal

import msgspec

__all__ = [
    "PRIVATE_PREFIX",
    "REVOKED_CLOSE_CODE",
    "ROLES",
    "SHARED_PREFIX",
    "SPACE_ID_MAX",
    "Role",
    "WireMember",
    "WireMembersAnswer",
    "WireNewSpace",
    "WireRoleChange",
    "WireSpace",
    "WireSpacesAnswer",
    "private_space",
    "role_allows",
]

PRIVATE_PREFIX: Final = "u:"
SHARED_PREFIX: Final = "s:"
SPACE_ID_MAX: Final = 128
REVOKED_CLOSE_CODE: Final = 4003
"""The close code of a live socket whose user lost read access to its space."""

Role = Literal["read", "write", "admin"]
ROLES: Final[tuple[Role, ...]] = ("read", "write", "admin")
"""Lowest first: each role may do everything the ones before it may."""


def private_space(user: str) -> str:
    """The id of `user`'s private space."""
    return PRIVATE_PREFIX + user


def role_allows(role: Role, needed: Role) -> bool:
    """True if a member with `role` may do what needs `needed`."""
    return ROLES.index(role) >= ROLES.index(needed)


_SpaceId = Annotated[str, msgspec.Meta(min_length=1, max_length=SPACE_ID_MAX)]
_SpaceName = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
_UserId = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]


class WireSpace(msgspec.Struct, frozen=True):
    """A space the caller is a member of, with the caller's role in it."""

    id: _SpaceId
    name: _SpaceName
    role: Role
    private: bool


class WireSpacesAnswer(msgspec.Struct, frozen=True):
    spaces: list[WireSpace]


class WireNewSpace(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The body of ``POST /v1/spaces``."""

    name: _SpaceName


class WireRoleChange(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The body of ``PUT /v1/spaces/{id}/members/{user}``."""

    role: Role


class WireMember(msgspec.Struct, frozen=True):
    user: _UserId
    role: Role


class WireMembersAnswer(msgspec.Struct, frozen=True):
    members: list[WireMember]
