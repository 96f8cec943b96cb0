"""Jobs across server processes on one PostgreSQL database: real ``quietsync serve``
processes, a job started on one, read, aborted, limited and recovered through the others.

What is checked (`quietsync.server.jobs.postgres_store`): a job runs in the process that
accepted it, and every process answers for it the same (events, poll, abort); the limits
count every process's jobs; a process killed with ``kill -9`` has its streaming jobs ended
as interrupted by exactly one survivor, keeping the prefix it flushed; a process whose
job was taken over while it lived writes it no more, and follows it.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from quietsync.protocol import MESSAGES, NOTIFICATIONS, JobEvent, notification_for
from quietsync.replica import Replica, StreamTracker, Subscriber
from quietsync.server.jobs.feature import open_job_store
from quietsync.server.jobs.postgres_peers import KEEPALIVE_IDLE, PostgresPeers
from quietsync.server.jobs.postgres_store import JOBS_CHANNEL, OWNER_LOCK, PostgresJobStore
from quietsync.server.postgres_store import PostgresStore
from tests.server.job_helpers import WAIT, events_of, poll, records, reply, rest_of, scripted, serve
from tests.server.job_helpers import start as start_helper
from tests.server.processes import ServeProcess, serve_process
from tests.server.test_jobs_lifecycle import final_event

ALICE, BOB = "token-alice-0123456789", "token-bob-0123456789"
TOKENS = {ALICE: "alice", BOB: "bob"}


def job_args(tmp_path: Path, tokens: int, delay: float, *more: str) -> tuple[str, ...]:
    path = tmp_path / "tokens.json"
    path.write_text(json.dumps(TOKENS))
    return (
        *("--tokens", str(path), "--job-tokens", str(tokens)),
        *("--job-token-delay", str(delay), *more),
    )


@asynccontextmanager
async def servers(pg_url: str, count: int, *args: str) -> AsyncIterator[list[ServeProcess]]:
    async with AsyncExitStack() as stack:
        yield [await stack.enter_async_context(serve_process(pg_url, *args)) for _ in range(count)]


def client(server: ServeProcess, token: str = ALICE) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(base_url=server.url, headers={"Authorization": f"Bearer {token}"})


async def try_start(http: aiohttp.ClientSession, message_id: str, thread_id: str = "t1") -> int:
    """Start a background job; the answer's status (202, or the refusal's)."""
    body = {"thread_id": thread_id, "message_id": message_id, "input": "hello there"}
    async with http.post("/v1/jobs", json={**body, "mode": "background"}) as resp:
        await resp.read()
        return resp.status


async def start(http: aiohttp.ClientSession, message_id: str, thread_id: str = "t1") -> str:
    body = {"thread_id": thread_id, "message_id": message_id, "input": "hello there"}
    async with http.post("/v1/jobs", json={**body, "mode": "background"}) as resp:
        assert resp.status == 202, await resp.text()
        return str((await resp.json())["job_id"])


async def until(
    http: aiohttp.ClientSession, job_id: str, done: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    """Poll the job until its answer is `done` (within `WAIT`); that answer."""
    async with asyncio.timeout(WAIT):
        while True:
            answer = await poll(http, job_id)
            if done(answer):
                return answer
            await asyncio.sleep(0.02)


async def until_written(http: aiohttp.ClientSession, job_id: str) -> dict[str, Any]:
    """Poll until some of the job's content is written."""
    return await until(http, job_id, lambda answer: answer["content_length"] > 0)


async def until_ended(http: aiohttp.ClientSession, job_id: str) -> dict[str, Any]:
    return await until(http, job_id, lambda answer: answer["status"] != "streaming")


def fields_of(folded: dict[Any, Any], collection: str, key: str) -> dict[str, Any]:
    return {field: value for field, (value, _) in folded[collection, key].items()}


def text_of(events: list[JobEvent]) -> str:
    """The content a reader builds from a stream: the snapshot, then each delta at its
    offset (each must continue the text so far)."""
    text = ""
    for event in events:
        if event.type in ("snapshot", "delta"):
            assert event.offset == len(text), (event, len(text))
            text += event.text
    return text


