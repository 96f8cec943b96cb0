"""`ThreadSession`: the reference note's §6 unit tests, one test each, by name.

Run against the real server (scripted provider) and a real replica file: the
session never owns a stream, so what it must not do (abort, clobber, load
twice, stay silent) is only visible with the real tracker underneath.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from quietsync.protocol.jobs import MESSAGES, NOTIFICATIONS
from quietsync.replica import Notifications, Replica, StreamTracker, ThreadSession
from quietsync.server.jobs.providers import scripted_reply
from quietsync.testing import RunningServer
from tests.jobs.helpers import client, jobs_server
from tests.server.job_helpers import scripted

PROMPT = "what is a hybrid logical clock"
SLOW = {"jobs": scripted(tokens=20, token_delay=0.02)}


@pytest.fixture
async def jobs(tmp_path: Path) -> AsyncIterator[tuple[RunningServer, Replica, StreamTracker]]:
    async with jobs_server(**SLOW) as server, client(server, tmp_path / "c.db") as (r, t):
        yield server, r, t


async def sending(session: ThreadSession) -> asyncio.Task[str]:
    """`send` started and suspended inside the start request: mode set, job id not yet known."""
    task = asyncio.get_running_loop().create_task(session.send(PROMPT))
    await asyncio.sleep(0)  # one loop turn: the task runs up to its start request's I/O
    assert session.loading
    return task


def reply(replica: Replica, session: ThreadSession) -> dict[str, Any]:
    (message,) = [m for m in session.messages if m["role"] == "assistant"]
    return {"id": message["id"], **(replica.get(MESSAGES, message["id"]) or {})}


async def test_clear_with_hybrid_mode_and_no_job_id_does_not_abort(jobs: Any) -> None:
    _, replica, tracker = jobs
    session = ThreadSession(replica, tracker, "t1")
    task = await sending(session)
    assert session.background_job_mode == "hybrid" and session.background_job_id is None
    session.clear()
    assert session.detached
    await task
    job_id = session.background_job_id
    assert job_id is not None and tracker.subscriber_count(job_id) == 0
    assert await tracker.wait(job_id, timeout=10) == "complete"
    assert reply(replica, session)["content"] == "".join(scripted_reply(PROMPT, 20))


async def test_clear_with_background_streaming_disallowed_aborts(jobs: Any) -> None:
    _, replica, tracker = jobs
    for clear_before_id in (True, False):
        session = ThreadSession(replica, tracker, "t1", background_streaming=False)
        task = await sending(session)
        assert session.background_job_mode == "none"
        if not clear_before_id:
            await task
        job_id = session.background_job_id
        session.clear()
        if clear_before_id:
            await task  # the id arrives after clear(): the abort goes out then
            job_id = session.background_job_id
        assert job_id is not None
        assert await tracker.wait(job_id, timeout=10) == "aborted"
        message = replica.get(
            MESSAGES, next(m for m in session.messages if m["role"] == "assistant")["id"]
        )
        assert message["job_status"] == "aborted" and message["pending"] is False
    assert replica.query(NOTIFICATIONS) == []


async def test_message_history_watcher_skips_update_when_pending_assistant_exists(
    jobs: Any,
) -> None:
    _, replica, tracker = jobs
    session = ThreadSession(replica, tracker, "t1")
    stale = [{"id": "old", "thread_id": "t1", "role": "user", "content": "stale"}]
    await session.send(PROMPT)
    assert session.loading and not session.apply_history(stale)  # loading
    session.loading = False  # a pending reply alone must also block it
    assert any(m.get("pending") for m in session.messages)
    assert not session.apply_history(stale)
    assert [m["role"] for m in session.messages] == ["user", "assistant"]
    assert await tracker.wait(session.background_job_id, timeout=10) == "complete"
    assert not session.loading and not any(m.get("pending") for m in session.messages)
    assert session.apply_history(stale) and session.messages == stale


async def test_ensure_history_synced_reentrancy_guard(jobs: Any) -> None:
    _, replica, tracker = jobs
    replica.put(
        MESSAGES, "u1", {"thread_id": "t1", "role": "user", "content": "hi", "created_at": 1}
    )
    session = ThreadSession(replica, tracker, "t1")
    await asyncio.gather(*(session.ensure_history_synced() for _ in range(10)))
    await session.ensure_history_synced()
    assert session.history_loads == 1
    assert [m["id"] for m in session.messages] == ["u1"]


async def test_emit_background_complete_fires_when_thread_is_closed(jobs: Any) -> None:
    """Closed: one notification. Open: none. Muted: none. Server too: still one record."""
    _, replica, tracker = jobs
    notes = Notifications(replica)
    outcomes = {}
    for case in ("closed", "open", "muted"):
        thread = f"t-{case}"
        if case == "muted":
            notes.mute(thread)
        session = ThreadSession(replica, tracker, thread)
        await session.send(PROMPT)
        if case != "open":
            session.clear()
        await tracker.wait(session.background_job_id or "", timeout=10)
        outcomes[case] = [n["type"] for n in notes.list(thread)]
    assert outcomes == {"closed": ["ai.message.received"], "open": [], "muted": []}
