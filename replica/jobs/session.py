"""`ThreadSession` (the reference app's ``useChat``) and `ChatPane` (its ``ChatContainer``).

A session is one view of one thread. It never owns a job's stream — the
`StreamTracker` does — so a view closing never loses or aborts a reply. The
reference note's bugs, each made impossible here:

* **Detach, never abort, while a background job runs or is starting.**
  `clear()` detaches when background streaming is allowed and either the job
  id is known or a start is in flight (``background_job_mode != "none"``) — the
  hybrid window before the id header arrives included. Only a session with
  ``background_streaming=False`` aborts (the message ends as aborted).
* **No stale seed.** `ChatPane.open` clears the old session and starts the
  new one EMPTY, then awaits `ensure_history_synced`, which reads the replica
  (where the tracker always persists) and reattaches pending replies.
* **History snapshots never clobber a live reply**: `apply_history` is
  ignored while loading or while an assistant message is pending.
* **One history load at a time**: concurrent `ensure_history_synced` calls
  share one load.

A thread lives in one space: the private one, or a shared one (``space``, its
id). A session reads and writes the thread's messages in that space and
starts and follows its replies there; the tracker keeps notifications private.

Must not import `quietsync.server`.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable, Iterable
from typing import Any, Literal

from quietsync.conflicts import wall_clock_ms
from quietsync.protocol.jobs import MESSAGES
from quietsync.replica.jobs.mirror import job_space, records_of
from quietsync.replica.jobs.tracker import Attachment, StreamTracker, Subscriber
from quietsync.replica.replica import Replica

__all__ = ["BackgroundJobMode", "ChatPane", "ThreadSession"]

BackgroundJobMode = Literal["none", "hybrid", "background"]
DeltaListener = Callable[[str, str], object]
"""``(message_id, delta)``: text a session appended to a message, as it arrives."""


class ThreadSession:
    """One view of one thread; see the module docstring."""

    def __init__(
        self,
        replica: Replica,
        tracker: StreamTracker,
        thread_id: str,
        *,
        background_streaming: bool = True,
        seed: Iterable[dict[str, Any]] = (),
        on_delta: DeltaListener | None = None,
        space: str | None = None,
    ) -> None:
        self.space = job_space(space)
        """The shared space the thread lives in (None: the private space)."""
        self._records = records_of(replica, self.space)
        self._tracker = tracker
        self.thread_id = thread_id
        self.background_streaming = background_streaming
        self.messages: list[dict[str, Any]] = [dict(m) for m in seed]
        self.loading = False
        self.background_job_mode: BackgroundJobMode = "none"
        self.background_job_id: str | None = None
        self.detached = False
        self.history_loads = 0
        self._on_delta = on_delta
        self._history: asyncio.Task[None] | None = None
        self._history_loaded = False
        self._attachments: dict[str, Attachment] = {}
        self._abort_requested = False

    # -- sending -------------------------------------------------------------------

    async def send(self, text: str) -> str:
        """Write the user message, start the reply's job and follow it; the reply's message id.

        Returns once the job runs (its id known); the reply streams on into
        `messages` and the replica.
        """
        if not isinstance(text, str) or not text.strip():
            raise ValueError("a message needs some text")
        if self.loading:
            raise RuntimeError("a reply is still streaming in this thread")
        self.loading, self.detached, self._abort_requested = True, False, False
        now = wall_clock_ms()
        user_id, reply_id = _new_id(), _new_id()
        user = {"thread_id": self.thread_id, "role": "user", "content": text, "created_at": now}
        self._records.put(MESSAGES, user_id, user)
        self.messages.append({"id": user_id, **user})
        # One ms later, so "oldest first" is the order the two were written in.
        reply = {"thread_id": self.thread_id, "role": "assistant", "created_at": now + 1}
        self.messages.append({"id": reply_id, **reply, "content": "", "pending": True})
        self.background_job_mode = "hybrid" if self.background_streaming else "none"
        try:
            job_id = await self._tracker.start(
                self.thread_id, reply_id, text, mode="hybrid", created_at=now + 1, space=self.space
            )
        except BaseException:
            self.loading, self.background_job_mode = False, "none"
            self._refresh(reply_id)
            raise
        self.background_job_id = job_id
        if self._abort_requested:
            self._tracker.request_abort(job_id)
        elif not self.detached:
            self._attach(job_id, reply_id)
        return reply_id

    def clear(self) -> None:
        """Close the view: detach from a background job (never abort it), else abort.

        The reference's bug 2: the hybrid start window (job id not yet known)
        must detach too, so the check is the mode, not the id.
        """
        background_active = self.background_streaming and (
            self.background_job_id is not None or self.background_job_mode != "none"
        )
        for attachment in self._attachments.values():
            attachment.close()
        self._attachments.clear()
        if background_active:
            self.detached = True  # job info kept: `ensure_history_synced` reattaches
            return
        if self.loading:
            if self.background_job_id is None:
                self._abort_requested = True  # `send` aborts it once the id arrives
            else:
                self._tracker.request_abort(self.background_job_id)
        self.detached = True
        self.loading, self.background_job_mode, self.background_job_id = False, "none", None

    # -- history -------------------------------------------------------------------

    async def ensure_history_synced(self) -> None:
        """Load the thread from the replica once and reattach its pending replies.

        Concurrent calls share the one load in flight (the reference's
        re-entrancy guard, bug 6).
        """
        if self._history_loaded:
            return
        if self._history is None:
            self._history = asyncio.get_running_loop().create_task(
                self._load_history(), name=f"quietsync-session:history:{self.thread_id}"
            )
        await asyncio.shield(self._history)

    async def _load_history(self) -> None:
        self.history_loads += 1
        await asyncio.sleep(0)  # a view switched away at once need not read anything
        if self.detached:
            return
        self.messages = self._read_thread()
        self._history_loaded = True
        for message in self.messages:
            job_id = message.get("job_id")
            if message.get("role") == "assistant" and message.get("pending") and job_id:
                content = message.get("content")
                self._tracker.track(
                    job_id,
                    self.thread_id,
                    message["id"],
                    content=content if content else "",
                    space=self.space,
                )
                self._attach(job_id, message["id"])

    def apply_history(self, snapshot: Iterable[dict[str, Any]]) -> bool:
        """Replace `messages` with an external snapshot — unless that would clobber a reply.

        Ignored (returns False) while loading or while an assistant message is
        pending (the reference's bug 5).
        """
        pending = any(m.get("role") == "assistant" and m.get("pending") for m in self.messages)
        if self.loading or pending:
            return False
        self.messages = [dict(m) for m in snapshot]
        return True

    # -- following a reply -------------------------------------------------------------

    def _attach(self, job_id: str, message_id: str) -> None:
        if message_id in self._attachments:
            return
        subscriber = Subscriber(
            on_update=lambda delta, content: self._update(message_id, delta, content),
            on_complete=lambda: self._ended(message_id),
            on_error=lambda _error: self._ended(message_id),
            on_abort=lambda: self._ended(message_id),
        )
        attachment = self._tracker.subscribe(job_id, subscriber)
        if attachment.status != "streaming":
            self._refresh(message_id)
            return
        self._attachments[message_id] = attachment
        self._refresh(message_id)  # the record's fields, then the tracker's fresher content
        self._set(message_id, content=attachment.content)
        self.loading, self.detached = True, False
        self.background_job_id = job_id
        if self.background_job_mode == "none" and self.background_streaming:
            self.background_job_mode = "background"

    def _update(self, message_id: str, delta: str, content: str) -> None:
        self._set(message_id, content=content)
        if self._on_delta is not None:
            self._on_delta(message_id, delta)

    def _ended(self, message_id: str) -> None:
        attachment = self._attachments.pop(message_id, None)
        if attachment is not None:
            attachment.close()
        self._refresh(message_id)
        if not self._attachments:
            self.loading, self.background_job_mode, self.background_job_id = False, "none", None

    def _refresh(self, message_id: str) -> None:
        record = self._records.get(MESSAGES, message_id)
        if record is not None:
            self._set(message_id, **record)

    def _set(self, message_id: str, **fields: Any) -> None:
        for message in self.messages:
            if message["id"] == message_id:
                message.update(fields)
                return

    def _read_thread(self) -> list[dict[str, Any]]:
        where = {"thread_id": self.thread_id}
        keys = self._records.keys(MESSAGES, where, order_by="created_at")
        records = self._records.query(MESSAGES, where, order_by="created_at")
        return [{"id": k, **r} for k, r in zip(keys, records, strict=True)]


class ChatPane:
    """Shows one thread at a time and switches the fixed way (clear, EMPTY seed, sync)."""

    def __init__(
        self,
        replica: Replica,
        tracker: StreamTracker,
        *,
        background_streaming: bool = True,
        on_delta: DeltaListener | None = None,
    ) -> None:
        self._replica = replica
        self._tracker = tracker
        self._background_streaming = background_streaming
        self._on_delta = on_delta
        self.session: ThreadSession | None = None

    async def open(self, thread_id: str, *, space: str | None = None) -> ThreadSession:
        """Switch to `thread_id` (of `space`, a shared space's id; None: the private one):
        the old view detaches, the new one loads from the replica."""
        self.close()
        session = ThreadSession(
            self._replica,
            self._tracker,
            thread_id,
            background_streaming=self._background_streaming,
            on_delta=self._on_delta,
            space=space,
        )
        self.session = session
        await session.ensure_history_synced()
        return session

    def close(self) -> None:
        if self.session is not None:
            self.session.clear()
            self.session = None


def _new_id() -> str:
    return f"m{secrets.token_hex(8)}"
