"""`JobRunner`: the server's job policy — start, stream, flush, end, limits, recovery.

One runner per app (the jobs feature, `quietsync.server.jobs`, creates it).
Its rules (the contract is ``docs/protocol.md``, "Jobs"):

1. **Start** (`create`): write the start state (one transaction, stamp S0),
   which refuses over `JobsConfig.max_per_user` streaming jobs of the user
   (429, whatever their spaces) or when the message already has a streaming
   job in its space, whoever started it (409): counted in the database, in
   that transaction (`JobWriter`), so the limits hold across server
   processes; only then `run` the provider, so nothing is streamed before the
   start is durable.
2. **Stream**: the provider task appends tokens to the job's unwritten half.
   It never writes: ONE flusher task per app writes every dirty job of every
   user in one transaction per tick (`JobsConfig.flush_interval`), then publishes the
   committed changes to the live hub and one event per job to its watchers.
3. **End**: the provider finishing, failing, timing out (`JobsConfig.timeout`), an
   abort, or a restart only *asks* for an end; the flusher writes it (all five
   job fields, the notification if nobody watches) and then announces it. So
   the end is always after the last flush, and an abort answers once written.
4. **Failing writes**: a flush that fails is retried job by job, so one
   job whose output cannot be stored (or one user's failing write) never
   holds up the others. A job's failing write is retried with exponential
   backoff (`JobsConfig.flush_interval` doubled per failure, at most
   `_MAX_BACKOFF`); after `FLUSH_ATTEMPTS` failures in a row the job gives up:
   its unwritten tokens are dropped and it ends as error `OUTPUT_NOT_STORED`
   (an abort asked for stays aborted). If even that end cannot be written,
   the job ends in memory only (its readers and its abort get their answer)
   and the next start ends its stored state as "interrupted" (until then it
   still counts against its user's limits, which are counted in the store).
   Failures are logged one line per cause (the exception's type: the
   messages differ from job to job), rate limited (`quietsync.protocol.ratelog`).
5. **Restart**: `recover` ends every job a process that is gone left
   streaming (`JobStore.orphans`) as error "interrupted", through the same
   path: on SQLite, every job a previous process left streaming; on a
   database shared by several processes (`peers`), it checks again every
   `JobsConfig.orphan_check` seconds, so a process killed mid-job has its jobs
   ended by a survivor, with the prefix it flushed. Stopping the app
   (`close`) flushes what was received, ends the watchers' streams, and
   leaves streaming jobs to the next start (or a survivor) — exactly like a
   crash.
6. **Retention**: a finished job answers for `JobsConfig.retention` seconds after
   its end, then 404 (`get` checks; a purge task drops rows and memory).
7. **Spaces**: a job writes into one space (`JobRow.space`); who may see it
   is the views' check (`quietsync.server.jobs.access`). A user who loses a
   space (`revoke`) has their event streams on its jobs ended at once.
8. **Other processes' jobs** (PostgreSQL): `get` finds a job this process
   does not run in the store; its readers here follow it
   (`quietsync.server.jobs.remote`), and an abort here asks its process
   (`Peers.ask_abort`) and answers once the end is written, whoever wrote it.
   A job of this process taken over by another (which found this one gone:
   its write is refused, `JobTakenError`) is followed from then on.

Everything here runs on the event loop; store work is handed to the store's
worker thread through `run_on_store`, where `quietsync.server.jobs.writer.JobWriter`
issues the stamps.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

import attrs

from quietsync.conflicts import HLC, KindMismatchError
from quietsync.protocol import JobStatus
from quietsync.protocol.ratelog import RateLimitedLog, describe
from quietsync.server.errors import InvalidJobRequestError, JobTakenError, StoreError
from quietsync.server.jobs.config import JobsConfig
from quietsync.server.jobs.history import thread_history
from quietsync.server.jobs.job import Job, no_such_job
from quietsync.server.jobs.providers import Chat, ProviderError
from quietsync.server.jobs.remote import RemoteJobs
from quietsync.server.jobs.store import JobRow
from quietsync.server.jobs.writer import FlushItem, JobWriter
from quietsync.server.live import Published

__all__ = ["FLUSH_ATTEMPTS", "OUTPUT_NOT_STORED", "JobRunner", "JobSpec", "Peers"]

log = logging.getLogger(__name__)

T = TypeVar("T")
RunOnStore = Callable[[Callable[[], T]], Awaitable[T]]
Publish = Callable[[str, Published], None]

INTERRUPTED = "interrupted"
TIMEOUT = "timeout"
OUTPUT_NOT_STORED = "the job's output could not be stored"
FLUSH_ATTEMPTS = 4
"""Failed writes in a row after which a job gives up (rule 4)."""
_MAX_BACKOFF = 5.0
_PURGE_EVERY = 60.0


class Peers(Protocol):
    """The other server processes on a shared database (`quietsync.server.jobs.postgres_peers`)."""

    async def ask_abort(self, job_id: str) -> None:
        """Ask the process running `job_id` to end it as aborted."""
        ...


@attrs.frozen
class JobSpec:
    """What a client asks a job to do (already validated by the view)."""

    thread_id: str
    message_id: str
    input: str


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class JobRunner:
    """Every job of every user of one app (see the module docstring)."""

    def __init__(
        self,
        config: JobsConfig,
        writer: JobWriter,
        run_on_store: RunOnStore[Any],
        publish: Publish,
        peers: Peers | None = None,
    ) -> None:
        self._config = config
        self._peers = peers
        self._remote = RemoteJobs(self._find)
        self._provider = config.provider
        self._writer = writer
        self._run_on_store = run_on_store
        self._publish = publish
        self._jobs: dict[str, Job] = {}
        self._dirty: dict[str, Job] = {}
        self._wake = asyncio.Event()
        self._flusher: asyncio.Task[None] | None = None
        self._purger: asyncio.Task[None] | None = None
        self._adopter: asyncio.Task[None] | None = None
        self._closed = False
        self._log = RateLimitedLog(log)

    @property
    def config(self) -> JobsConfig:
        return self._config

    # -- lifecycle ---------------------------------------------------------

    async def recover(self) -> None:
        """End the jobs left streaming by a gone process as "interrupted"; start ticking."""
        horizon = _now_ms() - int(self._config.retention * 1000)
        await self._run_on_store(lambda: self._writer.purge(horizon))
        await self._adopt_orphans()
        self._flusher = asyncio.create_task(self._flush_loop(), name="quietsync-job-flusher")
        self._purger = asyncio.create_task(self._purge_loop(), name="quietsync-job-purge")
        if self._peers is not None:
            self._adopter = asyncio.create_task(self._adopt_loop(), name="quietsync-job-orphans")

    async def close(self) -> None:
        """Stop producing, flush what was received, end every watcher's stream.

        Ends already asked for (an abort, a provider that finished) are written;
        jobs still producing stay streaming, for the next start (rule 4).
        """
        self._closed = True
        producers = [job.task for job in self._jobs.values() if job.task and not job.task.done()]
        for task in producers:
            task.cancel()
        await asyncio.gather(*producers, return_exceptions=True)
        for task in (self._purger, self._adopter):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        if self._flusher is not None:
            # not cancelled: a write in flight must be applied and announced
            self._wake.set()
            await self._flusher
        await self._flush_once(everything=True)
        for job in self._jobs.values():
            job.publish(None)
        await self._remote.close()
        self._log.flush()

    # -- the API -----------------------------------------------------------

    async def create(self, user: str, space: str, spec: JobSpec) -> Job:
        """Register and durably start `user`'s job in `space` (rule 1); `run` it next.

        The caller checked that `user` may write in `space`; the start's
        transaction checks it again, and the limits (`JobWriter`, rules 8 and 9).
        """
        row = JobRow(
            user=user,
            space=space,
            job_id=uuid.uuid4().hex,
            thread_id=spec.thread_id,
            message_id=spec.message_id,
            status="streaming",
            stamp=HLC.minimal(self._writer.node),  # replaced by the start's stamp
            started_ms=_now_ms(),
        )
        job = Job(row, prompt=spec.input)
        self._jobs[job.id] = job
        try:
            await self._write([FlushItem(row, "", start=True)], [job])
        except KindMismatchError as exc:
            del self._jobs[job.id]
            raise InvalidJobRequestError(
                f"message {spec.message_id!r} cannot take a job: {exc}"
            ) from exc
        except BaseException:
            del self._jobs[job.id]
            raise
        return job

    def run(self, job: Job) -> None:
        """Start streaming `job` from its provider (after `create`).

        Not once the runner is closed: the job then stays streaming, for the
        next start to end as interrupted.
        """
        if self._closed:
            return
        job.task = asyncio.create_task(self._produce(job), name=f"quietsync-job-{job.id}")

    async def get(self, job_id: str, *, follow: bool = False) -> Job:
        """Job `job_id`, whoever may see it; `UnknownJobError` if none, or past retention.

        A job this process does not hold is read from the store (one that
        ended before a restart, or another process's); with `follow`, its
        readers here get its events (rule 8). Past retention is answered like
        an unknown id, so the answer is the same one a caller who may not see
        the job gets.
        """
        job = self._jobs.get(job_id) or self._remote.get(job_id)
        if job is None:
            row = await self._find(job_id)
            job = None if row is None else Job(row, content=row.content)
        if job is not None and self._expired(job, _now_ms()):
            self._jobs.pop(job_id, None)
            job = None
        if job is None:
            raise no_such_job(job_id)
        if follow and job.id not in self._jobs:
            return self._remote.follow(job)
        return job

    def revoke(self, user: str, space: str) -> None:
        """`user` lost `space`: end their event streams on its jobs now (rule 7)."""
        for job in [*self._jobs.values(), *self._remote]:
            if job.row.space == space:
                job.revoke(user)

    async def abort(self, job: Job) -> JobStatus:
        """End a streaming job as aborted, once written; a finished job keeps its status."""
        if job.id in self._jobs:
            self.abort_asked(job.id)
        elif not job.finished:  # another process runs it (rule 8)
            assert self._peers is not None, "only a shared database has other processes' jobs"
            job = self._remote.follow(job)
            await self._peers.ask_abort(job.id)
        await job.done.wait()
        return job.row.status

    # -- what the other processes say (`quietsync.server.jobs.postgres_peers`) --

    def abort_asked(self, job_id: str) -> None:
        """End this process's job `job_id` as aborted, if it streams (once written)."""
        job = self._jobs.get(job_id)
        if job is not None and not job.finished and job.ending is None:
            self._end(job, "aborted", None)
            if job.task is not None:
                job.task.cancel()

    def written(self, job_id: str) -> None:
        """A write of `job_id` committed (by any process): its followers here read it."""
        self._remote.written(job_id)

    def heard_again(self) -> None:
        """Notifications may have gone unheard: every followed job is read again."""
        self._remote.read_all()

    async def _find(self, job_id: str) -> JobRow | None:
        return await self._run_on_store(lambda: self._writer.find(job_id))

    async def _adopt_orphans(self) -> None:
        """End the jobs of gone processes (this one's now) as interrupted (rule 5)."""
        for row in await self._run_on_store(self._writer.orphans):
            log.info("job %s was streaming in a server that stopped: interrupted", row.job_id)
            job = self._remote.take(row.job_id) or Job(row)
            job.advance(row, row.content)  # its followers here get the last flush first
            self._jobs[job.id] = job
            self._end(job, "error", INTERRUPTED)

    async def _adopt_loop(self) -> None:
        """Check for gone processes every `orphan_check` seconds (one indexed query)."""
        while True:
            await asyncio.sleep(self._config.orphan_check)
            try:
                await self._adopt_orphans()
            except StoreError as exc:
                self._log.failure(f"job orphans: {exc}", f"checking for orphans failed: {exc}")

    # -- producing and ending ----------------------------------------------

    async def _chat(self, job: Job) -> Chat:
        """The job's input after its thread's history (none if the store cannot say)."""
        space, thread = job.row.space, job.row.thread_id
        try:
            messages = await self._run_on_store(lambda: self._writer.thread_messages(space, thread))
        except StoreError as exc:
            self._log.failure(f"job history: {exc}", f"job {job.id} goes without history: {exc}")
            messages = {}
        return thread_history(
            messages,
            job.row.message_id,
            job.prompt,
            max_messages=self._config.history_messages,
            max_chars=self._config.history_chars,
        )

    async def _produce(self, job: Job) -> None:
        try:
            async with asyncio.timeout(self._config.timeout) as deadline:
                chat = await self._chat(job)
                async for token in self._provider.stream(chat):
                    if job.ending is not None:
                        return
                    job.parts.append(token)
                    self._mark(job)
        except TimeoutError:
            if not deadline.expired():
                self._end(job, "error", "the provider timed out")
            else:
                self._end(job, "error", TIMEOUT)
        except ProviderError as exc:
            self._log.failure(f"provider: {exc}", f"job {job.id}: {exc}")
            self._end(job, "error", str(exc))
        except asyncio.CancelledError:
            raise  # an abort (which asked for its end) or the server stopping
        except Exception as exc:  # a provider bug: the job ends, the server goes on
            self._log.failure(
                f"provider bug: {describe(exc)}", f"job {job.id}: {describe(exc)}", exc_info=exc
            )
            self._end(job, "error", f"provider failed: {exc}")
        else:
            self._end(job, "complete", None)

    def _end(self, job: Job, status: JobStatus, error: str | None) -> None:
        if job.ending is None and not job.finished:
            job.ending = (status, error)
            self._mark(job)

    def _mark(self, job: Job) -> None:
        self._dirty[job.id] = job
        self._wake.set()

    # -- flushing ----------------------------------------------------------

    async def _flush_loop(self) -> None:
        """One write per tick, until `close` (which makes the last one itself)."""
        while not self._closed:
            await self._next_tick()
            self._wake.clear()
            await self._flush_once()
            if not self._closed:
                await asyncio.sleep(self._config.flush_interval)

    async def _next_tick(self) -> None:
        """Wait to be woken, or until the first job backing off is due again."""
        due = min((job.retry_at for job in self._dirty.values()), default=None)
        if due is None:
            await self._wake.wait()
            return
        delay = due - asyncio.get_running_loop().time()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(delay, 0.0)):
                await self._wake.wait()

    async def _flush_once(self, *, everything: bool = False) -> None:
        """Write every dirty job that is due (`everything`: backing off or not).

        Never raises: a failed write is retried job by job (rule 4).
        """
        now = asyncio.get_running_loop().time()
        jobs = [j for j in self._dirty.values() if j.dirty and (everything or j.retry_at <= now)]
        for job in [*self._dirty.values()]:
            if job in jobs or not job.dirty:
                del self._dirty[job.id]
        if not jobs:
            return
        try:
            await self._write([self._item(job) for job in jobs], jobs)
        except Exception as exc:
            if len(jobs) == 1:
                await self._failed(jobs[0], exc)
                return
            for job in jobs:  # find the job (or the user) that fails; the others go on
                try:
                    await self._write([self._item(job)], [job])
                except Exception as alone:
                    await self._failed(job, alone)

    async def _failed(self, job: Job, exc: Exception) -> None:
        """Back `job` off after a failed write, or give up after `FLUSH_ATTEMPTS`; follow it
        if another process took it over (rule 8)."""
        if isinstance(exc, JobTakenError):
            log.warning("job %s was ended by another server process; following it", job.id)
            if job.task is not None:
                job.task.cancel()
            job.parts.clear()
            del self._jobs[job.id]
            self._remote.follow(job)
            return
        job.failures += 1
        self._log.failure(
            f"job write: {type(exc).__name__}",
            f"writing job {job.id} of user {job.row.user!r} failed "
            f"({job.failures} of {FLUSH_ATTEMPTS} tries): {describe(exc)}",
        )
        if job.failures < FLUSH_ATTEMPTS:
            backoff = self._config.flush_interval * 2**job.failures
            job.retry_at = asyncio.get_running_loop().time() + min(backoff, _MAX_BACKOFF)
            self._dirty[job.id] = job
            return
        if job.task is not None:
            job.task.cancel()
        job.parts.clear()  # what could not be stored is dropped
        aborted = job.ending is not None and job.ending[0] == "aborted"
        job.ending = ("aborted", None) if aborted else ("error", OUTPUT_NOT_STORED)
        try:
            await self._write([self._item(job)], [job])
        except Exception as last:
            self._log.failure(
                f"job end: {type(last).__name__}",
                f"ending job {job.id} failed, it ends unwritten: {describe(last)}",
            )
            self._end_unwritten(job)

    def _end_unwritten(self, job: Job) -> None:
        """End `job` in memory only: its readers and abort answer; a restart interrupts it."""
        assert job.ending is not None
        status, error = job.ending
        job.row = attrs.evolve(job.row, status=status, error=error, ended_ms=_now_ms())
        job.publish(job.final_event())
        job.done.set()

    def _item(self, job: Job) -> FlushItem:
        content = job.content + "".join(job.parts)
        if job.ending is None:
            return FlushItem(job.row, content)
        status, error = job.ending
        row = attrs.evolve(job.row, status=status, error=error, content=content, ended_ms=_now_ms())
        return FlushItem(row, content, final=True, watching=job.watching)

    async def _write(self, items: list[FlushItem], jobs: list[Job]) -> None:
        """Write `items` in one transaction, then apply, publish and announce them."""
        taken = [len(job.parts) for job in jobs]
        result = await self._run_on_store(lambda: self._writer.write(items))
        for space, batch in result.published.items():
            self._publish(space, batch)
        for job, item, count, stamp in zip(jobs, items, taken, result.stamps, strict=True):
            job.failures = 0
            del job.parts[:count]
            job.advance(attrs.evolve(item.row, stamp=stamp), item.content)
            if not item.final and job.parts:
                self._mark(job)  # tokens arrived while this write was in flight

    # -- retention ---------------------------------------------------------

    def _expired(self, job: Job, now_ms: int) -> bool:
        ended = job.row.ended_ms
        return ended is not None and now_ms - ended > self._config.retention * 1000

    async def _purge_loop(self) -> None:
        every = min(max(self._config.retention, 1.0), _PURGE_EVERY)
        while True:
            await asyncio.sleep(every)
            now = _now_ms()
            for job_id in [j.id for j in self._jobs.values() if self._expired(j, now)]:
                del self._jobs[job_id]
            horizon = now - int(self._config.retention * 1000)
            try:
                await self._run_on_store(lambda h=horizon: self._writer.purge(h))
            except StoreError as exc:
                self._log.failure(f"job purge: {exc}", f"purging old jobs failed: {exc}")