async def test_a_job_started_on_one_process_is_watched_and_polled_from_another(
    pg_url: str, tmp_path: Path
) -> None:
    """Events on B of a job running on A: every token in order, then the end; B's poll
    answers as A's."""
    async with (
        servers(pg_url, 2, *job_args(tmp_path, 30, 0.02)) as (first, second),
        client(first) as on_first,
        client(second) as on_second,
    ):
        job_id = await start(on_first, "m1")
        async with on_second.get(f"/v1/jobs/{job_id}/events") as resp:
            assert resp.status == 200
            events = await rest_of(events_of(resp))
        assert [e.type for e in events[:1]] == ["snapshot"]
        assert sum(e.type == "delta" for e in events) >= 2  # it streamed to B, not only ended
        assert events[-1].type == "status" and events[-1].status == "complete"
        assert text_of(events) == reply(30) and events[-1].content_length == len(reply(30))
        assert await poll(on_second, job_id) == await poll(on_first, job_id)
        folded, _ = await records(on_second)
    assert str(events[-1].stamp) == folded[MESSAGES, "m1"]["job_status"][1]


async def test_an_abort_through_another_process_answers_once_the_end_is_written(
    pg_url: str, tmp_path: Path
) -> None:
    async with (
        servers(pg_url, 2, *job_args(tmp_path, 500, 0.02)) as (first, second),
        client(first) as on_first,
        client(second) as on_second,
    ):
        job_id = await start(on_first, "m1")
        async with on_first.get(f"/v1/jobs/{job_id}/events") as watching:
            stream = events_of(watching)
            assert (await anext(stream)).type == "snapshot"
            await until_written(on_second, job_id)
            async with on_second.post(f"/v1/jobs/{job_id}/abort") as resp:
                assert resp.status == 200
                assert await resp.json() == {"job_id": job_id, "status": "aborted"}
            folded, _ = await records(on_second)  # read at once: the end is already written
            rest = await rest_of(stream)
        answer = await poll(on_first, job_id)
    message = fields_of(folded, MESSAGES, "m1")
    assert (message["job_status"], message["pending"]) == ("aborted", False)
    assert rest[-1].type == "status" and rest[-1].status == "aborted"
    assert (answer["status"], answer["content_delta"]) == ("aborted", message["content"])


async def test_the_limits_hold_for_starts_racing_through_two_processes(
    pg_url: str, tmp_path: Path
) -> None:
    """Alice's 8 starts at once, 4 through each process, with at most 3 per user: exactly 3
    are accepted. Bob's start of one message through both at once: exactly one is."""
    args = job_args(tmp_path, 500, 0.05, "--job-max-per-user", "3")
    async with (
        servers(pg_url, 2, *args) as both,
        client(both[0]) as a1,
        client(both[1]) as a2,
        client(both[0], BOB) as b1,
        client(both[1], BOB) as b2,
    ):
        statuses = await asyncio.gather(*(try_start((a1, a2)[i % 2], f"m{i}") for i in range(8)))
        assert sorted(statuses) == [202] * 3 + [429] * 5
        for round_ in range(2):
            both_at_once = await asyncio.gather(
                try_start(b1, f"x{round_}"), try_start(b2, f"x{round_}")
            )
            assert sorted(both_at_once) == [202, 409]


async def test_a_killed_process_has_its_jobs_interrupted_by_one_survivor(
    pg_url: str, tmp_path: Path
) -> None:
    """Three processes; A runs two jobs: one followed by a replica's stream tracker through
    B, one nobody watches. C starts while they stream (and leaves them be). A is killed
    with SIGKILL: the tracker sees the end, both messages keep the prefix A flushed, and
    the unwatched job's user gets its notification, written once, by the one survivor that
    ended it."""
    args = job_args(tmp_path, 2000, 0.01)
    async with AsyncExitStack() as stack:
        first, second = [
            await stack.enter_async_context(serve_process(pg_url, *args)) for _ in range(2)
        ]
        on_first = await stack.enter_async_context(client(first))
        on_second = await stack.enter_async_context(client(second))
        watched, unwatched = await start(on_first, "m1"), await start(on_first, "m2", "t2")
        third = await stack.enter_async_context(serve_process(pg_url, *args))
        on_third = await stack.enter_async_context(client(third))
        assert (await until_written(on_third, unwatched))["status"] == "streaming"
        replica = stack.enter_context(Replica.open(tmp_path / "client.db"))
        tracker = StreamTracker(replica, second.url, token=ALICE)
        stack.push_async_callback(tracker.close)
        tracker.track(watched, "t1", "m1")
        seen = asyncio.Event()
        tracker.subscribe(watched, Subscriber(on_update=lambda *_: seen.set()))
        await asyncio.wait_for(seen.wait(), WAIT)

        first.proc.kill()
        killed = time.perf_counter()
        assert await tracker.wait(watched, timeout=WAIT) == "error"
        noticed = time.perf_counter() - killed
        ends = [await until_ended(on_third, job) for job in (watched, unwatched)]
        folded, _ = await records(on_second)
        mirrored = replica.get(MESSAGES, "m1")
    for end, key in zip(ends, ("m1", "m2"), strict=True):
        assert (end["status"], end["error"]) == ("error", "interrupted")
        assert end["content_delta"] and reply(2000).startswith(end["content_delta"])
        message = fields_of(folded, MESSAGES, key)
        assert (message["content"], message["job_status"]) == (end["content_delta"], "error")
    assert mirrored is not None and mirrored["content"] == ends[0]["content_delta"]
    notification, fields = notification_for("t2", final_event(ends[1]), ends[1]["content_delta"])
    assert fields_of(folded, NOTIFICATIONS, notification) == fields
    stamps = {stamp for _, stamp in folded[NOTIFICATIONS, notification].values()}
    assert stamps == {folded[MESSAGES, "m2"]["job_status"][1]}  # one end wrote both
    print(f"\nkill -9 to the tracker seeing the end, through a survivor: {noticed:.2f} s")


