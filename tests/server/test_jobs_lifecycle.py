"""Jobs beyond the happy path: notifications, restarts, limits, refusals, OpenAI provider."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from quietsync.protocol import MESSAGES, NOTIFICATIONS, JobEvent, notification_for
from quietsync.server.jobs import JobsConfig, OpenAIProvider
from tests.server.fake_openai import chunk, fake_provider
from tests.server.helpers import Writer
from tests.server.job_helpers import (
    BOTH_STORES,
    events_of,
    poll,
    read_events,
    records,
    reply,
    scripted,
    serve,
    start,
    wait_status,
    wait_unwatched,
)


def notifications(folded: dict[Any, Any]) -> dict[str, dict[str, Any]]:
    return {
        key: {field: value for field, (value, _) in fields.items()}
        for (collection, key), fields in folded.items()
        if collection == NOTIFICATIONS
    }


def final_event(answer: dict[str, Any]) -> JobEvent:
    """The status event a client would have received for this poll answer of a finished job."""
    size = answer["content_length"]
    return JobEvent.from_json(
        {
            "type": "status",
            "job_id": answer["job_id"],
            "status": answer["status"],
            "offset": size,
            "content_length": size,
            "error": answer["error"],
            "stamp": answer["stamp"],
        }
    )


# -- notifications ---------------------------------------------------------


async def test_an_unwatched_job_notifies_with_the_clients_deterministic_record(
    tmp_path: Path,
) -> None:
    async with serve(tmp_path, jobs=scripted(tokens=8)) as server, server.client("alice") as http:
        job_id = (await start(http, thread_id="t9"))["job_id"]
        answer = await wait_unwatched(http, job_id)
        folded, _ = await records(http)
    key, fields = notification_for("t9", final_event(answer), answer["content_delta"])
    assert notifications(folded) == {key: fields}
    assert fields["type"] == "ai.message.received" and fields["job_id"] == job_id


async def test_a_failed_unwatched_job_notifies_a_warning(tmp_path: Path) -> None:
    async with (
        serve(tmp_path, jobs=scripted(tokens=8, fail_after=2)) as server,
        server.client("alice") as http,
    ):
        job_id = (await start(http))["job_id"]
        answer = await wait_unwatched(http, job_id)
        folded, _ = await records(http)
    key, fields = notification_for("t1", final_event(answer), answer["content_delta"])
    assert notifications(folded) == {key: fields}
    assert fields["type"] == "system.warning" and "scripted failure" in fields["body"]


async def test_a_job_watched_to_its_end_does_not_notify(tmp_path: Path) -> None:
    async with serve(tmp_path, jobs=scripted(tokens=8)) as server, server.client("alice") as http:
        body = {"thread_id": "t1", "message_id": "m1", "input": "x", "mode": "hybrid"}
        async with http.post("/v1/jobs", json=body) as resp:
            events = await read_events(resp)
        folded, _ = await records(http)
    assert events[-1].status == "complete"
    assert notifications(folded) == {}


async def test_a_job_read_on_its_events_endpoint_does_not_notify(tmp_path: Path) -> None:
    options = {"jobs": scripted(tokens=10, token_delay=0.05)}
    async with serve(tmp_path, **options) as server, server.client("alice") as http:
        job_id = (await start(http))["job_id"]
        async with http.get(f"/v1/jobs/{job_id}/events") as resp:
            events = await read_events(resp)
        folded, _ = await records(http)
    assert events[0].status == "streaming", "attached while it streamed"
    assert events[-1].status == "complete"
    assert notifications(folded) == {}


async def test_a_job_of_a_muted_thread_does_not_notify(tmp_path: Path) -> None:
    writer = Writer("n1")
    async with serve(tmp_path, jobs=scripted(tokens=4)) as server, server.client("alice") as http:
        mute = writer.lww("t1", "muted", True, collection="muted_threads")
        async with http.post("/v1/push", json={"mutations": [mute]}) as resp:
            assert resp.status == 200
        job_id = (await start(http, thread_id="t1"))["job_id"]
        other = (await start(http, "m2", thread_id="t2"))["job_id"]
        await wait_unwatched(http, job_id)
        await wait_unwatched(http, other)
        folded, _ = await records(http)
    assert [n["thread_id"] for n in notifications(folded).values()] == ["t2"]


async def test_an_aborted_job_never_notifies(tmp_path: Path) -> None:
    async with (
        serve(tmp_path, jobs=scripted(tokens=50, token_delay=0.05)) as server,
        server.client("alice") as h,
    ):
        job_id = (await start(h))["job_id"]
        async with h.post(f"/v1/jobs/{job_id}/abort") as resp:
            assert (await resp.json())["status"] == "aborted"
        folded, _ = await records(h)
    assert notifications(folded) == {}


async def test_the_client_writing_the_same_notification_leaves_one_record(tmp_path: Path) -> None:
    """Both sides write it: the client's identical write is suppressed, not a conflict."""
    client = Writer("phone")
    async with serve(tmp_path, jobs=scripted(tokens=5)) as server, server.client("alice") as http:
        job_id = (await start(http))["job_id"]
        answer = await wait_unwatched(http, job_id)
        before, _ = await records(http)
        key, fields = notification_for("t1", final_event(answer), answer["content_delta"])
        stamp = client.clock.now()
        mutations = [
            client.lww(key, field, value, collection=NOTIFICATIONS, stamp=stamp)
            for field, value in fields.items()
        ]
        async with http.post("/v1/push", json={"mutations": mutations}) as resp:
            pushed = await resp.json()
        after, _ = await records(http)
    assert pushed["conflicts"] == [] and pushed["suppressed"] == len(fields)
    assert notifications(after) == notifications(before) == {key: fields}


