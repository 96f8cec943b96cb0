"""`JobMirror`: a server job's state, mirrored into the local replica with the server's stamps.

The stream tracker's persistence, kept apart from its networking so the rules
can be tested without a server. The rules (field ownership, ``quietsync.protocol.jobs``):

1. **Only the server's writes, never our own.** A `delta` mirrors field
   ``content`` (the whole content so far) with the event's stamp; a `snapshot`
   or `status` mirrors all five `JOB_FIELDS` with the event's stamp. Both go
   through `SyncPort.apply_remote` as changes with ``seq=None``: merged, never
   queued for push. When sync later delivers the same write it carries the same
   stamp (a duplicate) or a newer one; never a conflict.
2. **A placeholder any server stamp beats.** Before the first event the message
   shows content "" / pending / streaming, written with `HLC.minimal`.
3. **Coalesced.** `mark` records that a job has news; `flush` writes every
   job with news in ONE transaction, each with only its latest state (the
   server's stamps only grow, so the latest write supersedes the skipped ones).
   The tracker flushes on a short tick, and at once for status changes.
4. **Per job only what is needed**: the content so far, the status, the last
   stamp and the stamps written (for the `base` of the next write). No
   per-token copies.
5. **Content never goes backwards**: an event older than the last one applied
   is ignored; one that would leave a hole is a `JobGapError` (reconnect from
   the offset we hold).
6. **A job writes into its message's space.** A job of a shared thread
   (`JobState.space`) is mirrored through that space's `SyncPort`, never the
   private one: the message record is the space's, shared by its members.
   One flush is still one transaction, whatever spaces its jobs are in.

Must not import `quietsync.server`.
"""

from __future__ import annotations

import logging
from typing import Any

import attrs

from quietsync.conflicts import HLC, QuietsyncError
from quietsync.protocol import Change
from quietsync.protocol.jobs import JOB_FIELDS, MESSAGES, JobEvent, JobStatus
from quietsync.replica.errors import JobGapError
from quietsync.replica.replica import Replica, sync_port
from quietsync.replica.space_view import SpaceView
from quietsync.replica.spaces import PRIVATE, SpaceKey, space_key
from quietsync.replica.sync_port import SyncPort

__all__ = ["JobMirror", "JobState", "job_space", "records_of"]

log = logging.getLogger(__name__)

_PLACEHOLDER = {"content": "", "pending": True, "job_status": "streaming"}


@attrs.define(eq=False)
class JobState:
    """What the client knows of one job: enough to persist it and resume it."""

    job_id: str
    thread_id: str
    message_id: str
    content: str = ""
    status: JobStatus = "streaming"
    error: str | None = None
    stamp: HLC | None = None
    """The stamp of the latest event applied (None before the first)."""
    content_base: HLC | None = None
    meta_base: HLC | None = None
    """The stamps the replica holds for ``content`` and for the other job fields."""
    dirty: set[str] = attrs.Factory(set)
    space: SpaceKey = attrs.field(default=PRIVATE, kw_only=True)
    """The space the message lives in (`PRIVATE`, or a shared space's id)."""

    @property
    def offset(self) -> int:
        return len(self.content)

    @property
    def final(self) -> bool:
        return self.status != "streaming"

    def final_event(self) -> JobEvent:
        """The job's final state as a `status` event (what `notification_for` needs)."""
        assert self.stamp is not None  # a job ends with an event, or a local error's stamp
        return JobEvent.ending(
            self.job_id,
            self.status,
            content_length=len(self.content),
            error=self.error,
            stamp=self.stamp,
        )

    def apply(self, event: JobEvent) -> str:
        """Take `event` into the state; return the text it appended ("" if none).

        Keepalives and events older than the last applied change nothing.
        """
        if event.type == "keepalive" or event.stamp is None:
            return ""
        if self.stamp is not None and event.stamp < self.stamp:
            return ""
        if event.offset > len(self.content):
            raise JobGapError(
                f"job {self.job_id}: event at offset {event.offset} but {len(self.content)} held"
            )
        end = event.offset + len(event.text)
        appended = ""
        if end > len(self.content):
            appended = event.text[len(self.content) - event.offset :]
            self.content += appended
        self.stamp = event.stamp
        if event.type == "delta":
            self.dirty.add("content")
        else:
            self.dirty.update(JOB_FIELDS)
            self.status, self.error = event.status, event.error
        return appended

    def values(self) -> dict[str, Any]:
        return {
            "content": self.content,
            "pending": self.status == "streaming",
            "job_id": self.job_id,
            "job_status": self.status,
            "error": self.error,
        }