async def take_over(pg_url: str, job_id: str) -> str:
    """End `job_id` as a survivor would (its row moved to another owner, ended, a wake-up
    sent); its message's content then."""
    db = await asyncpg.connect(pg_url)
    try:
        async with db.transaction():
            await db.execute(
                "UPDATE jobs SET owner = owner + 1, status = 'error', error = 'interrupted',"
                " ended_ms = 1 WHERE job_id = $1",
                job_id,
            )
            await db.execute("SELECT pg_notify($1, $2)", JOBS_CHANNEL, f"written {job_id}")
        content = await db.fetchval(
            "SELECT value FROM fields WHERE key = 'm1' AND field = 'content'"
        )
    finally:
        await db.close()
    return str(json.loads(content))


async def test_a_job_taken_over_while_its_process_lives_is_followed_not_written(
    pg_url: str,
) -> None:
    """A process that lost its jobs connection for a while may find its job ended by a
    survivor (`take_over`). Its next write is refused, and its own readers get the stored
    end; the message keeps what was written before the takeover."""
    async with (
        serve(pg_url, jobs=scripted(tokens=2000, token_delay=0.01)) as server,
        server.client("alice") as http,
    ):
        job_id = (await start_helper(http))["job_id"]
        async with http.get(f"/v1/jobs/{job_id}/events") as resp:
            stream = events_of(resp)
            while (await anext(stream)).type != "delta":
                pass
            taken = await take_over(pg_url, job_id)
            rest = await rest_of(stream)
        folded, _ = await records(http)
    assert rest[-1].type == "status"
    assert (rest[-1].status, rest[-1].error) == ("error", "interrupted")
    assert folded[MESSAGES, "m1"]["content"][0] == taken


class ShownPeers(PostgresPeers):
    """Reads its own session's keepalive setting as its connection opens."""

    keepalive_idle = ""

    async def _prepare(self, db: asyncpg.Connection) -> None:
        await super()._prepare(db)
        self.keepalive_idle = await db.fetchval("SHOW tcp_keepalives_idle")


_HELD = (
    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid = $1"
    " AND objid = $2 AND granted"
)


async def lock_held(db: asyncpg.Connection, owner: int) -> bool:
    return bool(await db.fetchval(_HELD, OWNER_LOCK, owner))


async def test_the_jobs_connection_holds_the_owner_lock_with_keepalives(pg_url: str) -> None:
    """Each process takes an owner number and holds its lock while its jobs connection
    lives; the connection asks for keepalives, so a vanished host's lock goes too."""
    store = await asyncio.to_thread(PostgresStore, pg_url)  # (it runs its own event loop)
    db = await asyncpg.connect(pg_url)
    try:
        jobs = await asyncio.to_thread(open_job_store, store)
        assert isinstance(jobs, PostgresJobStore)
        peers = ShownPeers(pg_url, jobs, asyncio.to_thread)
        await peers.start()
        assert jobs.owner > 0 and await lock_held(db, jobs.owner)
        await peers.stop()
        async with asyncio.timeout(WAIT):
            while True:
                if not await lock_held(db, jobs.owner):
                    break
                await asyncio.sleep(0.01)
    finally:
        await db.close()
        await asyncio.to_thread(store.close)
    assert peers.keepalive_idle == str(KEEPALIVE_IDLE)
