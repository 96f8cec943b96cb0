"""`StreamTracker`: owns the network stream of every server job, and always persists it.

One per app process, keyed by job id. Views come and go; the tracker does not
care. Its rules:

1. **Persistence never depends on anyone.** Every event is mirrored into the
   message record (`quietsync.replica.jobs.mirror`) whether or not a view subscribes and
   whether or not a SyncClient runs — the reference app lost replies exactly
   by skipping this when server sync was on. Writes are coalesced: one
   replica transaction per tick (`flush_interval`) for every job with news;
   a status change or the end is written at once.
2. **The tracker owns one task per job**; unsubscribing (a view closing) never
   touches it; only `close()` cancels it.
3. **Live events, then polling.** A job is followed over ``/events`` from the
   offset held; when that breaks, one poll by offset keeps it moving and the
   stream is retried with capped backoff. ``live=False`` polls only. A
   failure that repeats per retry (a socket that keeps failing, a store that
   keeps refusing the tick's writes) is logged one line per cause a minute,
   with a count of its repeats, never a traceback (`RateLimitedLog`).
4. **A job the server no longer knows** ends the message as error (a local
   write: nothing of the server's will come) and writes a ``system.warning``.
5. **On the end**: the final state is written, then — if nobody subscribes and
   the thread is not muted — the completion notification (deterministic key,
   so the server's identical copy is the same record); aborts notify nobody; a
   failed notification is logged and never stops anything. Then subscribers
   hear `on_complete` / `on_error` / `on_abort`.
6. **A job's message lives in a space** (``space``: None, the private one, or
   a shared space's id). The job is mirrored into that space's records, but
   its notification and the mute it checks are always the user's own, in
   the private space: notifications go to people, not spaces, exactly as the
   server writes them, so both copies are one record. Any member of a shared
   space can follow a job of it, whoever started it: `track` it by id, or let
   `resume_pending` find its streaming message once sync brought it in.

Must not import `quietsync.server`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, Callable, Sequence
from typing import Any

import attrs

from quietsync.conflicts import wall_clock_ms
from quietsync.protocol.jobs import MESSAGES, JobEvent, JobStatus
from quietsync.protocol.ratelog import RateLimitedLog, describe
from quietsync.replica.errors import (
    JobGapError,
    ProtocolError,
    SyncError,
    TransportError,
    UnknownJobError,
)
from quietsync.replica.jobs.client import JobPoll, JobsClient, StartMode
from quietsync.replica.jobs.mirror import JobMirror, JobState, job_space, records_of
from quietsync.replica.jobs.notifications import Notifications
from quietsync.replica.replica import Replica

__all__ = ["Attachment", "StreamTracker", "Subscriber"]

log = logging.getLogger(__name__)

TASK_PREFIX = "quietsync-tracker"
_RETRY = (TransportError, ProtocolError, JobGapError)
"""What a job's stream may fail with and still be followed: poll, then reconnect."""


def _ignore(*_args: object) -> None:
    """The callback a `Subscriber` leaves out."""


@attrs.frozen(eq=False)
class Subscriber:
    """A view's callbacks; each is optional. `on_update` gets the new text and the whole content."""

    on_update: Callable[[str, str], object] = _ignore
    on_complete: Callable[[], object] = _ignore
    on_error: Callable[[str | None], object] = _ignore
    on_abort: Callable[[], object] = _ignore


@attrs.frozen
class Attachment:
    """What a subscriber sees when it attaches: the content so far, and how to detach."""

    content: str
    status: JobStatus
    close: Callable[[], None]


@attrs.define(eq=False)
class _Job:
    state: JobState
    subscribers: list[Subscriber] = attrs.Factory(list)
    task: asyncio.Task[None] | None = None


