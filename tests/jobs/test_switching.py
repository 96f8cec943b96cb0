"""The user's story end to end: switch threads while a reply streams, come back, get notified.

Real server (scripted provider, slowed down so a switch lands mid-stream),
real replica file, the real tracker and `ChatPane`.
"""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path

from quietsync.conflicts import wall_clock_ms
from quietsync.protocol.jobs import MESSAGES, NOTIFICATIONS
from quietsync.replica import ChatPane, Notifications, Replica, StreamTracker
from quietsync.replica.replica import sync_port
from quietsync.server.jobs.providers import scripted_reply
from tests.jobs.helpers import client, jobs_server, pull, push, server_copy, tracker_tasks, until
from tests.server.job_helpers import scripted

PROMPT = "why do replies get lost"
TOKENS = 40
REPLY = "".join(scripted_reply(PROMPT, TOKENS))
SLOW = {"jobs": scripted(tokens=TOKENS, token_delay=0.03)}


def stored(replica: Replica, key: str) -> str:
    return (replica.get(MESSAGES, key) or {}).get("content") or ""


async def test_switch_away_and_back_resumes_live_with_no_gap_or_duplicate(tmp_path: Path) -> None:
    async with jobs_server(**SLOW) as server, client(server, tmp_path / "c.db") as (replica, tr):
        events: list[tuple[str, str]] = []  # each delta, and the view's content right after it

        def on_delta(message_id: str, delta: str) -> None:
            assert pane.session is not None
            (shown,) = [m for m in pane.session.messages if m["id"] == message_id]
            events.append((delta, shown["content"]))

        pane = ChatPane(replica, tr, on_delta=on_delta)
        session = await pane.open("A")
        reply_id = await session.send(PROMPT)
        job_id = session.background_job_id
        assert job_id is not None
        await until(lambda: len(events) >= 3, what="a few deltas")
        await pane.open("B")
        at_switch = stored(replica, reply_id)
        await until(lambda: len(stored(replica, reply_id)) > len(at_switch), what="persisted")
        events.clear()
        back = await pane.open("A")
        assert tr.status(job_id) == "streaming", "the test must come back before the end"
        (message,) = [m for m in back.messages if m["id"] == reply_id]
        assert back.loading and back.background_job_id == job_id and not back.detached
        assert await tr.wait(job_id, timeout=10) == "complete"
        # Deltas may already arrive while `open` returns: the view resumed from
        # whatever it showed before its first delta after the switch.
        first_delta, after_first = events[0]
        assert after_first.endswith(first_delta)
        resumed_from = after_first[: len(after_first) - len(first_delta)]
        assert len(resumed_from) >= len(at_switch) and REPLY.startswith(resumed_from)
        shown = resumed_from
        for delta, after in events:
            shown += delta
            assert after == shown  # each delta extends exactly what the view showed
        assert shown == REPLY  # no gap, no duplicate
        assert message["content"] == REPLY and message["pending"] is False
        assert not back.loading and replica.query(NOTIFICATIONS) == []  # it was watched


async def test_switch_away_and_let_it_finish_gives_one_notification(tmp_path: Path) -> None:
    async with (
        jobs_server(**SLOW) as server,
        client(server, tmp_path / "c.db") as (replica, tracker),
        server.client("alice") as http,
    ):
        pane = ChatPane(replica, tracker)
        session = await pane.open("A")
        reply_id = await session.send(PROMPT)
        job_id = session.background_job_id
        await until(lambda: stored(replica, reply_id), what="first content")
        await pane.open("B")
        assert await tracker.wait(job_id or "", timeout=10) == "complete"
        (note,) = Notifications(replica).list()
        assert note["thread_id"] == "A" and note["type"] == "ai.message.received"
        assert stored(replica, reply_id) == REPLY
        answer = await push(http, replica)
        await pull(http, replica)
        assert answer["conflicts"] == [] and replica.conflicts() == []
        with await server_copy(http, tmp_path / "observer.db") as copy:
            assert copy.get(MESSAGES, reply_id) == replica.get(MESSAGES, reply_id)
            assert stored(copy, reply_id) == REPLY
            assert len(copy.query(NOTIFICATIONS)) == 1
        back = await pane.open("A")
        assert [m["content"] for m in back.messages] == [PROMPT, REPLY]
        assert not back.loading


async def test_rapid_switching_loads_once_per_switch_and_leaks_nothing(tmp_path: Path) -> None:
    async with jobs_server(**SLOW) as server:
        async with client(server, tmp_path / "c.db") as (replica, tracker):
            pane = ChatPane(replica, tracker)
            first = await pane.open("A")
            await first.send(PROMPT)
            job_id = first.background_job_id or ""
            opening = []
            for i in range(50):  # 50 switches in about a second
                opening.append(asyncio.ensure_future(pane.open("B" if i % 2 == 0 else "A")))
                await asyncio.sleep(0.02)
            sessions = await asyncio.gather(*opening)
            assert all(s.history_loads <= 1 for s in sessions)
            assert tracker.status(job_id) == "streaming", "switches must happen mid-stream"
            assert tracker.subscriber_count(job_id) == 1  # only the pane's current view
            assert pane.session is sessions[-1] and sessions[-1].thread_id == "A"
            assert all(s.detached for s in sessions[:-1])
            assert await tracker.wait(job_id, timeout=10) == "complete"
            assert sessions[-1].messages[-1]["content"] == REPLY
        assert tracker_tasks() == []
        client_tasks = ("quietsync-tracker", "quietsync-session")
        assert [t for t in asyncio.all_tasks() if t.get_name().startswith(client_tasks)] == []


async def test_client_clock_30s_ahead_gives_no_conflict_and_content_never_goes_back(
    tmp_path: Path,
) -> None:
    skew = 30_000
    async with jobs_server(**SLOW) as server, server.client("alice") as http:
        with Replica.open(tmp_path / "c.db", wall=lambda: wall_clock_ms() + skew) as replica:
            tracker = StreamTracker(replica, server.url, token=server.token("alice"))
            seen: list[str] = []
            replica.subscribe(MESSAGES, lambda e: seen.append(stored(replica, e.key)), key="m1")
            job_id = await tracker.start("t1", "m1", PROMPT)
            owned = sync_port(replica).field_state(MESSAGES, "m1", "created_at")
            assert owned is not None and owned.write.stamp.wall_ms > wall_clock_ms() + skew // 2
            conflicts, waiting = [], asyncio.ensure_future(tracker.wait(job_id, timeout=10))
            while not waiting.done():  # sync both ways, as often as we can, while it streams
                conflicts += (await push(http, replica))["conflicts"]
                await pull(http, replica)
            assert waiting.result() == "complete"
            conflicts += (await push(http, replica))["conflicts"]
            await pull(http, replica)
            await tracker.close()
            assert conflicts == [] and replica.conflicts() == []
            assert all(b.startswith(a) for a, b in itertools.pairwise(seen))
            assert seen[-1] == REPLY == stored(replica, "m1")
            with await server_copy(http, tmp_path / "observer.db") as copy:
                assert copy.get(MESSAGES, "m1") == replica.get(MESSAGES, "m1")
