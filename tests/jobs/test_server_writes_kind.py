"""The server's own writes obey the kind rule: a job's end never turns a crdt field lww.

A user can write any field of the notification a job's end would write (its
key, ``job:<id>:complete``, is predictable). If they wrote one as crdt text,
the server skips its notification (and logs it) instead of writing an lww
value over the text, which would leave every replica of the user, a new one
included, unable to apply the field.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from quietsync.protocol import NOTIFICATIONS
from quietsync.replica import Replica, SyncClient
from quietsync.server.jobs import Chat, JobsConfig
from tests.server.job_helpers import USERS, records, serve, start, wait_unwatched

TITLE = "Mine ✍🏽 é 𝔘"


class GatedProvider:
    """Replies "Réponse 👋🏽" and completes only once `gate` is set."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()

    async def stream(self, chat: Chat) -> AsyncIterator[str]:
        yield "Réponse 👋🏽"
        await self.gate.wait()


async def test_a_crdt_field_of_a_notification_survives_the_jobs_end(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "quietsync.server.jobs.writer")
    provider = GatedProvider()
    async with (
        serve(tmp_path, jobs=JobsConfig(provider=provider)) as server,  # type: ignore[arg-type]
        server.client("alice") as http,
    ):
        job_id = (await start(http, "m-é", thread_id="t-👋🏽"))["job_id"]
        key = f"job:{job_id}:complete"
        with Replica.open(tmp_path / "first.db", node_id="first") as first:
            first.text_insert(NOTIFICATIONS, key, "title", 0, TITLE)
            async with SyncClient(first, server.url, token=USERS["alice"]) as client:
                await client.sync_once()
                provider.gate.set()
                final = await wait_unwatched(http, job_id)
                assert final["status"] == "complete"
                await client.sync_once()  # still syncs
            assert first.get(NOTIFICATIONS, key) == {"title": TITLE}
        with Replica.open(tmp_path / "new.db", node_id="new") as new:
            async with SyncClient(new, server.url, token=USERS["alice"]) as client:
                await client.sync_once()
            assert new.get(NOTIFICATIONS, key) == {"title": TITLE}
            assert new.get("messages", "m-é")["content"] == "Réponse 👋🏽"
        folded, changes = await records(http)
    assert [c["kind"] for c in changes if c["collection"] == NOTIFICATIONS] == ["crdt"]
    assert list(folded[NOTIFICATIONS, key]) == ["title"]
    lines = [r.getMessage() for r in caplog.records if r.name == "quietsync.server.jobs.writer"]
    assert lines == [
        f"notification {key!r} of user 'alice' not written: "
        "the user wrote a field of it as crdt text"
    ]