class StreamTracker:
    """See the module docstring. Create it inside the event loop; `await close()` at the end."""

    def __init__(
        self,
        replica: Replica,
        url: str,
        *,
        token: str,
        flush_interval: float = 0.05,
        poll_interval: float = 0.25,
        live: bool = True,
        retry_delays: Sequence[float] = (0.1, 0.25, 0.5, 1.0, 2.0),
    ) -> None:
        self._replica = replica
        self._client = JobsClient(url, token=token)
        self._mirror = JobMirror(replica)
        self.notifications = Notifications(replica)
        self._flush_interval = flush_interval
        self._poll_interval = poll_interval
        self._live = live
        self._delays = tuple(retry_delays)
        self._jobs: dict[str, _Job] = {}
        self._ended: dict[str, JobStatus] = {}
        self._waiters: dict[str, list[asyncio.Future[JobStatus]]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._news = asyncio.Event()
        self._log = RateLimitedLog(log)  # failures that repeat per retry or tick: a line a minute
        self._flusher = self._spawn(self._flush_loop(), "flusher")
        self._closed = False

    # -- starting and following jobs --------------------------------------------

    async def start(
        self,
        thread_id: str,
        message_id: str,
        text: str,
        *,
        mode: StartMode = "hybrid",
        created_at: int | None = None,
        space: str | None = None,
    ) -> str:
        """Create the assistant message, start its job, follow it; returns the job id.

        The message lives in `space` (a shared space's id; None: the private
        space; rule 6). It gets its client-owned fields by `put` (synced) and
        the placeholder by a minimal-stamp mirror write (never pushed). A
        refused or failed start ends the message as error and re-raises.
        """
        key = job_space(space)
        created = wall_clock_ms() if created_at is None else created_at
        fields = {"thread_id": thread_id, "role": "assistant", "created_at": created}
        records_of(self._replica, key).put(MESSAGES, message_id, fields)
        self._mirror.placeholder(message_id, key)
        try:
            job_id, stream = await self._client.start(
                thread_id, message_id, text, mode=mode, space=key
            )
        except SyncError as exc:
            state = JobState(f"unstarted:{message_id}", thread_id, message_id, space=key)
            self._mirror.write_local_error(state, f"the job could not start: {exc}")
            raise
        self._follow(JobState(job_id, thread_id, message_id, space=key), stream)
        return job_id

    def track(
        self,
        job_id: str,
        thread_id: str,
        message_id: str,
        *,
        content: str = "",
        space: str | None = None,
    ) -> None:
        """Follow a job already started (resumed from `content`); no-op if already followed.

        `space` is where its message lives (rule 6): a job of a shared space is
        followed the same whoever started it.
        """
        if job_id not in self._jobs and job_id not in self._ended:
            state = JobState(job_id, thread_id, message_id, content=content, space=job_space(space))
            self._follow(state, None)

    async def resume_pending(self) -> list[str]:
        """Follow every job the replica shows as still streaming, in every space it holds.

        After a restart; and for a member of a shared space, the way to pick up
        a job someone else started once sync brought its streaming message in.
        A message whose ``thread_id`` has not arrived yet is left for a later
        call: the notification names the thread, as the server's does.
        """
        resumed = []
        for space in self._mirror.spaces():
            records = records_of(self._replica, space)
            keys = records.keys(MESSAGES, {"pending": True})
            for key, record in zip(keys, records.query(MESSAGES, {"pending": True}), strict=True):
                job_id, thread_id = record.get("job_id"), record.get("thread_id")
                streaming = record.get("job_status") == "streaming"
                if streaming and isinstance(job_id, str) and isinstance(thread_id, str):
                    content = record.get("content")
                    content = content if isinstance(content, str) else ""
                    self.track(job_id, thread_id, key, content=content, space=space)
                    resumed.append(job_id)
        return resumed

    def _follow(self, state: JobState, stream: AsyncGenerator[JobEvent, None] | None) -> None:
        job_id = state.job_id
        self._mirror.load_bases(state)
        job = _Job(state)
        self._jobs[job_id] = job
        job.task = self._spawn(self._run(job, stream), f"job:{job_id}")

    # -- subscribers and waiting ------------------------------------------------

    def subscribe(self, job_id: str, subscriber: Subscriber) -> Attachment:
        """Attach a view; returns the content so far (deltas follow with no gap)."""
        job = self._jobs.get(job_id)
        if job is None:
            status = self._ended.get(job_id)
            if status is None:
                raise KeyError(f"the tracker does not follow job {job_id!r}")
            return Attachment("", status, _ignore)
        job.subscribers.append(subscriber)

        def close() -> None:
            if subscriber in job.subscribers:
                job.subscribers.remove(subscriber)

        return Attachment(job.state.content, job.state.status, close)

    def subscriber_count(self, job_id: str) -> int:
        job = self._jobs.get(job_id)
        return 0 if job is None else len(job.subscribers)

    @property
    def active_jobs(self) -> list[str]:
        return list(self._jobs)

    def status(self, job_id: str) -> JobStatus | None:
        job = self._jobs.get(job_id)
        return job.state.status if job is not None else self._ended.get(job_id)

    async def wait(self, job_id: str, timeout: float | None = None) -> JobStatus:  # noqa: ASYNC109
        """The job's final status once it ends (`TimeoutError` after `timeout` seconds).

        `timeout` is the issue's contract (``wait(job_id, timeout=None)``).
        """
        if job_id in self._ended:
            return self._ended[job_id]
        if job_id not in self._jobs:
            raise KeyError(f"the tracker does not follow job {job_id!r}")
        future: asyncio.Future[JobStatus] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(job_id, []).append(future)
        async with asyncio.timeout(timeout):
            return await future

    async def abort(self, job_id: str) -> None:
        """Ask the server to abort; the final status arrives through the job's stream."""
        await self._client.abort(job_id)

    def request_abort(self, job_id: str) -> None:
        """`abort` from synchronous code (a view's `clear`); the tracker owns the task."""
        self._spawn(self._abort_quietly(job_id), f"abort:{job_id}")

    async def _abort_quietly(self, job_id: str) -> None:
        try:
            await self._client.abort(job_id)
        except SyncError:
            log.exception("could not abort job %s", job_id)

    # -- the per-job task ------------------------------------------------------------

    async def _run(self, job: _Job, stream: AsyncGenerator[JobEvent, None] | None) -> None:
        failures = 0
        while not job.state.final:
            progress = job.state.stamp
            try:
                if stream is None and self._live:
                    stream = self._client.events(job.state.job_id, job.state.offset)
                if stream is None:
                    self._on_event(job, (await self._poll(job)).as_event())
                    if not job.state.final:
                        await asyncio.sleep(self._poll_interval)
                    continue
                async for event in stream:
                    self._on_event(job, event)
                    if job.state.final:
                        break
            except UnknownJobError:
                self._lost(job)
                return
            except _RETRY as exc:
                self._log.failure(
                    f"job stream: {type(exc).__name__}",
                    f"job {job.state.job_id}: {describe(exc)}; polling, then retrying",
                )
                if not await self._fallback_poll(job):
                    self._lost(job)
                    return
            finally:
                if stream is not None:
                    await stream.aclose()
                stream = None
            if job.state.final:
                break
            failures = 0 if job.state.stamp != progress else failures + 1
            if failures:
                await asyncio.sleep(self._delays[min(failures, len(self._delays)) - 1])
        self._finish(job)

    async def _poll(self, job: _Job) -> JobPoll:
        return await self._client.poll(job.state.job_id, job.state.offset)

    async def _fallback_poll(self, job: _Job) -> bool:
        """One poll to keep the job moving while the stream is down; False if the job is gone."""
        try:
            self._on_event(job, (await self._poll(job)).as_event())
        except UnknownJobError:
            return False
        except _RETRY as exc:
            self._log.failure(
                f"job poll: {type(exc).__name__}",
                f"job {job.state.job_id}: poll failed too: {describe(exc)}",
            )
        return True

    def _on_event(self, job: _Job, event: JobEvent) -> None:
        appended = job.state.apply(event)
        self._mirror.mark(job.state)
        if event.type != "delta" and event.type != "keepalive":
            self._mirror.flush()  # status changes and the end are written at once
        elif self._mirror.has_news:
            self._news.set()
        if appended:
            for sub in list(job.subscribers):
                _call(sub.on_update, appended, job.state.content)

    def _lost(self, job: _Job) -> None:
        log.warning("job %s is unknown to the server; the message ends in error", job.state.job_id)
        self._mirror.write_local_error(job.state, "the server no longer knows this job")
        self._finish(job)

    def _finish(self, job: _Job) -> None:
        state = job.state
        self._mirror.flush()
        self._jobs.pop(state.job_id, None)
        self._ended[state.job_id] = state.status
        if not job.subscribers and state.status in ("complete", "error"):
            try:
                self.notifications.notify_job_end(
                    state.thread_id, state.final_event(), state.content
                )
            except Exception:
                log.exception("could not notify the end of job %s", state.job_id)
        for sub in list(job.subscribers):
            if state.status == "complete":
                _call(sub.on_complete)
            elif state.status == "error":
                _call(sub.on_error, state.error)
            else:
                _call(sub.on_abort)
        for future in self._waiters.pop(state.job_id, []):
            if not future.done():
                future.set_result(state.status)

    # -- coalesced persistence ---------------------------------------------------

    async def _flush_loop(self) -> None:
        while True:
            await self._news.wait()
            await asyncio.sleep(self._flush_interval)  # gather one tick of news
            self._news.clear()
            try:
                self._mirror.flush()
            except Exception as exc:
                self._log.failure(
                    f"job persist: {type(exc).__name__}",
                    f"could not persist job updates ({describe(exc)}); retrying next tick",
                    logging.ERROR,
                )

    # -- lifecycle -----------------------------------------------------------------

    def _spawn(self, coro: Any, name: str) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro, name=f"{TASK_PREFIX}:{name}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def close(self) -> None:
        """Stop following every job (they go on on the server), persist what we have."""
        if self._closed:
            return
        self._closed = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for futures in self._waiters.values():
            for future in futures:
                future.cancel()
        if not self._replica.closed:
            self._mirror.flush()
        self._log.flush()
        await self._client.close()


def _call(callback: Callable[..., object], *args: Any) -> None:
    try:
        callback(*args)
    except Exception:
        log.exception("a job subscriber failed; the job goes on")