# -- restart ---------------------------------------------------------------


@BOTH_STORES
async def test_a_restart_ends_streaming_jobs_as_interrupted(db_home: Path | str) -> None:
    options = {"jobs": scripted(tokens=100, token_delay=0.02)}
    async with serve(db_home, **options) as server, server.client("alice") as http:
        job_id = (await start(http))["job_id"]
        async with http.get(f"/v1/jobs/{job_id}/events") as resp:
            stream = events_of(resp)
            await anext(stream)
            await anext(stream)  # a delta: some content is written
        # the server stops with the job streaming
    async with serve(db_home, **options) as server, server.client("alice") as http:
        final = await wait_unwatched(http, job_id)
        folded, _ = await records(http)
    assert (final["status"], final["error"]) == ("error", "interrupted")
    assert final["content_delta"] and reply(100).startswith(final["content_delta"])
    message = {field: value for field, (value, _) in folded[MESSAGES, "m1"].items()}
    assert message == {
        "content": final["content_delta"],
        "pending": False,
        "job_id": job_id,
        "job_status": "error",
        "error": "interrupted",
    }
    key, fields = notification_for("t1", final_event(final), final["content_delta"])
    assert notifications(folded) == {key: fields}


@BOTH_STORES
async def test_finished_jobs_answer_after_a_restart(db_home: Path | str) -> None:
    options = {"jobs": scripted(tokens=4, token_delay=0)}
    async with serve(db_home, **options) as server, server.client("alice") as http:
        job_id = (await start(http))["job_id"]
        before = await wait_status(http, job_id)
    async with serve(db_home, **options) as server, server.client("alice") as http:
        assert await poll(http, job_id) == before


# -- limits and refusals ---------------------------------------------------


async def error_of(resp: Any) -> tuple[int, str]:
    return resp.status, (await resp.json())["error"]["code"]


async def test_too_many_jobs_is_429_and_a_busy_message_409(tmp_path: Path) -> None:
    options = {"jobs": scripted(max_per_user=2, tokens=100, token_delay=0.05)}
    async with serve(tmp_path, **options) as server, server.client("alice") as http:
        await start(http, "m1")
        body = {"thread_id": "t1", "message_id": "m1", "input": "x", "mode": "background"}
        async with http.post("/v1/jobs", json=body) as resp:
            assert await error_of(resp) == (409, "job_running")
        second = await start(http, "m2")
        async with http.post("/v1/jobs", json=body | {"message_id": "m3"}) as resp:
            assert await error_of(resp) == (429, "too_many_jobs")
        async with server.client("bob") as bob:
            await start(bob, "m3")  # the limit is per user
        async with http.post(f"/v1/jobs/{second['job_id']}/abort"):
            pass
        await start(http, "m3")  # a slot is free again


