"""Following the user's conflict log, so every replica lists the conflicts of its user.

The server detects each conflict once, answers it to the replica whose push
caused it, and keeps it in the user's conflict log (``GET /v1/conflicts``,
``docs/protocol.md`` "Conflicts"). Without more, only the pushing replica
heard of it: the replica whose write lost, or a replica opened later, had
nothing to show. So each replica follows the log:

* **From its own position.** The position is stored in the replica's meta
  table with the server history it was read in, in the same transaction as
  the conflicts of the page; a position means nothing in another history,
  so after a resync the log is read again from 0.
* **Page by page, after each pull** (`SyncClient` calls `follow_conflicts`
  once its pull is complete). A page claiming more but not moving the
  position forward is a `ProtocolError`, never a loop.
* **Each conflict once.** The replica's conflict log stores each conflict
  once, whichever way it came (a push answer or this log), so only the
  conflicts new to this replica are returned, for the app's
  ``on_conflicts``.

Must not import `quietsync.server`.
"""

from __future__ import annotations

from quietsync.conflicts import Conflict
from quietsync.replica.errors import ProtocolError
from quietsync.replica.sync_port import SyncPort
from quietsync.replica.transport import Transport

__all__ = ["follow_conflicts"]


async def follow_conflicts(port: SyncPort, transport: Transport, limit: int) -> list[Conflict]:
    """Read the conflict log of `port`'s space to its end (pages of `limit`); the conflicts
    new here."""
    new: list[Conflict] = []
    while True:
        since = port.conflict_position
        page = await transport.conflicts(since, limit, port.space)
        if page.has_more and page.cursor <= since:
            raise ProtocolError(
                f"the conflict log claims more after position {since} "
                f"but its page ends at {page.cursor}"
            )
        new += port.record_conflict_page(page.conflicts, page.cursor)
        if not page.has_more:
            return new
