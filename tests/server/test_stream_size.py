"""A streamed reply costs its size on the server, not its square (state, not history)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from quietsync.protocol import MESSAGES
from quietsync.server.jobs import JobsConfig, ScriptedProvider, scripted_reply
from quietsync.testing import running_server
from tests.server.job_helpers import records, start, wait_status

TOKENS = 3600  # about 20,000 characters


def used_bytes(path: Path) -> int:
    """The bytes of the database's pages in use (the file minus its free pages)."""
    db = sqlite3.connect(path)
    try:
        (pages,), (free,), (size,) = (
            db.execute(f"PRAGMA {name}").fetchone()
            for name in ("page_count", "freelist_count", "page_size")
        )
    finally:
        db.close()
    return int((pages - free) * size)


async def test_a_long_streamed_reply_leaves_at_most_twice_its_size(tmp_path: Path) -> None:
    empty, db = tmp_path / "empty.db", tmp_path / "server.db"
    async with running_server(empty):
        pass
    # flushed every few ms: hundreds of writes of the whole reply so far
    jobs = JobsConfig(flush_interval=0.002, provider=ScriptedProvider(TOKENS, 0.0002))
    async with running_server(db, jobs=jobs) as server, server.client("alice") as http:
        job = await start(http, "m1", text="write me a long story")
        final = await wait_status(http, job["job_id"])
        _, changes = await records(http)
    reply = "".join(scripted_reply("write me a long story", TOKENS))
    assert final["status"] == "complete" and final["content_delta"] == reply
    assert len(reply) > 19_000
    content = [c for c in changes if c["collection"] == MESSAGES and c["field"] == "content"]
    assert [c["value"] for c in content] == [reply]  # a fresh replica pulls it once
    grown = used_bytes(db) - used_bytes(empty)
    assert grown <= 2 * len(reply.encode()), (grown, len(reply))
