"""A job in a shared space, followed by two users' trackers: the acceptance test of issue #16.

alice and bob share a space; alice replies in a thread of it from a view
(`ThreadSession`: her tracker has a subscriber, and her hybrid stream makes
the server see her watching); bob's tracker follows the same job with nobody
subscribed, picked up from the streaming message sync brought into his
replica (`resume_pending`) or tracked by id. At the end both replicas hold
the whole reply in the space's message record (and nothing in their private
spaces), bob has exactly one completion notification in his private space,
the same record as the server's, and alice has none.

Who writes bob's notification is pinned down, not left to timing: the test
waits until the server counts exactly the expected readers of the job. With
bob's tracker reading the job's events the server leaves bob out and his
tracker writes it; with bob's tracker polling the server writes it first and
bob's tracker writes the identical record after it (a no-op or a suppressed
twin): one record either way.

The reply is the scripted provider's, 1,200 tokens with non-ASCII text, held
halfway (`HalfwayGate`) until bob follows the job: no timing to guess. Every
wait is on an event (a replica subscription, `tracker.wait`) with a timeout.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import attrs
import pytest

from quietsync.conflicts import HLC, wall_clock_ms
from quietsync.protocol import Change
from quietsync.protocol.jobs import MESSAGES, MUTED_THREADS, NOTIFICATIONS
from quietsync.replica import ChatPane, Notifications, Replica, StreamTracker, SyncClient
from quietsync.replica.replica import sync_port
from quietsync.replica.space_view import SpaceView
from quietsync.server.jobs import Chat, JobsConfig, scripted_reply
from quietsync.server.jobs.job import Job
from quietsync.server.jobs.keys import JOBS_KEY
from quietsync.testing import RunningServer, running_server
from tests.jobs.helpers import server_copy, tracker_tasks, until

USERS = {"alice": "token-alice-0123456789", "bob": "token-bob-0123456789ab"}
WAIT = 20.0
TOKENS = 1_200
PROMPT = "Grüße aus Zürich 🚀 — ça va, 東京?"
THREAD = "t-shared"
REPLY_TOKENS = scripted_reply(PROMPT, TOKENS)
REPLY = "".join(REPLY_TOKENS)
FIRST_HALF = "".join(REPLY_TOKENS[: TOKENS // 2])


@attrs.define
class HalfwayGate:
    """The scripted provider's reply, held after its first half until `release` is set."""

    release: asyncio.Event = attrs.Factory(asyncio.Event)

    async def stream(self, chat: Chat) -> AsyncIterator[str]:
        for i, token in enumerate(scripted_reply(chat.input, TOKENS)):
            if i == TOKENS // 2:
                await self.release.wait()
            yield token


@pytest.fixture
def gate() -> HalfwayGate:
    return HalfwayGate()


@pytest.fixture
async def server(tmp_path: Path, gate: HalfwayGate) -> AsyncIterator[RunningServer]:
    jobs = JobsConfig(provider=gate)
    async with running_server(tmp_path / "server.db", users=USERS, jobs=jobs) as running:
        yield running


async def shared_space(server: RunningServer, member: str, role: str) -> str:
    """A space of alice's with `member` in it."""
    async with server.client("alice") as http:
        resp = await http.post("/v1/spaces", json={"name": "Équipe 🚀"})
        assert resp.status == 201, await resp.text()
        space = str((await resp.json())["id"])
        resp = await http.put(f"/v1/spaces/{space}/members/{member}", json={"role": role})
        assert resp.status == 200, await resp.text()
    return space


@attrs.frozen
class Device:
    """One user's app: a replica file, its live sync, its tracker."""

    user: str
    replica: Replica
    sync: SyncClient
    tracker: StreamTracker


@asynccontextmanager
async def device(
    server: RunningServer, path: Path, user: str, **tracker_options: Any
) -> AsyncIterator[Device]:
    token = server.token(user)
    with Replica.open(path, node_id=user) as replica:
        tracker = StreamTracker(replica, server.url, token=token, **tracker_options)
        try:
            async with SyncClient(replica, server.url, token=token) as sync:
                yield Device(user, replica, sync, tracker)
        finally:
            await tracker.close()


@contextmanager
def changes(view: SpaceView, collection: str) -> Iterator[asyncio.Event]:
    """An event set at each committed change of `view`'s `collection`."""
    changed = asyncio.Event()
    unsubscribe = view.subscribe(collection, lambda _: changed.set())
    try:
        yield changed
    finally:
        unsubscribe()


