"""`Notifications`: the synced notification records and muted threads, for views and the tracker.

Record shapes (``conflicts.jobs``):

* ``notifications/<key>``: thread_id, type (``ai.message.received`` or
  ``system.warning``), title, body, read_at (ms or None), created_at (ms),
  job_id. A job's notification has the deterministic key
  ``job:<job_id>:<status>`` and fields derived from the job's final event
  alone (`conflicts.jobs.notification_for`), so the server and this client
  writing it produce one record with identical content (suppressed, not a
  conflict).
* ``muted_threads/<thread_id>``: ``{"muted": bool}`` — one record per thread,
  so two devices muting different threads never overwrite each other.

Everything is written with `Replica.put`, so it syncs like any user data.

Must not import `server`.
"""

from __future__ import annotations

import builtins
from typing import Any

from quietsync.conflicts import wall_clock_ms
from quietsync.protocol import check_name
from quietsync.protocol.jobs import MUTED_THREADS, NOTIFICATIONS, JobEvent, notification_for
from quietsync.replica.replica import Replica

__all__ = ["Notifications"]


class Notifications:
    """Read, mark read, mute: the notification centre over one replica."""

    def __init__(self, replica: Replica) -> None:
        self._replica = replica

    def list(
        self, thread_id: str | None = None, *, unread_only: bool = False
    ) -> builtins.list[dict[str, Any]]:
        """Notifications (fields plus ``id``), newest first; of one thread if given."""
        where = None if thread_id is None else {"thread_id": check_name("key", thread_id)}
        keys = self._replica.keys(NOTIFICATIONS, where, order_by="created_at")
        records = self._replica.query(NOTIFICATIONS, where, order_by="created_at")
        found = [{"id": k, **r} for k, r in zip(keys, records, strict=True)]
        if unread_only:
            found = [n for n in found if n.get("read_at") is None]
        return found[::-1]

    def mark_read(self, notification_id: str) -> None:
        """Set ``read_at`` (now, in ms) unless already read; `KeyError` if there is no such one."""
        record = self._replica.get(NOTIFICATIONS, check_name("key", notification_id))
        if record is None:
            raise KeyError(f"no notification {notification_id!r}")
        if record.get("read_at") is None:
            self._replica.put(NOTIFICATIONS, notification_id, {"read_at": wall_clock_ms()})

    def mute(self, thread_id: str) -> None:
        """No completion notifications for this thread (on every synced device)."""
        self._replica.put(MUTED_THREADS, check_name("key", thread_id), {"muted": True})

    def unmute(self, thread_id: str) -> None:
        self._replica.put(MUTED_THREADS, check_name("key", thread_id), {"muted": False})

    def is_muted(self, thread_id: str) -> bool:
        record = self._replica.get(MUTED_THREADS, check_name("key", thread_id))
        return bool(record and record.get("muted") is True)

    def notify_job_end(self, thread_id: str, final: JobEvent, content: str) -> str | None:
        """Write the notification for a job that ended unwatched; its key, or None if muted.

        A record the server already wrote (synced in) makes this a no-op put.
        """
        if self.is_muted(thread_id):
            return None
        key, fields = notification_for(thread_id, final, content)
        existing = self._replica.get(NOTIFICATIONS, key)
        if existing is not None and existing.get("read_at") is not None:
            fields = {**fields, "read_at": existing["read_at"]}  # never un-read it
        self._replica.put(NOTIFICATIONS, key, fields)
        return key
