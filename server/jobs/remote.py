"""`RemoteJobs`: the jobs of other server processes that readers here follow (PostgreSQL).

A job runs in one process (`quietsync.server.jobs.postgres_store`); a reader
of its events, or an abort waiting for its end, may be connected to any
other. There the job is a `Job` like a local one, with its watchers, built
from its stored row and followed: each ``written <job id>`` notification
(`JobRunner.written`) reads its row and its message's content again, in one
statement (`JobStore.find`), and `Job.advance` turns what changed into the
same events the owner's watchers get: a ``delta`` with the new text and the
write's stamp, then the final ``status``, after which it is no longer
followed. Everything a reader sees here was committed, as on the owner.

Reads of one job never overlap: a notification that arrives during a read
makes one more read after it (so several flushes may reach a reader here as
one delta, the same text). A job is read once as soon as it is followed, as a
write may have committed between the read that found it and the follow.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterator

from quietsync.protocol.ratelog import RateLimitedLog
from quietsync.server.errors import StoreError
from quietsync.server.jobs.job import Job
from quietsync.server.jobs.store import JobRow

__all__ = ["RemoteJobs"]

log = logging.getLogger(__name__)

Find = Callable[[str], Awaitable[JobRow | None]]


class RemoteJobs:
    """The followed jobs of other processes (module docstring)."""

    def __init__(self, find: Find) -> None:
        self._find = find
        self._jobs: dict[str, Job] = {}
        self._reads: dict[str, asyncio.Task[None]] = {}
        self._stale: set[str] = set()
        self._log = RateLimitedLog(log)

    def __iter__(self) -> Iterator[Job]:
        return iter(list(self._jobs.values()))

    def get(self, job_id: str) -> Job | None:
        return self._jobs.get(job_id)

    def follow(self, job: Job) -> Job:
        """The job to watch for `job` (read from the store, not this process's): the one
        already followed, else `job`, followed from now on. A finished job is not followed."""
        if job.finished:
            return job
        followed = self._jobs.setdefault(job.id, job)
        if followed is job:
            self.written(job.id)
        return followed

    def take(self, job_id: str) -> Job | None:
        """Stop following `job_id` (this process now runs it); the followed job, if any."""
        return self._jobs.pop(job_id, None)

    def written(self, job_id: str) -> None:
        """A write of `job_id` committed: read it, if it is followed."""
        job = self._jobs.get(job_id)
        if job is None:
            return
        if job_id in self._reads:
            self._stale.add(job_id)
            return
        self._reads[job_id] = asyncio.create_task(self._read(job), name=f"quietsync-{job_id}")

    def read_all(self) -> None:
        """Read every followed job (notifications may have gone unheard)."""
        for job_id in list(self._jobs):
            self.written(job_id)

    async def _read(self, job: Job) -> None:
        try:
            while self._jobs.get(job.id) is job:
                self._stale.discard(job.id)
                row = await self._find(job.id)
                if self._jobs.get(job.id) is not job:
                    return  # taken over by this process meanwhile
                if row is None:  # ended and purged unheard (retention 0): nothing more to say
                    del self._jobs[job.id]
                    job.publish(None)
                    job.done.set()
                    return
                job.advance(row, row.content)
                if job.finished:
                    del self._jobs[job.id]
                if job.id not in self._stale:
                    return
        except StoreError as exc:  # the next notification, or reconnect, reads it again
            self._log.failure(f"follow: {exc}", f"reading job {job.id} failed: {exc}")
        finally:
            del self._reads[job.id]

    async def close(self) -> None:
        """Stop reading; end every follower's stream."""
        reads = list(self._reads.values())
        for task in reads:
            task.cancel()
        await asyncio.gather(*reads, return_exceptions=True)
        for job in self._jobs.values():
            job.publish(None)
        self._log.flush()
