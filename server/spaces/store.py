"""The storage interface of memberships: which users are in which shared space, as what.

Memberships are data the server owns: no push can write them, only the
spaces API (`quietsync.server.spaces.service`). A private space has no rows
here: its one member is implied by its id (`quietsync.protocol.private_space`).
Like the sync store, a backend is synchronous and called from the store's one
worker thread; its writes go inside a `WriteTransaction` of the sync store, so
a membership change commits with whatever it goes with, or not at all.
"""

from __future__ import annotations

from typing import Protocol

import attrs

from quietsync.protocol import Role
from quietsync.server.store import WriteTransaction

__all__ = ["Member", "Membership", "SpaceStore"]


@attrs.frozen
class Membership:
    """A shared space as one of its members sees it: its id, name and the member's role."""

    space: str
    name: str
    role: Role


@attrs.frozen
class Member:
    user: str
    role: Role


class SpaceStore(Protocol):
    def role(self, space: str, user: str) -> Role | None:
        """`user`'s role in shared space `space` (None: not a member, or no such space)."""
        ...

    def memberships(self, user: str) -> list[Membership]:
        """The shared spaces `user` is a member of, oldest membership first."""
        ...

    def members(self, space: str) -> list[Member]:
        """The members of `space`, oldest first."""
        ...

    def create(self, tx: WriteTransaction, space: str, name: str, admin: str, now_ms: int) -> None:
        """Create shared space `space` named `name` with `admin` its one member, an admin."""
        ...

    def set_role(
        self, tx: WriteTransaction, space: str, user: str, role: Role, now_ms: int
    ) -> None:
        """Make `user` a member of `space` with `role` (or change their role)."""
        ...

    def remove(self, tx: WriteTransaction, space: str, user: str) -> None:
        """`user` is no longer a member of `space`."""
        ...
