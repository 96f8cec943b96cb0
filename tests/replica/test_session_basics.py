"""`ThreadSession` and `ChatPane` beyond the reference's list: shapes, order, refusals."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from quietsync.protocol.jobs import MESSAGES
from quietsync.replica import ChatPane, Replica, RequestRefusedError, StreamTracker, ThreadSession
from quietsync.server.jobs.providers import scripted_reply
from tests.jobs.helpers import client, jobs_server
from tests.server.job_helpers import scripted

PROMPT = "order matters"


@pytest.fixture
async def jobs(tmp_path: Path) -> AsyncIterator[tuple[Replica, StreamTracker]]:
    async with jobs_server() as server, client(server, tmp_path / "c.db") as pair:
        yield pair


async def test_messages_are_record_fields_plus_id_oldest_first(jobs: Any) -> None:
    replica, tracker = jobs
    session = ThreadSession(replica, tracker, "t1")
    for _ in range(2):
        await session.send(PROMPT)
        await tracker.wait(session.background_job_id, timeout=10)
    fresh = ThreadSession(replica, tracker, "t1")
    await fresh.ensure_history_synced()
    assert [m["role"] for m in fresh.messages] == ["user", "assistant"] * 2
    assert fresh.messages == session.messages
    reply = fresh.messages[1]
    assert reply == {"id": reply["id"], **(replica.get(MESSAGES, reply["id"]) or {})}
    assert reply["content"] == "".join(scripted_reply(PROMPT, 20))
    assert set(reply) == {
        "id",
        "thread_id",
        "role",
        "created_at",
        "content",
        "pending",
        "job_id",
        "job_status",
        "error",
    }


async def test_the_pane_never_shows_the_previous_threads_messages(jobs: Any) -> None:
    replica, tracker = jobs
    replica.put(MESSAGES, "a1", {"thread_id": "A", "role": "user", "content": "a", "created_at": 1})
    replica.put(MESSAGES, "b1", {"thread_id": "B", "role": "user", "content": "b", "created_at": 1})
    pane = ChatPane(replica, tracker)
    first = await pane.open("A")
    second = await pane.open("B")
    assert first.detached and pane.session is second
    assert [m["id"] for m in second.messages] == ["b1"]
    pane.close()
    assert pane.session is None and second.detached


async def test_bad_sends_are_refused_and_write_nothing(jobs: Any) -> None:
    replica, tracker = jobs
    session = ThreadSession(replica, tracker, "t1")
    for bad in ("", "   ", None, 42):
        with pytest.raises(ValueError, match="needs some text"):
            await session.send(bad)  # type: ignore[arg-type]
    assert replica.query(MESSAGES) == [] and session.messages == []
    await session.send(PROMPT)
    with pytest.raises(RuntimeError, match="still streaming"):
        await session.send("another")
    assert len(replica.query(MESSAGES)) == 2
    await tracker.wait(session.background_job_id, timeout=10)


async def test_a_failed_start_leaves_the_session_usable(tmp_path: Path) -> None:
    async with (
        jobs_server(jobs=scripted(tokens=20, token_delay=0.05, max_per_user=1)) as server,
        client(server, tmp_path / "c.db") as (replica, tracker),
    ):
        busy = await tracker.start("t0", "m0", PROMPT)
        session = ThreadSession(replica, tracker, "t1")
        with pytest.raises(RequestRefusedError, match="too_many_jobs"):
            await session.send(PROMPT)
        assert not session.loading and session.background_job_mode == "none"
        assert session.messages[-1]["job_status"] == "error"
        assert session.messages[-1]["pending"] is False
        await tracker.abort(busy)
        await tracker.wait(busy, timeout=10)
        await session.send(PROMPT)
        assert session.loading
        assert await tracker.wait(session.background_job_id, timeout=10) == "complete"
