"""The jobs protocol, as both sides see it: record shapes, events, the header, notifications.

Pure data shared by the server's jobs feature (`quietsync.server.jobs`) and the
client's stream tracker (`quietsync.replica.jobs`), which must not import each
other. The HTTP side is documented in ``docs/protocol.md`` ("Jobs").

**Field ownership.** An assistant message's `JOB_FIELDS` (content, pending,
job_id, job_status, error) belong to the job: only the server writes them, with
its own stamps. The client never pushes them; it mirrors the server's writes
into its replica with the *server's* stamps (from the job events), so the same
write arriving later through sync is a duplicate, not a conflict. The client
owns the fields the job never touches (thread_id, role, created_at).

**Events.** Every `JobEvent` describes the job's state after one flush and
carries that flush's stamp: the stamp the server gave the message fields it
wrote in the same flush. `content_length` is the length of the whole content
so far; a delta's text starts at `offset`.

**Notifications.** When a job ends while nobody watches it, a notification
record is written — possibly by both the server and the client. Its key and
every field are derived from the final event alone (`notification_for`), so the
two writes are identical content: suppressed, one record.
"""

from __future__ import annotations

from typing import Any, Final, Literal, Self

import attrs

from quietsync.conflicts.hlc import HLC
from quietsync.protocol.errors import WireError

__all__ = [
    "FINAL_STATUSES",
    "JOB_FIELDS",
    "JOB_ID_HEADER",
    "JOB_STATUSES",
    "MESSAGES",
    "MUTED_THREADS",
    "NOTIFICATIONS",
    "EventType",
    "JobEvent",
    "JobStatus",
    "notification_for",
]

JOB_ID_HEADER: Final = "X-Quietsync-Job-Id"
"""The header of a hybrid start's answer that carries the job id, before the first token."""

MESSAGES: Final = "messages"
NOTIFICATIONS: Final = "notifications"
MUTED_THREADS: Final = "muted_threads"
"""One record per muted thread (key = thread id) with ``{"muted": bool}``."""

JOB_FIELDS: Final = frozenset({"content", "pending", "job_id", "job_status", "error"})

JobStatus = Literal["streaming", "complete", "error", "aborted"]
JOB_STATUSES: Final = ("streaming", "complete", "error", "aborted")
FINAL_STATUSES: Final = frozenset({"complete", "error", "aborted"})

EventType = Literal["snapshot", "delta", "status", "keepalive"]
_EVENT_TYPES: Final = ("snapshot", "delta", "status", "keepalive")
_BODY_PREVIEW: Final = 140


@attrs.frozen
class JobEvent:
    """One event of a job's stream.

    * ``snapshot``: `text` is the content from `offset` to `content_length`
      (sent first on every attach);
    * ``delta``: `text` was appended at `offset`;
    * ``status``: the job ended (`status` final, `error` set on error);
    * ``keepalive``: nothing happened; no stamp.
    """

    type: EventType
    job_id: str
    status: JobStatus = "streaming"
    offset: int = 0
    text: str = ""
    content_length: int = 0
    error: str | None = None
    stamp: HLC | None = None

    @property
    def final(self) -> bool:
        return self.status in FINAL_STATUSES

    @classmethod
    def ending(
        cls, job_id: str, status: JobStatus, *, content_length: int, error: str | None, stamp: HLC
    ) -> Self:
        """The ``status`` event that ends a job's stream, the one `notification_for` reads.

        Its offset is the content's length and its text empty: everything was
        sent before it, as deltas.
        """
        return cls(
            "status",
            job_id,
            status,
            offset=content_length,
            content_length=content_length,
            error=error,
            stamp=stamp,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "job_id": self.job_id,
            "status": self.status,
            "offset": self.offset,
            "text": self.text,
            "content_length": self.content_length,
            "error": self.error,
            "stamp": None if self.stamp is None else str(self.stamp),
        }

    @classmethod
    def from_json(cls, obj: Any) -> Self:
        """Decode and validate; `WireError` names the first bad member."""
        if not isinstance(obj, dict):
            raise WireError(f"a job event must be a JSON object, got {obj!r:.80}")
        kind = obj.get("type")
        if kind not in _EVENT_TYPES:
            raise WireError(f"'type' must be one of {', '.join(_EVENT_TYPES)}, got {kind!r}")
        status = obj.get("status", "streaming")
        if status not in JOB_STATUSES:
            raise WireError(f"'status' must be one of {', '.join(JOB_STATUSES)}, got {status!r}")
        job_id, text, error = obj.get("job_id"), obj.get("text", ""), obj.get("error")
        if not isinstance(job_id, str) or not job_id:
            raise WireError(f"'job_id' must be a non-empty string, got {job_id!r}")
        if not isinstance(text, str):
            raise WireError(f"'text' must be a string, got {text!r:.80}")
        if error is not None and not isinstance(error, str):
            raise WireError(f"'error' must be a string or null, got {error!r:.80}")
        numbers = {}
        for member in ("offset", "content_length"):
            value = obj.get(member, 0)
            if type(value) is not int or value < 0:
                raise WireError(f"{member!r} must be a non-negative integer, got {value!r}")
            numbers[member] = value
        if numbers["offset"] + len(text) > numbers["content_length"]:
            raise WireError("'offset' + len('text') exceeds 'content_length'")
        stamp = obj.get("stamp")
        try:
            parsed = None if stamp is None else HLC.parse(stamp)
        except ValueError as exc:
            raise WireError(f"'stamp': {exc}") from None
        if parsed is None and kind != "keepalive":
            raise WireError(f"a {kind} event needs a 'stamp'")
        return cls(kind, job_id, status, text=text, error=error, stamp=parsed, **numbers)


def notification_for(thread_id: str, final: JobEvent, content: str) -> tuple[str, dict[str, Any]]:
    """The notification ``(key, fields)`` for a job that ended with event `final`.

    Deterministic in its inputs, so the server and a client deriving it from the
    same final event write identical records. Aborts notify nobody: ValueError.
    """
    if final.status not in ("complete", "error") or final.stamp is None:
        raise ValueError(f"no notification for a job in status {final.status!r}")
    if final.status == "complete":
        kind, title, body = "ai.message.received", "Reply ready", content[:_BODY_PREVIEW]
    else:
        kind, title, body = "system.warning", "Reply failed", final.error or "the job failed"
    fields = {
        "thread_id": thread_id,
        "type": kind,
        "title": title,
        "body": body,
        "read_at": None,
        "created_at": final.stamp.wall_ms,
        "job_id": final.job_id,
    }
    return f"job:{final.job_id}:{final.status}", fields
