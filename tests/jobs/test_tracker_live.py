"""The tracker against the real server: persistence, polling, lost jobs, notifications."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from quietsync.protocol.jobs import MESSAGES, NOTIFICATIONS
from quietsync.replica import (
    Notifications,
    Replica,
    RequestRefusedError,
    StreamTracker,
    Subscriber,
    TransportError,
    UnknownJobError,
)
from quietsync.replica.replica import sync_port
from quietsync.server.jobs.providers import scripted_reply
from tests.jobs.helpers import client, jobs_server, pull, push, server_copy, tracker_tasks, until
from tests.server.job_helpers import scripted

PROMPT = "tell me a story"
REPLY = "".join(scripted_reply(PROMPT, 20))


@pytest.mark.parametrize("mode", ["hybrid", "background"])
async def test_a_job_nobody_watches_is_persisted_in_full(tmp_path: Path, mode: str) -> None:
    async with jobs_server() as server, client(server, tmp_path / "c.db") as (replica, tracker):
        job_id = await tracker.start("t1", "m1", PROMPT, mode=mode)  # type: ignore[arg-type]
        assert await tracker.wait(job_id, timeout=10) == "complete"
        message = replica.get(MESSAGES, "m1")
        assert message is not None
        assert message["content"] == REPLY and message["pending"] is False
        assert message["job_status"] == "complete" and message["job_id"] == job_id
        assert message["role"] == "assistant" and message["thread_id"] == "t1"
        # only the client-owned fields wait in the outbox, plus the notification
        pushed = {(m.collection, m.field) for m in sync_port(replica).outbox_batch(100)}
        assert {f for c, f in pushed if c == MESSAGES} == {"thread_id", "role", "created_at"}
        assert Notifications(replica).list("t1")[0]["id"] == f"job:{job_id}:complete"


async def test_polling_only_gets_the_same_result(tmp_path: Path) -> None:
    async with (
        jobs_server() as server,
        client(server, tmp_path / "c.db", live=False, poll_interval=0.02) as (replica, tracker),
    ):
        job_id = await tracker.start("t1", "m1", PROMPT, mode="background")
        assert await tracker.wait(job_id, timeout=10) == "complete"
        assert replica.get(MESSAGES, "m1")["content"] == REPLY  # type: ignore[index]


async def test_subscribers_get_every_delta_once_and_suppress_the_notification(
    tmp_path: Path,
) -> None:
    async with jobs_server() as server, client(server, tmp_path / "c.db") as (replica, tracker):
        deltas: list[str] = []
        done = asyncio.Event()
        job_id = await tracker.start("t1", "m1", PROMPT, mode="background")
        attached = tracker.subscribe(
            job_id,
            Subscriber(on_update=lambda d, c: deltas.append(d), on_complete=done.set),
        )
        async with asyncio.timeout(10):
            await done.wait()
        assert attached.content + "".join(deltas) == REPLY
        assert replica.query(NOTIFICATIONS) == []  # somebody watched: no notification


async def test_a_failed_job_ends_in_error_with_a_warning(tmp_path: Path) -> None:
    async with (
        jobs_server(jobs=scripted(tokens=20, token_delay=0.002, fail_after=5)) as server,
        client(server, tmp_path / "c.db") as (replica, tracker),
    ):
        job_id = await tracker.start("t1", "m1", PROMPT)
        assert await tracker.wait(job_id, timeout=10) == "error"
        message = replica.get(MESSAGES, "m1")
        assert message is not None and message["pending"] is False and message["error"]
        assert message["content"] == "".join(scripted_reply(PROMPT, 20)[:5])
        (note,) = Notifications(replica).list()
        assert note["type"] == "system.warning" and note["id"] == f"job:{job_id}:error"


async def test_a_job_the_server_does_not_know_ends_in_error(tmp_path: Path) -> None:
    async with jobs_server() as server, client(server, tmp_path / "c.db") as (replica, tracker):
        replica.put(MESSAGES, "m1", {"thread_id": "t1", "role": "assistant", "created_at": 1})
        tracker.track("no-such-job", "t1", "m1")
        assert await tracker.wait("no-such-job", timeout=10) == "error"
        message = replica.get(MESSAGES, "m1")
        assert message is not None and message["pending"] is False
        assert message["job_status"] == "error" and "no longer knows" in message["error"]
        assert Notifications(replica).list()[0]["type"] == "system.warning"


async def test_a_refused_start_ends_the_message_and_says_why(tmp_path: Path) -> None:
    async with (
        jobs_server(jobs=scripted(tokens=20, token_delay=0.05, max_per_user=1)) as server,
        client(server, tmp_path / "c.db") as (replica, tracker),
    ):
        first = await tracker.start("t1", "m1", PROMPT)
        with pytest.raises(RequestRefusedError) as refused:
            await tracker.start("t1", "m2", PROMPT)
        assert refused.value.status == 429 and refused.value.code == "too_many_jobs"
        message = replica.get(MESSAGES, "m2")
        assert message is not None and message["pending"] is False
        assert message["job_status"] == "error"
        await tracker.abort(first)
        assert await tracker.wait(first, timeout=10) == "aborted"
        assert replica.query(NOTIFICATIONS) == []  # aborts notify nobody


async def test_muted_threads_get_no_notification(tmp_path: Path) -> None:
    async with jobs_server() as server, client(server, tmp_path / "c.db") as (replica, tracker):
        tracker.notifications.mute("t1")
        job_id = await tracker.start("t1", "m1", PROMPT)
        assert await tracker.wait(job_id, timeout=10) == "complete"
        assert replica.query(NOTIFICATIONS) == []


async def test_the_servers_notification_and_ours_are_one_record(tmp_path: Path) -> None:
    """Polling only: the server sees no watcher and notifies too; both copies converge."""
    async with (
        jobs_server() as server,
        client(server, tmp_path / "c.db", live=False, poll_interval=0.02) as (replica, tracker),
        server.client("alice") as http,
    ):
        job_id = await tracker.start("t1", "m1", PROMPT, mode="background")
        assert await tracker.wait(job_id, timeout=10) == "complete"
        key = f"job:{job_id}:complete"
        ours = replica.get(NOTIFICATIONS, key)
        answer = await push(http, replica)
        await pull(http, replica)
        assert answer["conflicts"] == [] and replica.conflicts() == []
        assert answer["suppressed"] >= 1  # the server had written the identical record
        assert [n["id"] for n in Notifications(replica).list()] == [key]
        with await server_copy(http, tmp_path / "observer.db") as copy:
            assert copy.get(NOTIFICATIONS, key) == ours == replica.get(NOTIFICATIONS, key)
            assert copy.get(MESSAGES, "m1") == replica.get(MESSAGES, "m1")


async def test_close_leaves_no_task_and_the_job_goes_on(tmp_path: Path) -> None:
    async with jobs_server(jobs=scripted(tokens=20, token_delay=0.02)) as server:
        async with client(server, tmp_path / "c.db") as (replica, tracker):
            job_id = await tracker.start("t1", "m1", PROMPT)
            await until(lambda: (replica.get(MESSAGES, "m1") or {}).get("content"))
            assert tracker_tasks()
        assert tracker_tasks() == []
        async with client(server, tmp_path / "c.db") as (replica, tracker):
            assert await tracker.resume_pending() == [job_id]
            assert await tracker.wait(job_id, timeout=10) == "complete"
            assert replica.get(MESSAGES, "m1")["content"] == REPLY  # type: ignore[index]


async def test_a_long_reply_arrives_whole_in_one_snapshot_line(tmp_path: Path) -> None:
    """A finished job's snapshot is one SSE line far longer than aiohttp's line limit."""
    tokens = 30_000
    async with jobs_server(jobs=scripted(tokens=tokens, token_delay=0)) as server:
        async with client(server, tmp_path / "a.db") as (_, tracker):
            job_id = await tracker.start("t1", "m1", PROMPT, mode="background")
            assert await tracker.wait(job_id, timeout=20) == "complete"
        async with client(server, tmp_path / "b.db") as (replica, tracker):
            tracker.track(job_id, "t1", "m1")  # from offset 0: snapshot, status
            assert await tracker.wait(job_id, timeout=20) == "complete"
            content = replica.get(MESSAGES, "m1")["content"]  # type: ignore[index]
            assert len(content) > 2**17  # past what aiohttp's readline accepts
            assert content == "".join(scripted_reply(PROMPT, tokens))


async def test_an_unreachable_server_fails_the_start_and_ends_the_message(tmp_path: Path) -> None:
    async with jobs_server() as server:
        url = server.url
    with Replica.open(tmp_path / "c.db") as replica:
        tracker = StreamTracker(replica, url, token="token-a")
        try:
            with pytest.raises(TransportError):
                await tracker.start("t1", "m1", PROMPT)
        finally:
            await tracker.close()
        message = replica.get(MESSAGES, "m1")
        assert message is not None and message["pending"] is False
        assert message["job_status"] == "error" and "could not start" in message["error"]
        assert tracker_tasks() == []


async def test_unknown_jobs_and_bad_tokens_are_clear_errors(tmp_path: Path) -> None:
    async with jobs_server() as server, client(server, tmp_path / "c.db") as (replica, tracker):
        with pytest.raises(KeyError, match="does not follow"):
            await tracker.wait("nope")
        with pytest.raises(KeyError, match="does not follow"):
            tracker.subscribe("nope", Subscriber())
        with pytest.raises(UnknownJobError):
            await tracker.abort("nope")
        stranger = StreamTracker(replica, server.url, token="wrong")
        try:
            with pytest.raises(RequestRefusedError) as refused:
                await stranger.start("t1", "m9", PROMPT)
            assert refused.value.status == 401
        finally:
            await stranger.close()
