"""Kill the client process mid-stream, start it again: `resume_pending()` completes the reply."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from quietsync.protocol.jobs import MESSAGES
from quietsync.replica import ThreadSession
from quietsync.server.jobs.providers import scripted_reply
from tests.jobs.helpers import client, jobs_server
from tests.server.job_helpers import scripted

PROMPT = "survive a crash"
TOKENS = 40
CHILD = Path(__file__).with_name("stream_child.py")


async def test_killed_mid_stream_then_resumed_completes_the_message(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    async with jobs_server(jobs=scripted(tokens=TOKENS, token_delay=0.05)) as server:
        child = await asyncio.create_subprocess_exec(
            sys.executable,
            str(CHILD),
            str(path),
            server.url,
            server.token("alice"),
            PROMPT,
            stdout=asyncio.subprocess.PIPE,
            cwd=Path(__file__).parents[2],
        )
        assert child.stdout is not None
        try:
            async with asyncio.timeout(20):
                _, job_id, message_id = (await child.stdout.readline()).decode().split()
                assert (await child.stdout.readline()).decode().strip() == "persisted"
        finally:
            child.kill()
            await child.wait()
        async with client(server, path) as (replica, tracker):
            before = replica.get(MESSAGES, message_id)
            assert before is not None and before["pending"] is True and before["content"]
            assert await tracker.resume_pending() == [job_id]
            session = ThreadSession(replica, tracker, "t1")
            await session.ensure_history_synced()  # reattaches to the resumed job
            assert tracker.subscriber_count(job_id) == 1
            assert await tracker.wait(job_id, timeout=15) == "complete"
            after = replica.get(MESSAGES, message_id)
            assert after is not None and after["pending"] is False
            assert after["content"] == "".join(scripted_reply(PROMPT, TOKENS))
            assert session.messages[-1]["content"] == after["content"]
