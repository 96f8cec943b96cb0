"""Spaces: shared data between users, with members and roles the server enforces.

`service.SpaceService` holds the rules, `store.SpaceStore` the memberships
(`sqlite_store.SQLiteSpaceStore` beside the SQLite sync store), `views` the
HTTP API and the access check every other handler goes through.
"""

from quietsync.server.spaces.service import SpaceService
from quietsync.server.spaces.store import Member, Membership, SpaceStore

__all__ = ["Member", "Membership", "SpaceService", "SpaceStore"]
