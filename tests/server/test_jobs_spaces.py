"""Jobs in a shared space, on a real server: alice starts, the space's members follow.

The provider is gated (`GatedProvider`): it sends what it was given of the
thread's history, then waits for the test to release it, so a job streams
exactly as long as a test needs, with no timing to guess.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import attrs
import pytest

from quietsync.conflicts import HLC
from quietsync.protocol import (
    MESSAGES,
    MUTED_THREADS,
    NOTIFICATIONS,
    JobEvent,
    notification_for,
    private_space,
)
from quietsync.server.jobs import Chat, JobsConfig
from quietsync.server.jobs.sqlite_store import STEPS, SQLiteJobStore
from quietsync.server.sqlite_schema import migrate
from quietsync.server.sqlite_store import SQLiteStore
from tests.server.helpers import Writer, new_space, pull_all, push, set_member
from tests.server.job_helpers import (
    BOTH_STORES,
    WAIT,
    events_of,
    poll,
    read_events,
    rest_of,
    start,
    wait_unwatched,
)

MAX_PER_USER = 2


@attrs.define
class GatedProvider:
    """Replies with the history the job read (its thread's messages in the job's space),
    then waits for `release` before its last token."""

    release: asyncio.Event = attrs.Factory(asyncio.Event)

    async def stream(self, chat: Chat) -> AsyncIterator[str]:
        yield "history: " + " | ".join(m.content for m in chat.history) + "."
        await self.release.wait()
        yield " done"


@pytest.fixture
def gate() -> GatedProvider:
    return GatedProvider()


@pytest.fixture
def quietsync_server_options(gate: GatedProvider) -> dict[str, Any]:
    return {"jobs": JobsConfig(provider=gate, max_per_user=MAX_PER_USER)}


@pytest.fixture
async def space(alice: aiohttp.ClientSession) -> str:
    """A shared space of alice's (its admin), bob not in it yet."""
    return await new_space(alice, "team")


async def error_of(resp: aiohttp.ClientResponse) -> tuple[int, dict[str, Any]]:
    return resp.status, (await resp.json())["error"]


async def fold(http: aiohttp.ClientSession, space: str | None = None) -> dict[Any, Any]:
    """Every record of `space` (the private space by default): (collection, key) -> fields."""
    records: dict[Any, Any] = {}
    for change in await pull_all(http, space=space):
        records.setdefault((change["collection"], change["key"]), {})[change["field"]] = change[
            "value"
        ]
    return records


def notifications(records: dict[Any, Any]) -> dict[str, dict[str, Any]]:
    return {
        key: fields for (collection, key), fields in records.items() if collection == NOTIFICATIONS
    }


def message(writer: Writer, key: str, content: str) -> list[dict[str, Any]]:
    """The mutations of an earlier user message of thread t1."""
    fields = {"thread_id": "t1", "role": "user", "content": content, "created_at": 1}
    return [writer.lww(key, f, value, collection=MESSAGES) for f, value in fields.items()]


@BOTH_STORES
async def test_a_job_streams_its_reply_into_the_shared_space(
    alice: aiohttp.ClientSession,
    bob: aiohttp.ClientSession,
    space: str,
    gate: GatedProvider,
    w1: Writer,
) -> None:
    """The message fields are written into the space (bob pulls and hears them live), and
    the job's history is the thread's messages of that space, not alice's private ones."""
    await set_member(alice, space, "bob", "read")
    shared = message(w1, "u1", "shared")
    assert (await push(alice, shared, space))[0] == 200
    assert (await push(alice, message(w1, "p1", "private")))[0] == 200
    async with bob.ws_connect("/v1/live", params={"space": space}) as ws:
        assert (await ws.receive_json(timeout=WAIT))["type"] == "hello"
        job_id = (await start(alice, "m1", space=space))["job_id"]
        async with bob.get(f"/v1/jobs/{job_id}/events") as resp:
            stream = events_of(resp)
            assert (await anext(stream)).type == "snapshot"
            gate.release.set()
            final = (await rest_of(stream))[-1]
        live: list[dict[str, Any]] = []
        while not any(c["stamp"] == str(final.stamp) and c["field"] == "content" for c in live):
            live += (await ws.receive_json(timeout=WAIT))["changes"]
    reply = "history: shared. done"
    assert (final.type, final.status) == ("status", "complete")
    assert [c["value"] for c in live if c["field"] == "content"][-1] == reply
    records = await fold(bob, space)
    assert {f: records[MESSAGES, "m1"][f] for f in ("content", "job_status", "pending")} == {
        "content": reply,
        "job_status": "complete",
        "pending": False,
    }
    assert (MESSAGES, "m1") not in await fold(alice)  # nothing of it in alice's private space
    answer = await poll(bob, job_id)
    assert (answer["status"], answer["content_delta"]) == ("complete", reply)