async def record_until(
    view: SpaceView, collection: str, key: str, check: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    """The record once `check(record)` holds, waiting on the view's change events."""
    with changes(view, collection) as changed:
        async with asyncio.timeout(WAIT):
            while not check(record := view.get(collection, key) or {}):
                await changed.wait()
                changed.clear()
    return record


async def server_job(server: RunningServer, job_id: str) -> Job:
    """The server's job: its `Job.watching` are the users it notifies none of."""
    return await server.app[JOBS_KEY].get(job_id)


async def notifications_on_server(
    server: RunningServer, user: str, path: Path
) -> list[tuple[dict[str, Any], str]]:
    """The notification records the server holds in `user`'s private space, each with the
    node that wrote it (its ``type`` field's stamp)."""
    async with server.client(user) as http:
        with await server_copy(http, path) as copy:
            found = []
            for note in Notifications(copy).list():
                held = sync_port(copy).field_state(NOTIFICATIONS, note["id"], "type")
                assert held is not None
                found.append((note, held.write.stamp.node))
            return found


async def settle(*devices: Device) -> None:
    """Push and pull every space of every device until nothing moves."""
    for each in (*devices, *devices):
        summary = await each.sync.sync_once()
        assert summary.conflicts == 0


@pytest.mark.parametrize(("pickup", "bob_reads"), [("resume_pending", True), ("track", False)])
async def test_a_shared_reply_reaches_both_members_and_notifies_only_the_unwatching_one(
    server: RunningServer, gate: HalfwayGate, tmp_path: Path, pickup: str, bob_reads: bool
) -> None:
    """`resume_pending`, bob's tracker reading the events: the server leaves bob's
    notification to his tracker. `track`, bob's tracker polling: the server writes it, and
    his tracker the identical one after it: one record."""
    space = await shared_space(server, "bob", "read")
    bob_options = {} if bob_reads else {"live": False, "poll_interval": 0.02}
    async with (
        device(server, tmp_path / "alice.db", "alice") as alice,
        device(server, tmp_path / "bob.db", "bob", **bob_options) as bob,
    ):
        session = await ChatPane(alice.replica, alice.tracker).open(THREAD, space=space)
        reply_id = await session.send(PROMPT)
        job_id = session.background_job_id
        assert job_id is not None

        # Sync brings the streaming message, held halfway, into bob's copy of the space.
        held = await record_until(
            bob.replica.space(space),
            MESSAGES,
            reply_id,
            lambda r: r.get("content") == FIRST_HALF and r.get("thread_id") == THREAD,
        )
        assert held["pending"] is True and held["job_id"] == job_id
        if pickup == "resume_pending":
            assert await bob.tracker.resume_pending() == [job_id]
        else:
            bob.tracker.track(job_id, THREAD, reply_id, space=space)
        expected = {"alice", "bob"} if bob_reads else {"alice"}
        job = await server_job(server, job_id)
        await until(lambda: job.watching == expected, within=WAIT, what="readers")
        gate.release.set()

        assert await alice.tracker.wait(job_id, timeout=WAIT) == "complete"
        assert await bob.tracker.wait(job_id, timeout=WAIT) == "complete"
        assert session.messages[-1]["content"] == REPLY and not session.loading
        await settle(alice, bob)

        for member in (alice, bob):
            record = member.replica.space(space).get(MESSAGES, reply_id)
            assert record is not None
            assert (record["content"], record["job_status"]) == (REPLY, "complete")
            assert record["pending"] is False and record["thread_id"] == THREAD
            assert member.replica.get(MESSAGES, reply_id) is None  # not in the private space
            assert member.replica.pending_count() == 0 and member.replica.conflicts() == []
        assert alice.replica.space(space).conflicts() == []

        (told,) = Notifications(bob.replica).list()
        assert told["id"] == f"job:{job_id}:complete"
        assert (told["thread_id"], told["type"]) == (THREAD, "ai.message.received")
        assert REPLY.startswith(told["body"]) and "Zürich 🚀" in told["body"]
        assert bob.replica.space(space).get(NOTIFICATIONS, told["id"]) is None
        assert Notifications(alice.replica).list() == []
        ((on_server, writer),) = await notifications_on_server(
            server, "bob", tmp_path / "bob-server.db"
        )
        assert on_server == told
        if bob_reads:  # the server left it to bob's tracker
            assert writer == "bob" and bob.replica.suppressed_count() == 0
        else:  # the server's, then bob's: a no-op put, or an identical twin suppressed
            assert writer == "server" or bob.replica.suppressed_count() > 0
    assert await notifications_on_server(server, "alice", tmp_path / "alice-server.db") == []


async def test_a_shared_thread_muted_in_the_private_space_notifies_nobody(
    server: RunningServer, gate: HalfwayGate, tmp_path: Path
) -> None:
    """The mute is bob's own (his private ``muted_threads``), for the shared thread: neither
    his tracker nor the server notifies him."""
    space = await shared_space(server, "bob", "write")
    gate.release.set()
    async with (
        device(server, tmp_path / "alice.db", "alice") as alice,
        device(server, tmp_path / "bob.db", "bob", live=False, poll_interval=0.02) as bob,
    ):
        Notifications(bob.replica).mute(THREAD)
        await settle(bob)
        job_id = await bob.tracker.start(THREAD, "reply-1", PROMPT, mode="background", space=space)
        assert await bob.tracker.wait(job_id, timeout=WAIT) == "complete"
        await settle(alice, bob)
        assert bob.replica.space(space).get(MESSAGES, "reply-1")["content"] == REPLY
        assert alice.replica.space(space).get(MESSAGES, "reply-1")["content"] == REPLY
        assert bob.replica.get(MUTED_THREADS, THREAD) == {"muted": True}
        assert Notifications(bob.replica).list() == []
        # alice watched nothing and muted nothing: the server told her.
        assert [n["id"] for n in Notifications(alice.replica).list()] == [f"job:{job_id}:complete"]
    assert await notifications_on_server(server, "bob", tmp_path / "bob-server.db") == []


async def test_a_streaming_message_without_its_thread_is_left_for_a_later_resume(
    server: RunningServer, tmp_path: Path
) -> None:
    """The job's fields synced before the message's own: no thread to name in a notification
    yet, so `resume_pending` leaves it until they arrive."""
    space = await shared_space(server, "bob", "read")
    job = {"content": "", "pending": True, "job_id": "j1", "job_status": "streaming"}
    stamp = HLC(wall_clock_ms(), 0, "server")
    with Replica.open(tmp_path / "bob.db", node_id="bob") as replica:
        tracker = StreamTracker(replica, server.url, token=server.token("bob"))
        try:
            sync_port(replica, space).apply_remote(
                Change(f"c-{f}", MESSAGES, "m1", f, "lww", stamp, None, v) for f, v in job.items()
            )
            assert await tracker.resume_pending() == []
            assert [t.get_name() for t in tracker_tasks()] == ["quietsync-tracker:flusher"]
        finally:
            await tracker.close()
