"""Double writer: the reference app's failure, client and server both writing a streamed reply.

A server job streams a scripted reply; the client follows it three ways, with
the same job settings and the same reply each time:

1. **naive, suppression off**: the client writes what it receives into the
   message as ordinary local writes (``replica.put`` of the fields the job
   wrote in that flush: ``content`` on a delta, all five job fields on the
   start and the end) and pushes them, while the server's job writes the same
   values. Every pushed write is concurrent with the job's write of the same
   flush: one reported conflict per write, the noise the reference app showed.
2. **naive, suppression on** (the server default): the same writes carry the
   same content as the job's, so every one is counted suppressed, none reported.
3. **mirror writes** (the real design, ``docs/streaming.md``): `StreamTracker`
   mirrors the job with the server's stamps and never pushes job fields, while
   a `SyncClient` runs beside it: no conflict event at all.

The job runs in lockstep with the client (`LockstepProvider`): the next token
is produced only once the client has handled the previous flush, so each
client write meets exactly the job write it copies and the counts are exact,
not a race. Reported and suppressed come from the server's push answers as the
replica recorded them; lost counts reply characters missing from the message
after a final sync.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import attrs

from benchmarks.results import ScenarioResult
from quietsync.protocol.jobs import MESSAGES
from quietsync.replica import Replica, StreamTracker, Subscriber, SyncClient
from quietsync.replica.jobs.client import JobsClient
from quietsync.replica.jobs.mirror import JobState
from quietsync.server.jobs import Chat, JobsConfig, scripted_reply
from quietsync.testing import RunningServer, running_server

__all__ = ["LockstepProvider", "double_writer"]

USER, TOKEN = "bench", "bench-token"
THREAD, PROMPT = "chat", "stream me a reply please"


@attrs.define(eq=False)
class LockstepProvider:
    """The scripted reply, one token per `release()`, and one more release before it ends.

    The job flushes each token alone, so every flush is one event the client
    handles before the next exists (the end included).
    """

    tokens: int
    _gate: asyncio.Semaphore = attrs.field(factory=lambda: asyncio.Semaphore(0))

    def release(self) -> None:
        self._gate.release()

    async def stream(self, chat: Chat) -> AsyncIterator[str]:
        for token in scripted_reply(chat.input, self.tokens):
            await self._gate.acquire()
            yield token
        await self._gate.acquire()


@attrs.frozen
class _Run:
    """What one way of following the job did."""

    content_writes: int
    seconds: float
    convergence_s: float
    note: str


async def _naive(server: RunningServer, provider: LockstepProvider, replica: Replica) -> _Run:
    """The reference app: each event's fields written by `put` and pushed at once."""
    sync = SyncClient(replica, server.url, token=TOKEN)
    jobs = JobsClient(server.url, token=TOKEN)
    writes = pushed = 0
    try:
        started = time.perf_counter()
        job_id, stream = await jobs.start(THREAD, "reply", PROMPT, mode="hybrid")
        assert stream is not None
        state = JobState(job_id, THREAD, "reply")
        try:
            async for event in stream:
                if event.type == "keepalive":
                    continue
                state.apply(event)
                fields = {"content": state.content} if event.type == "delta" else state.values()
                replica.put(MESSAGES, "reply", fields)
                writes += event.type == "delta"
                pushed += (await sync.push()).pushed
                if state.final:
                    break
                provider.release()
        finally:
            await stream.aclose()
        ended = time.perf_counter()
        await sync.sync_once()
        note = f"{pushed} job-field writes pushed, each concurrent with the job's"
        return _Run(writes, ended - started, time.perf_counter() - ended, note)
    finally:
        await jobs.close()
        await sync.stop()


async def _mirrored(server: RunningServer, provider: LockstepProvider, replica: Replica) -> _Run:
    """The design: the tracker's mirror writes, a running `SyncClient` beside it."""
    writes = 0

    def on_update(_text: str, _content: str) -> None:
        nonlocal writes
        writes += 1
        provider.release()

    sync = SyncClient(replica, server.url, token=TOKEN)
    tracker = StreamTracker(replica, server.url, token=TOKEN)
    try:
        await sync.start()
        started = time.perf_counter()
        job_id = await tracker.start(THREAD, "reply", PROMPT)
        attachment = tracker.subscribe(job_id, Subscriber(on_update=on_update))
        provider.release()  # the slot of the start's snapshot, which appends nothing
        await tracker.wait(job_id, timeout=60)
        attachment.close()
        ended = time.perf_counter()
        await sync.sync_once()
        note = "mirror writes carry the job's stamps, never pushed"
        return _Run(writes, ended - started, time.perf_counter() - ended, note)
    finally:
        await tracker.close()
        await sync.stop()


async def _row(
    tmp: Path, variant: str, tokens: int, *, suppress: bool, mirror: bool
) -> ScenarioResult:
    provider = LockstepProvider(tokens)
    name = f"{'mirror' if mirror else 'naive'}-{'on' if suppress else 'off'}"
    async with running_server(
        tmp / f"{name}-server.db",
        users={USER: TOKEN},
        suppress_identical=suppress,
        jobs=JobsConfig(provider=provider, flush_interval=0.005),
    ) as server:
        with Replica.open(tmp / f"{name}-replica.db", node_id="app") as replica:
            follow = _mirrored if mirror else _naive
            run = await follow(server, provider, replica)
            content = (replica.get(MESSAGES, "reply") or {}).get("content") or ""
            expected = "".join(scripted_reply(PROMPT, tokens))
            return ScenarioResult(
                scenario="double-writer",
                variant=variant,
                ops=run.content_writes,
                seconds=run.seconds,
                convergence_s=run.convergence_s,
                reported=len(replica.conflicts()),
                suppressed=replica.suppressed_count(),
                lost=0 if content == expected else max(1, len(expected) - len(content)),
                note=run.note,
            )


async def double_writer(tmp: Path, *, quick: bool) -> list[ScenarioResult]:
    """The three rows, each on a fresh server and replica, the same job every time."""
    tokens = 20 if quick else 100
    return [
        await _row(tmp, variant, tokens, suppress=suppress, mirror=mirror)
        for variant, suppress, mirror in (
            ("put+push, suppression off", False, False),
            ("put+push, suppression on", True, False),
            ("tracker mirror + SyncClient", True, True),
        )
    ]