async def test_a_reader_follows_the_job_but_only_a_writer_aborts_it(
    alice: aiohttp.ClientSession, bob: aiohttp.ClientSession, space: str
) -> None:
    await set_member(alice, space, "bob", "read")
    job_id = (await start(alice, "m1", space=space))["job_id"]
    async with bob.get(f"/v1/jobs/{job_id}/events") as resp:
        assert resp.status == 200
        stream = events_of(resp)
        assert (await anext(stream)).type == "snapshot"
        async with bob.post(f"/v1/jobs/{job_id}/abort") as refused:
            status, error = await error_of(refused)
        assert (status, error["code"]) == (403, "forbidden")
        assert (await poll(bob, job_id))["status"] == "streaming"
        await set_member(alice, space, "bob", "write")
        async with bob.post(f"/v1/jobs/{job_id}/abort") as aborted:
            assert aborted.status == 200
            assert (await aborted.json())["status"] == "aborted"
        rest = await rest_of(stream)
    assert (rest[-1].type, rest[-1].status) == ("status", "aborted")


async def test_a_non_member_gets_exactly_the_answer_of_a_job_that_does_not_exist(
    alice: aiohttp.ClientSession, bob: aiohttp.ClientSession, space: str
) -> None:
    private = (await start(alice, "m1"))["job_id"]
    shared = (await start(alice, "m1", space=space))["job_id"]
    unknown = "0" * len(shared)

    async def answers(job_id: str) -> list[tuple[int, dict[str, Any]]]:
        found = []
        for method, path, params in (
            ("GET", "", {}),
            ("GET", "", {"offset": "999999"}),  # beyond the content: 404 all the same
            ("GET", "/events", {"offset": "999999"}),
            ("POST", "/abort", {}),
        ):
            async with bob.request(method, f"/v1/jobs/{job_id}{path}", params=params) as resp:
                status, error = await error_of(resp)
                found.append((status, error | {"message": error["message"].replace(job_id, "ID")}))
        return found

    expected = await answers(unknown)
    assert {status for status, _ in expected} == {404}
    assert await answers(shared) == expected
    assert await answers(private) == expected
    assert (await poll(alice, shared))["status"] == "streaming"  # none of it touched the job


async def test_starting_a_job_needs_write_in_the_space_and_refuses_without_a_trace(
    alice: aiohttp.ClientSession, bob: aiohttp.ClientSession, space: str
) -> None:
    await start(alice, "m1", space=space)
    body = {"thread_id": "t1", "message_id": "m1", "input": "hi", "mode": "background"}
    async with bob.post("/v1/jobs", json=body, params={"space": space}) as resp:
        status, error = await error_of(resp)
    assert (status, error["code"]) == (404, "space_not_found")  # not 409: nothing leaks
    await set_member(alice, space, "bob", "read")
    async with bob.post(
        "/v1/jobs", json=body | {"message_id": "m2"}, params={"space": space}
    ) as resp:
        status, error = await error_of(resp)
    assert (status, error["code"]) == (403, "forbidden")
    assert (MESSAGES, "m2") not in await fold(bob, space)


async def test_a_removed_members_event_stream_ends_and_the_job_goes_on(
    alice: aiohttp.ClientSession, bob: aiohttp.ClientSession, space: str, gate: GatedProvider
) -> None:
    await set_member(alice, space, "bob", "read")
    job_id = (await start(alice, "m1", space=space))["job_id"]
    async with bob.get(f"/v1/jobs/{job_id}/events") as resp:
        stream = events_of(resp)
        assert (await anext(stream)).type == "snapshot"
        async with alice.delete(f"/v1/spaces/{space}/members/bob") as removed:
            assert removed.status == 204
        rest = await rest_of(stream)  # the server ends the stream (else: a timeout)
        gate.release.set()
    assert [e for e in rest if e.type == "status"] == []  # ended without a status event
    async with bob.get(f"/v1/jobs/{job_id}") as resp:
        assert (await error_of(resp))[1]["code"] == "unknown_job"
    async with alice.get(f"/v1/jobs/{job_id}/events") as resp:
        events = await read_events(resp)
    assert events[-1].status == "complete"


