"""`Job`: one server job's live state, and the watchers reading its event stream.

The state has two halves, kept apart on purpose:

* what the store holds: `Job.content` (flushed), `Job.row` (status, error, the
  last write's stamp). Every event, poll answer and snapshot is built from this
  half only, so whatever a client sees carries the stamp of a committed write
  and is visible, with that stamp, in ``/v1/pull``;
* what is not written yet: `Job.parts` (tokens received since the last flush)
  and `Job.ending` (the final status asked for); the runner's flusher turns
  them into a write, then back into the first half.

Watchers (`Watch`) are the event streams of this job (the events endpoint or a
hybrid body), each of one user: a member of the job's space. A watcher is
registered and given its snapshot in one step, without yielding to the event
loop, so no flush can fall between the two. A watcher whose user leaves the
space is revoked: its stream ends at once, with nothing more of the job.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import attrs

from quietsync.protocol import FINAL_STATUSES, JobEvent, JobStatus
from quietsync.server.errors import UnknownJobError
from quietsync.server.jobs.store import JobRow

__all__ = ["Job", "Watch", "no_such_job"]


def no_such_job(job_id: str) -> UnknownJobError:
    """The one answer for a job that does not exist, is past retention, or is not the
    caller's to see: identical in every case, so a job id reveals nothing."""
    return UnknownJobError(f"no job {job_id!r}")


@attrs.define(eq=False)
class Watch:
    """One user's reader of a job's events. `None` in the queue: the stream ends (the
    server is stopping, or the reader was revoked)."""

    user: str
    alive: Callable[[], bool]
    """False once the reader's connection is gone (it no longer counts as watching)."""
    queue: asyncio.Queue[JobEvent | None] = attrs.Factory(asyncio.Queue)
    revoked: bool = False

    @property
    def watching(self) -> bool:
        return not self.revoked and self.alive()

    def revoke(self) -> None:
        """End the stream now: what is queued is dropped, nothing more is sent."""
        self.revoked = True
        while not self.queue.empty():
            self.queue.get_nowait()
        self.queue.put_nowait(None)


@attrs.define(eq=False)
class Job:
    """A job of one user: its stored half, its unwritten half, its watchers."""

    row: JobRow
    prompt: str = ""
    content: str = ""
    parts: list[str] = attrs.Factory(list)
    ending: tuple[JobStatus, str | None] | None = None
    watches: set[Watch] = attrs.Factory(set)
    task: asyncio.Task[None] | None = None
    done: asyncio.Event = attrs.Factory(asyncio.Event)
    failures: int = 0
    """Writes of this job that failed in a row (the runner gives up after a few)."""
    retry_at: float = 0.0
    """Event-loop time before which the flusher does not try this job again (backoff)."""

    @property
    def id(self) -> str:
        return self.row.job_id

    @property
    def finished(self) -> bool:
        """The final status is written (not merely asked for)."""
        return self.row.status in FINAL_STATUSES

    @property
    def dirty(self) -> bool:
        """Something is left to write."""
        return bool(self.parts) or (self.ending is not None and not self.finished)

    @property
    def watching(self) -> frozenset[str]:
        """The users reading this job's events now (each gets no completion notification)."""
        return frozenset(w.user for w in self.watches if w.watching)

    def snapshot(self, offset: int) -> JobEvent:
        return JobEvent(
            "snapshot",
            self.id,
            self.row.status,
            offset=offset,
            text=self.content[offset:],
            content_length=len(self.content),
            error=self.row.error,
            stamp=self.row.stamp,
        )

    def final_event(self) -> JobEvent:
        return JobEvent.ending(
            self.id,
            self.row.status,
            content_length=len(self.content),
            error=self.row.error,
            stamp=self.row.stamp,
        )

    def watch(self, user: str, alive: Callable[[], bool]) -> tuple[Watch, JobEvent]:
        """Register `user`'s reader: its snapshot (from offset 0) now, its later events in
        its queue.

        A finished job's reader finds the final `status` event already queued.
        """
        watch = Watch(user, alive)
        self.watches.add(watch)
        if self.finished:
            watch.queue.put_nowait(self.final_event())
        return watch, self.snapshot(0)

    def advance(self, row: JobRow, content: str) -> None:
        """A write committed: `row` as stored (with the write's stamp), `content` the
        message's. Its watchers get the new text (a ``delta``), then the final ``status``
        if the write ended the job."""
        old = len(self.content)
        self.row, self.content = row, content
        if len(content) > old:
            self.publish(
                JobEvent(
                    "delta",
                    self.id,
                    "streaming",
                    offset=old,
                    text=content[old:],
                    content_length=len(content),
                    stamp=row.stamp,
                )
            )
        if self.finished:
            self.publish(self.final_event())
            self.done.set()

    def unwatch(self, watch: Watch) -> None:
        self.watches.discard(watch)

    def revoke(self, user: str) -> None:
        """End every stream of `user` on this job (they may no longer read its space)."""
        for watch in self.watches:
            if watch.user == user:
                watch.revoke()

    def publish(self, event: JobEvent | None) -> None:
        for watch in self.watches:
            watch.queue.put_nowait(event)
