"""The notification records the sync client writes: refused mutations and (opt-in) conflicts.

Notifications are ordinary records of the synced `notifications` collection
(``thread_id``, ``type``, ``title``, ``body``, ``read_at``, ``created_at``), so
every replica of the user sees them. Keys are deterministic (per refused
mutation id; per conflicting record and field), so writing the same
notification twice, from a retry or a restart, is one record.

Must not import `server`.
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

from quietsync.conflicts import Conflict
from quietsync.protocol import NOTIFICATIONS
from quietsync.replica.replica import Replica

__all__ = ["conflict_key", "notify_conflict", "notify_refused", "refused_key"]

_PREVIEW = 140


def refused_key(mutation_id: str) -> str:
    return f"sync.refused:{mutation_id}"


def conflict_key(conflict: Conflict) -> str:
    """One key per (collection, key, field): names can be long, so they are hashed."""
    ref = json.dumps([conflict.collection, conflict.key, conflict.field])
    return f"sync.conflict:{hashlib.sha256(ref.encode()).hexdigest()[:32]}"


def _fields(kind: str, title: str, body: str) -> dict[str, Any]:
    return {
        "thread_id": None,
        "type": kind,
        "title": title,
        "body": body[:_PREVIEW],
        "read_at": None,
        "created_at": int(time.time() * 1000),
    }


def notify_refused(replica: Replica, mutation_id: str, reason: str) -> None:
    """Write the `system.warning` telling the user a write was set aside (in the caller's tx)."""
    body = f"The server refused write {mutation_id}: {reason}"
    fields = _fields("system.warning", "Write refused", body)
    replica.put(NOTIFICATIONS, refused_key(mutation_id), fields)


def notify_conflict(replica: Replica, conflict: Conflict) -> bool:
    """Write a `sync.conflict` notification unless one exists for that field; True if written."""
    key = conflict_key(conflict)
    if replica.get(NOTIFICATIONS, key) is not None:
        return False
    where = f"{conflict.collection}/{conflict.key}.{conflict.field}"
    body = (
        f"{where}: {json.dumps(conflict.winner.value)[:60]} (from {conflict.winner.node}) "
        f"replaced {json.dumps(conflict.loser.value)[:60]} (from {conflict.loser.node})"
    )
    replica.put(NOTIFICATIONS, key, _fields("sync.conflict", "Conflicting edits", body))
    return True