def expected_notification(job_id: str, final: JobEvent) -> dict[str, dict[str, Any]]:
    key, fields = notification_for("t1", final, "history: . done")
    assert job_id in key
    return {key: fields}


@BOTH_STORES
async def test_each_member_not_watching_gets_one_notification_in_their_private_space(
    alice: aiohttp.ClientSession, bob: aiohttp.ClientSession, space: str, gate: GatedProvider
) -> None:
    """alice watches her job to its end: no notification for her; bob does not: one."""
    await set_member(alice, space, "bob", "read")
    body = {"thread_id": "t1", "message_id": "m1", "input": "hi", "mode": "hybrid"}
    async with alice.post("/v1/jobs", json=body, params={"space": space}) as resp:
        stream = events_of(resp)
        job_id = (await anext(stream)).job_id
        gate.release.set()
        final = (await rest_of(stream))[-1]
    assert final.status == "complete"
    assert notifications(await fold(bob)) == expected_notification(job_id, final)
    assert notifications(await fold(alice)) == {}
    assert notifications(await fold(alice, space)) == {}  # never in the shared space


async def test_the_jobs_own_user_not_watching_is_notified_too(
    alice: aiohttp.ClientSession, bob: aiohttp.ClientSession, space: str, gate: GatedProvider
) -> None:
    await set_member(alice, space, "bob", "write")
    job_id = (await start(bob, "m1", space=space))["job_id"]
    async with alice.get(f"/v1/jobs/{job_id}/events") as resp:  # alice watches, bob does not
        stream = events_of(resp)
        assert (await anext(stream)).type == "snapshot"  # attached: now let the job end
        gate.release.set()
        final = (await rest_of(stream))[-1]
    assert notifications(await fold(bob)) == expected_notification(job_id, final)
    assert notifications(await fold(alice)) == {}


@BOTH_STORES
async def test_the_jobs_per_user_limit_counts_the_starters_jobs_in_every_space(
    alice: aiohttp.ClientSession, bob: aiohttp.ClientSession, space: str
) -> None:
    """And a message is busy in its own space only, whoever started its job."""
    await set_member(alice, space, "bob", "write")
    await start(alice, "m1", space=space)
    await start(alice, "m1")  # another record: m1 of alice's private space
    body = {"thread_id": "t1", "message_id": "m2", "input": "hi", "mode": "background"}
    async with alice.post("/v1/jobs", json=body, params={"space": space}) as resp:
        assert (await error_of(resp))[1]["code"] == "too_many_jobs"
    async with bob.post(
        "/v1/jobs", json=body | {"message_id": "m1"}, params={"space": space}
    ) as resp:
        assert (await error_of(resp))[1]["code"] == "job_running"
    await start(bob, "m2", space=space)  # bob's own count


async def test_a_member_who_muted_the_thread_in_their_private_space_is_not_notified(
    alice: aiohttp.ClientSession, bob: aiohttp.ClientSession, space: str, gate: GatedProvider
) -> None:
    """Muting is each member's own: ``muted_threads/<thread>`` of their private space."""
    await set_member(alice, space, "bob", "read")
    mute = Writer("bobs-phone").lww("t1", "muted", True, collection=MUTED_THREADS)
    assert (await push(bob, [mute]))[0] == 200
    job_id = (await start(alice, "m1", space=space))["job_id"]
    gate.release.set()
    final = await wait_unwatched(alice, job_id)
    assert final["status"] == "complete"
    assert notifications(await fold(bob)) == {}
    assert [n["job_id"] for n in notifications(await fold(alice)).values()] == [job_id]


def test_stored_jobs_from_before_spaces_are_their_users_private_spaces(tmp_path: Path) -> None:
    """Jobs table v2 -> v3: every row gets the private space of its user."""
    store = SQLiteStore(tmp_path / "server.db")
    db = store.connection
    with store.write_transaction():  # the jobs table as the version before spaces left it
        migrate(db, STEPS, version_key="jobs_schema_version", target=2)
        db.execute(
            "INSERT INTO jobs VALUES ('bob', 'j1', 't1', 'm1', 'complete', ?, 1, NULL, 2)",
            (str(HLC(1, 0, "server")),),
        )
    store.close()
    store = SQLiteStore(tmp_path / "server.db")
    try:
        [row] = SQLiteJobStore(store).load()
    finally:
        store.close()
    assert (row.user, row.space, row.job_id, row.ended_ms) == ("bob", private_space("bob"), "j1", 2)
