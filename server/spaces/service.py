"""`SpaceService`: who may do what in which space, and the membership changes.

The rules (``docs/protocol.md``, "Spaces"):

* A user's private space (`quietsync.protocol.private_space`) is theirs
  alone, as admin; its membership cannot change (`PrivateSpaceError`).
* Any other id is a shared space's. A request naming a space the caller is
  not a member of gets `SpaceNotFoundError`, exactly as for a space that does
  not exist: an id, guessed or stale, reveals nothing. A member without the
  role the request needs gets `ForbiddenError` (they know the space exists).
* Roles: ``read`` (pull, live, conflicts, members, a job's events), ``write``
  (and push, start and abort jobs), ``admin`` (and change members). Any
  member may leave; a space always keeps one admin (`LastAdminError`).
* A user is in at most `max_per_user` shared spaces (`TooManySpacesError`),
  so one user cannot grow another's list (or the server) without bound.

Every method runs on the store's worker thread, like the store; the views
call them in the same store-thread call as the request's own work, so a
removal and a pull never interleave: once a removal has committed, no read
of the space by the removed member can start.
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Callable

from quietsync.conflicts import wall_clock_ms
from quietsync.protocol import (
    PRIVATE_PREFIX,
    SHARED_PREFIX,
    SPACE_ID_MAX,
    Role,
    WireSpace,
    private_space,
    role_allows,
)
from quietsync.server.errors import (
    ForbiddenError,
    LastAdminError,
    PrivateSpaceError,
    SpaceNotFoundError,
    TooManySpacesError,
)
from quietsync.server.spaces.store import Member, SpaceStore
from quietsync.server.store import Store

__all__ = ["SpaceService", "new_space_id"]


def new_space_id() -> str:
    """A fresh shared space id: 128 random bits, as 26 lowercase base32 characters."""
    return SHARED_PREFIX + base64.b32encode(secrets.token_bytes(16)).decode().rstrip("=").lower()


class SpaceService:
    """Access checks and membership changes over a `SpaceStore` (module docstring)."""

    def __init__(
        self,
        spaces: SpaceStore,
        store: Store,
        *,
        max_per_user: int,
        wall: Callable[[], int] = wall_clock_ms,
    ) -> None:
        self._spaces = spaces
        self._store = store
        self._max_per_user = max_per_user
        self._wall = wall

    def require(self, user: str, space: str, needed: Role) -> Role:
        """`user`'s role in `space`, if it allows `needed`; else the error to answer."""
        role = self._role(user, space)
        if role is None:
            raise SpaceNotFoundError()
        if not role_allows(role, needed):
            raise ForbiddenError(f"this needs the {needed!r} role in the space; yours is {role!r}")
        return role

    def can_read(self, user: str, space: str) -> bool:
        return self._role(user, space) is not None

    def readers(self, space: str) -> list[str]:
        """Every user who may read `space`, oldest member first (a private space: its owner).

        For what the server writes on behalf of a whole space (a job's
        completion notifications), decided in the transaction that writes it.
        """
        if space.startswith(PRIVATE_PREFIX):
            return [space.removeprefix(PRIVATE_PREFIX)]
        return [m.user for m in self._spaces.members(space)]

    def list(self, user: str) -> list[WireSpace]:
        """`user`'s spaces: the private one first, then the shared ones, oldest first."""
        private = WireSpace(private_space(user), "private", "admin", private=True)
        shared = [
            WireSpace(m.space, m.name, m.role, private=False)
            for m in self._spaces.memberships(user)
        ]
        return [private, *shared]

    def create(self, user: str, name: str) -> WireSpace:
        """A new shared space named `name`, with `user` its admin."""
        self._check_room(user)
        space = new_space_id()
        with self._store.write_transaction() as tx:
            self._spaces.create(tx, space, name, user, self._wall())
        return WireSpace(space, name, "admin", private=False)

    def members(self, user: str, space: str) -> list[Member]:
        self.require(user, space, "read")
        if space == private_space(user):
            return [Member(user, "admin")]
        return self._spaces.members(space)

    def set_role(self, user: str, space: str, member: str, role: Role) -> Member:
        """Make `member` a member of `space` as `role` (`user` must be its admin)."""
        self._shared(user, space, "admin")
        with self._store.write_transaction() as tx:
            current = self._spaces.role(space, member)
            if current is None:
                self._check_room(member)
            elif current == "admin" and role != "admin":
                self._keep_an_admin(space)
            self._spaces.set_role(tx, space, member, role, self._wall())
        return Member(member, role)

    def remove(self, user: str, space: str, member: str) -> bool:
        """`member` leaves `space` (their choice, or an admin's); False if they were not in it."""
        self._shared(user, space, "read" if member == user else "admin")
        with self._store.write_transaction() as tx:
            current = self._spaces.role(space, member)
            if current is None:
                return False
            if current == "admin":
                self._keep_an_admin(space)
            self._spaces.remove(tx, space, member)
        return True

    def _role(self, user: str, space: str) -> Role | None:
        if space == private_space(user):
            return "admin"
        if not space.startswith(SHARED_PREFIX) or len(space) > SPACE_ID_MAX:
            return None
        return self._spaces.role(space, user)

    def _shared(self, user: str, space: str, needed: Role) -> None:
        self.require(user, space, needed)
        if space == private_space(user):
            raise PrivateSpaceError("a private space has one member, always: share another space")

    def _check_room(self, user: str) -> None:
        if len(self._spaces.memberships(user)) >= self._max_per_user:
            raise TooManySpacesError(
                f"{user!r} is in {self._max_per_user} shared spaces already, the most allowed"
            )

    def _keep_an_admin(self, space: str) -> None:
        if sum(m.role == "admin" for m in self._spaces.members(space)) <= 1:
            raise LastAdminError(
                "a space keeps at least one admin: make another member admin first"
            )