def job_space(space: str | None) -> SpaceKey:
    """The replica's key of the space with id `space` (None, or a ``u:`` id: the private one)."""
    return PRIVATE if space is None else space_key(space)


def records_of(replica: Replica, space: SpaceKey) -> SpaceView:
    """The app's view of `space`'s records: the replica itself for the private space."""
    return replica if space is PRIVATE else replica.space(space)


class JobMirror:
    """Writes job states into a replica, coalesced; see the module docstring."""

    def __init__(self, replica: Replica) -> None:
        self._replica = replica
        self._ports: dict[SpaceKey, SyncPort] = {}
        self._news: dict[str, JobState] = {}

    def _port(self, space: SpaceKey) -> SyncPort:
        port = self._ports.get(space)
        if port is None:
            port = self._ports[space] = sync_port(self._replica, space)
        return port

    @property
    def has_news(self) -> bool:
        return bool(self._news)

    def spaces(self) -> list[SpaceKey]:
        """Every space the replica holds records of, where a job's message may be:
        the private space first, then the shared ones (by id)."""
        return [PRIVATE, *sorted(self._port(PRIVATE).local_spaces())]

    def placeholder(self, message_id: str, space: SpaceKey = PRIVATE) -> None:
        """Show "streaming, nothing yet" before the job exists; any server write beats it."""
        port = self._port(space)
        stamp = HLC.minimal(port.node_id)
        changes = [
            Change(f"placeholder:{message_id}:{f}", MESSAGES, message_id, f, "lww", stamp, None, v)
            for f, v in _PLACEHOLDER.items()
        ]
        port.apply_remote(changes)

    def load_bases(self, state: JobState) -> None:
        """Read the stamps the replica holds for the message (when tracking starts)."""
        port = self._port(state.space)
        for field, attr in (("content", "content_base"), ("job_status", "meta_base")):
            held = port.field_state(MESSAGES, state.message_id, field)
            setattr(state, attr, None if held is None else held.write.stamp)

    def mark(self, state: JobState) -> None:
        """`state` has news for the next `flush`."""
        if state.dirty:
            self._news[state.job_id] = state

    def flush(self) -> None:
        """Write every job with news, in one transaction (one per job if one is refused).

        Never raises: a refused job write is logged and skipped, so one bad
        stamp can stop neither the other jobs nor the stream it came from.
        """
        if not self._news:
            return
        states, self._news = list(self._news.values()), {}
        try:
            self._write(states)
        except (QuietsyncError, ValueError):
            # Isolate the job whose write is refused (a stamp too far ahead): the
            # others are persisted; its next event or sync brings it up to date.
            for state in states:
                try:
                    self._write([state])
                except (QuietsyncError, ValueError):
                    log.exception("could not persist job %s", state.job_id)
                    continue
                self._written(state)
            return
        for state in states:
            self._written(state)

    def write_local_error(self, state: JobState, error: str) -> None:
        """End a job the server cannot tell us about, with a local stamp (never pushed).

        Used when the server no longer knows the job or refused to start it:
        nothing of the server's will come, so the message must not stay pending.
        """
        state.status, state.error = "error", error
        state.stamp = self._port(state.space).clock.now()
        state.dirty.update(JOB_FIELDS)
        self._news[state.job_id] = state
        self.flush()

    def _write(self, states: list[JobState]) -> None:
        """Mirror `states` in one transaction: one `apply_remote` per space they are in."""
        changes: dict[SpaceKey, list[Change]] = {}
        for state in states:
            changes.setdefault(state.space, []).extend(self._changes(state))
        with self._replica.transaction():
            for space, of_space in changes.items():
                self._port(space).apply_remote(of_space)

    def _changes(self, state: JobState) -> list[Change]:
        assert state.stamp is not None
        values = state.values()
        return [
            Change(
                f"mirror:{state.stamp}:{field}",
                MESSAGES,
                state.message_id,
                field,
                "lww",
                state.stamp,
                state.content_base if field == "content" else state.meta_base,
                values[field],
            )
            for field in sorted(state.dirty)
        ]

    @staticmethod
    def _written(state: JobState) -> None:
        if "content" in state.dirty:
            state.content_base = state.stamp
        if len(state.dirty) > 1:
            state.meta_base = state.stamp
        state.dirty.clear()
