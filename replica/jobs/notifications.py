"""`Notifications`: the synced notification records and muted threads, for views and the tracker.

Record shapes (``quietsync.protocol.jobs``):

* ``notifications/<key>``: thread_id, type, title, body, read_at (ms or
  None), created_at (ms), and job_id for a job's. Keys are deterministic, so
  the same notification written twice (by a retry, a restart, or by the
  server and this client) is one record:

  * ``job:<job_id>:<status>``: a job that ended unwatched
    (``ai.message.received`` or ``system.warning``), every field derived from
    its final event alone (`quietsync.protocol.jobs.notification_for`), so the
    server's copy and this client's are identical content (suppressed, not a
    conflict);
  * ``sync.refused:<cause>``: writes the server refused for good
    (``system.warning``), from `SyncClient(on_refused=notes.write_refused)`.
    One per cause (the refusal's code: ``clock_drift``, ``kind_mismatch``,
    ``body_too_large``, ...), written again only once the user has read it,
    and never about the refusal of a ``sync.*`` notification itself: a
    notification about refusals must not be able to feed on itself (a fast
    clock gets every write refused, this one included). The ``clock_drift``
    one tells the user to set the device's clock right;
  * ``sync.conflict:<digest of collection, key, field>``: concurrent edits of
    one field (``sync.conflict``), from
    `SyncClient(on_conflicts=notes.write_conflicts)`.

* ``muted_threads/<thread_id>``: ``{"muted": bool}`` — one record per thread,
  so two devices muting different threads never overwrite each other.

Everything is written with `Replica.put`, so it syncs like any user data.
Both collections live in the user's private space (a `Replica` is its view),
whatever space a job's thread is in: notifications go to people, not spaces,
and the server writes its copy and reads the mute there too
(``docs/protocol.md``, "How the job writes").
"""

from __future__ import annotations

import builtins
import hashlib
import json
from collections.abc import Iterable
from typing import Any

from quietsync.conflicts import Conflict, wall_clock_ms
from quietsync.protocol import check_name
from quietsync.protocol.jobs import MUTED_THREADS, NOTIFICATIONS, JobEvent, notification_for
from quietsync.replica.outbox import RefusedMutation
from quietsync.replica.replica import Replica

__all__ = ["Notifications", "conflict_key", "refused_key"]

_PREVIEW = 140


_SYNC_KEYS = "sync."
_CLOCK_DRIFT = "clock_drift"


def refused_key(cause: str) -> str:
    """The one notification key of a refusal cause (a refusal code such as ``clock_drift``)."""
    return f"{_SYNC_KEYS}refused:{cause}"


def _cause(reason: str) -> str:
    """The code a refusal reason starts with (``"<code>: <why>"``, `SyncClient`)."""
    return reason.partition(":")[0].strip() or "refused"


def _about_sync(item: RefusedMutation) -> bool:
    return item.mutation.collection == NOTIFICATIONS and item.mutation.key.startswith(_SYNC_KEYS)


def _refused_body(cause: str, items: builtins.list[RefusedMutation]) -> str:
    if cause == _CLOCK_DRIFT:
        return (
            "This device's clock is wrong (ahead of the server's), so the server refused "
            f"{len(items)} write(s). Set the clock right; writes made meanwhile are set aside."
        )
    return f"The server refused {len(items)} write(s): {items[0].reason}"


def conflict_key(conflict: Conflict) -> str:
    """One key per (collection, key, field): names can be long, so they are hashed."""
    ref = json.dumps([conflict.collection, conflict.key, conflict.field])
    return f"sync.conflict:{hashlib.sha256(ref.encode()).hexdigest()[:32]}"


def _sync_fields(kind: str, title: str, body: str) -> dict[str, Any]:
    return {
        "thread_id": None,
        "type": kind,
        "title": title,
        "body": body[:_PREVIEW],
        "read_at": None,
        "created_at": wall_clock_ms(),
    }


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

    def write_refused(self, refused: Iterable[RefusedMutation]) -> None:
        """One unread ``system.warning`` per refusal cause (`SyncClient`'s ``on_refused``).

        Refusals of ``sync.*`` notifications are not told (module docstring).
        """
        causes: dict[str, builtins.list[RefusedMutation]] = {}
        for item in refused:
            if not _about_sync(item):
                causes.setdefault(_cause(item.reason), []).append(item)
        with self._replica.transaction():
            for cause, items in causes.items():
                key = refused_key(cause)
                existing = self._replica.get(NOTIFICATIONS, key)
                if existing is not None and existing.get("read_at") is None:
                    continue  # told already; the user has not seen it yet
                fields = _sync_fields(
                    "system.warning", "Write refused", _refused_body(cause, items)
                )
                self._replica.put(NOTIFICATIONS, key, fields)

    def write_conflicts(self, conflicts: Iterable[Conflict]) -> None:
        """One ``sync.conflict`` per field that has none yet (`SyncClient`'s ``on_conflicts``)."""
        with self._replica.transaction():
            for conflict in conflicts:
                key = conflict_key(conflict)
                if self._replica.get(NOTIFICATIONS, key) is not None:
                    continue
                where = f"{conflict.collection}/{conflict.key}.{conflict.field}"
                winner, loser = conflict.winner, conflict.loser
                body = (
                    f"{where}: {json.dumps(winner.value)[:60]} (from {winner.node}) "
                    f"replaced {json.dumps(loser.value)[:60]} (from {loser.node})"
                )
                fields = _sync_fields("sync.conflict", "Conflicting edits", body)
                self._replica.put(NOTIFICATIONS, key, fields)