async def test_another_users_job_is_unknown(tmp_path: Path) -> None:
    async with serve(tmp_path, jobs=scripted(tokens=2)) as server, server.client("alice") as alice:
        job_id = (await start(alice))["job_id"]
        async with server.client("bob") as bob:
            for method, path in [
                ("GET", f"/v1/jobs/{job_id}"),
                ("GET", f"/v1/jobs/{job_id}/events"),
                ("POST", f"/v1/jobs/{job_id}/abort"),
                ("GET", "/v1/jobs/nope"),
            ]:
                async with bob.request(method, path) as resp:
                    assert await error_of(resp) == (404, "unknown_job")
        assert (await wait_status(alice, job_id))["status"] == "complete"


@pytest.mark.parametrize(
    "body",
    [
        [],
        {"message_id": "m1", "input": "x", "mode": "background"},
        {"thread_id": "t1", "message_id": "", "input": "x", "mode": "background"},
        {"thread_id": "t1", "message_id": "m1", "input": 3, "mode": "background"},
        {"thread_id": "t1", "message_id": "m1", "input": "x", "mode": "foreground"},
        {"thread_id": "t1", "message_id": "m1", "input": "x", "mode": "hybrid", "extra": 1},
    ],
)
async def test_a_bad_start_body_is_422_and_starts_nothing(tmp_path: Path, body: Any) -> None:
    async with serve(tmp_path) as server, server.client("alice") as http:
        async with http.post("/v1/jobs", json=body) as resp:
            assert await error_of(resp) == (422, "invalid_job_request")
        async with http.post("/v1/jobs", data=b"{not json") as resp:
            assert await error_of(resp) == (400, "malformed_json")
        _, changes = await records(http)
    assert changes == []


@pytest.mark.parametrize("offset", ["-1", "x", "999"])
async def test_a_bad_offset_is_422(tmp_path: Path, offset: str) -> None:
    async with serve(tmp_path, jobs=scripted(tokens=2)) as server, server.client("alice") as http:
        job_id = (await start(http))["job_id"]
        await wait_status(http, job_id)
        for path in (f"/v1/jobs/{job_id}", f"/v1/jobs/{job_id}/events"):
            async with http.get(path, params={"offset": offset}) as resp:
                assert await error_of(resp) == (422, "invalid_job_request")


async def test_a_job_past_its_timeout_ends_in_error(tmp_path: Path) -> None:
    options = {"jobs": scripted(tokens=50, token_delay=0.05, timeout=0.2)}
    async with serve(tmp_path, **options) as server, server.client("alice") as http:
        final = await wait_status(http, (await start(http))["job_id"])
    assert (final["status"], final["error"]) == ("error", "timeout")


@BOTH_STORES
async def test_a_finished_job_is_forgotten_after_its_retention(db_home: Path | str) -> None:
    async with (
        serve(db_home, jobs=scripted(tokens=2, retention=0.05)) as server,
        server.client("alice") as http,
    ):
        job_id = (await start(http))["job_id"]
        async with http.get(f"/v1/jobs/{job_id}/events") as resp:
            await read_events(resp)
        async with asyncio.timeout(5):
            while True:  # the retention runs on the wall clock: wait for it to pass
                async with http.get(f"/v1/jobs/{job_id}") as resp:
                    if resp.status == 404:
                        assert (await resp.json())["error"]["code"] == "unknown_job"
                        break
                await asyncio.sleep(0.02)


# -- the OpenAI-compatible provider, over a real local stream ---------------


async def test_a_job_streams_from_an_openai_compatible_endpoint(tmp_path: Path) -> None:
    events = [chunk("Hel"), chunk("lo"), chunk("!"), "data: [DONE]"]
    async with (
        fake_provider(events) as fake,
        serve(
            tmp_path, jobs=JobsConfig(provider=OpenAIProvider(base_url=fake.url, model="tiny"))
        ) as server,
        server.client("alice") as http,
    ):
        final = await wait_status(http, (await start(http))["job_id"])
    assert (final["status"], final["content_delta"]) == ("complete", "Hello!")
