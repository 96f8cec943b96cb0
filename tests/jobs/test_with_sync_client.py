"""The tracker with a `SyncClient` running beside it: its mirror writes are recognised by sync.

The server's job changes reach the replica twice — as job events (mirrored by
the tracker) and through the sync log. The second delivery must be a
duplicate (same stamp) or an older write: zero conflicts, nothing visible
changes, and content never goes backwards while both run.
"""

from __future__ import annotations

import itertools
from pathlib import Path

from quietsync.conflicts import wall_clock_ms
from quietsync.protocol.jobs import MESSAGES, NOTIFICATIONS
from quietsync.replica import Notifications, Replica, StreamTracker, SyncClient
from quietsync.replica.replica import sync_port
from quietsync.server.jobs.providers import scripted_reply
from tests.jobs.helpers import jobs_server, server_copy
from tests.server.job_helpers import scripted

PROMPT = "sync and stream at once"
TOKENS = 40
REPLY = "".join(scripted_reply(PROMPT, TOKENS))


def content(replica: Replica, key: str) -> str:
    return (replica.get(MESSAGES, key) or {}).get("content") or ""


async def test_sync_beside_the_tracker_sees_duplicates_not_conflicts(tmp_path: Path) -> None:
    async with jobs_server(jobs=scripted(tokens=TOKENS, token_delay=0.01)) as server:
        # The client's clock runs 30 s ahead of the server's: it must not matter.
        skewed = Replica.open(tmp_path / "c.db", wall=lambda: wall_clock_ms() + 30_000)
        with skewed as replica:
            tracker = StreamTracker(replica, server.url, token=server.token("alice"))
            seen: list[str] = []
            replica.subscribe(MESSAGES, lambda e: seen.append(content(replica, e.key)), key="m1")
            async with SyncClient(replica, server.url, token=server.token("alice")) as sync:
                job_id = await tracker.start("t1", "m1", PROMPT)
                assert await tracker.wait(job_id, timeout=10) == "complete"
                await tracker.close()
                settled = await sync.sync_once()
                # The log's copies of the job's writes change nothing here any more.
                changed: list[frozenset[str]] = []
                replica.subscribe(MESSAGES, lambda e: changed.append(e.fields))
                sync_port(replica).apply_remote([])  # (no-op transaction: the subscription is live)
                again = await sync.sync_once()
            assert settled.conflicts == again.conflicts == 0
            assert replica.conflicts() == [] and changed == []
            assert all(b.startswith(a) for a, b in itertools.pairwise(seen))
            assert content(replica, "m1") == REPLY
            async with server.client("alice") as http:
                with await server_copy(http, tmp_path / "observer.db") as copy:
                    assert copy.get(MESSAGES, "m1") == replica.get(MESSAGES, "m1")
                    for field in ("content", "job_status", "pending"):
                        ours = sync_port(replica).field_state(MESSAGES, "m1", field)
                        theirs = sync_port(copy).field_state(MESSAGES, "m1", field)
                        assert ours is not None and theirs is not None
                        assert ours.write.stamp == theirs.write.stamp  # the same write


async def test_a_notification_written_by_both_sides_is_suppressed_or_skipped(
    tmp_path: Path,
) -> None:
    """Polling only: the server sees no watcher and notifies too; sync recognises the twin."""
    async with jobs_server(jobs=scripted(tokens=TOKENS, token_delay=0.002)) as server:
        with Replica.open(tmp_path / "c.db", node_id="client") as replica:
            tracker = StreamTracker(
                replica, server.url, token=server.token("alice"), live=False, poll_interval=0.02
            )
            sync = SyncClient(replica, server.url, token=server.token("alice"))
            try:
                job_id = await tracker.start("t1", "m1", PROMPT, mode="background")
                assert await tracker.wait(job_id, timeout=10) == "complete"
                summary = await sync.sync_once()
            finally:
                await tracker.close()
                await sync.stop()
            assert summary.conflicts == 0 and replica.conflicts() == []
            assert summary.suppressed + summary.skipped >= 1
            assert len(replica.query(NOTIFICATIONS)) == 1
            assert Notifications(replica).list()[0]["id"] == f"job:{job_id}:complete"
