"""The jobs API on a real server: start (both modes), poll, events, abort, record writes."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from quietsync.protocol import JOB_FIELDS, JOB_ID_HEADER, MESSAGES
from quietsync.testing import running_server
from tests.server.helpers import Writer
from tests.server.job_helpers import (
    BOTH_STORES,
    WAIT,
    events_of,
    poll,
    read_events,
    records,
    reply,
    rest_of,
    scripted,
    serve,
    start,
    wait_status,
)


@BOTH_STORES
async def test_a_background_job_writes_its_reply_into_the_message(db_home: Path | str) -> None:
    async with serve(db_home, jobs=scripted(tokens=12)) as server, server.client("alice") as http:
        started = await start(http, "m1")
        assert started["status"] == "streaming"
        final = await wait_status(http, started["job_id"])
        folded, _ = await records(http)
    assert final["status"] == "complete"
    assert final["content_delta"] == reply(12)
    assert final["content_length"] == len(reply(12))
    message = folded[MESSAGES, "m1"]
    assert set(message) == JOB_FIELDS
    assert {field: value for field, (value, _) in message.items()} == {
        "content": reply(12),
        "pending": False,
        "job_id": started["job_id"],
        "job_status": "complete",
        "error": None,
    }
    assert {stamp for _, stamp in message.values()} == {final["stamp"]}


async def test_poll_returns_the_content_from_an_offset(tmp_path: Path) -> None:
    async with serve(tmp_path, jobs=scripted(tokens=6)) as server, server.client("alice") as http:
        job_id = (await start(http))["job_id"]
        await wait_status(http, job_id)
        answer = await poll(http, job_id, 5)
    assert answer["offset"] == 5
    assert answer["content_delta"] == reply(6)[5:]
    assert answer["content_length"] == len(reply(6))
    assert (answer["thread_id"], answer["message_id"]) == ("t1", "m1")


async def test_hybrid_sends_the_job_id_header_before_the_first_token(tmp_path: Path) -> None:
    async with (
        serve(tmp_path, jobs=scripted(tokens=3, token_delay=0.3)) as server,
        server.client("alice") as http,
    ):
        body = {"thread_id": "t1", "message_id": "m1", "input": "hello there", "mode": "hybrid"}
        async with http.post("/v1/jobs", json=body) as resp:
            assert resp.status == 200
            assert resp.headers["Content-Type"] == "text/event-stream"
            job_id = resp.headers[JOB_ID_HEADER]
            stream = events_of(resp)
            first = await anext(stream)
            # read before any token: the header and the empty snapshot came first
            assert first.type == "snapshot" and first.job_id == job_id
            assert (first.text, first.content_length, first.status) == ("", 0, "streaming")
            rest = [event async for event in stream]
    assert rest[-1].type == "status" and rest[-1].status == "complete"
    assert "".join(e.text for e in rest if e.type == "delta") == reply(3)


@BOTH_STORES
async def test_every_flush_is_a_committed_write_with_the_stamp_of_its_event(
    db_home: Path | str,
) -> None:
    """The property the client's mirror writes rely on: event == committed write.

    Each write reaches a live socket as it commits, with its stamp; a pull
    afterwards holds the reply once, in its final state.
    """
    async with (
        serve(db_home, jobs=scripted(tokens=30, token_delay=0.005)) as server,
        server.client("alice") as h,
        h.ws_connect("/v1/live") as ws,
    ):
        assert (await ws.receive_json(timeout=WAIT))["type"] == "hello"
        body = {"thread_id": "t1", "message_id": "m1", "input": "hello there", "mode": "hybrid"}
        async with h.post("/v1/jobs", json=body) as resp:
            events = await read_events(resp)
        changes: list[dict[str, Any]] = []
        while not any(c["stamp"] == str(events[-1].stamp) for c in changes):
            changes += (await ws.receive_json(timeout=WAIT))["changes"]
        _, pulled = await records(h)
    content_writes = {
        c["stamp"]: c["value"]
        for c in changes
        if c["collection"] == MESSAGES and c["field"] == "content"
    }
    by_stamp: dict[str, dict[str, Any]] = {}
    for c in changes:
        by_stamp.setdefault(c["stamp"], {})[c["field"]] = c["value"]
    snapshot, *deltas, final = events
    assert snapshot.type == "snapshot" and final.type == "status"
    assert by_stamp[str(snapshot.stamp)] == {
        "content": "",
        "pending": True,
        "job_id": snapshot.job_id,
        "job_status": "streaming",
        "error": None,
    }
    assert len(deltas) > 1, "the slow provider should take several flushes"
    text = ""
    for delta in deltas:
        assert delta.type == "delta" and delta.offset == len(text)
        text += delta.text
        assert content_writes[str(delta.stamp)] == text
    assert text == reply(30)
    assert by_stamp[str(final.stamp)]["content"] == text
    assert by_stamp[str(final.stamp)]["job_status"] == "complete"
    # every write of the job is announced by exactly one event
    assert len(content_writes) == len({str(e.stamp) for e in events})
    # and the log keeps the reply once: each of the message's fields, final
    message = [c for c in pulled if c["collection"] == MESSAGES and c["key"] == "m1"]
    assert sorted(c["field"] for c in message) == sorted(JOB_FIELDS)
    assert {c["field"]: c["value"] for c in message}["content"] == text


async def test_events_of_a_finished_job_are_a_snapshot_and_its_status(tmp_path: Path) -> None:
    async with serve(tmp_path, jobs=scripted(tokens=5)) as server, server.client("alice") as http:
        job_id = (await start(http))["job_id"]
        final = await wait_status(http, job_id)
        async with http.get(f"/v1/jobs/{job_id}/events", params={"offset": "4"}) as resp:
            events = await read_events(resp)
    assert [e.type for e in events] == ["snapshot", "status"]
    assert events[0].text == reply(5)[4:] and events[0].offset == 4
    assert {str(e.stamp) for e in events} == {final["stamp"]}


async def test_events_keep_the_connection_alive(tmp_path: Path) -> None:
    options = {"jobs": scripted(tokens=2, token_delay=0.4, keepalive=0.05)}
    async with serve(tmp_path, **options) as server, server.client("alice") as http:
        job_id = (await start(http))["job_id"]
        async with http.get(f"/v1/jobs/{job_id}/events") as resp:
            events = await read_events(resp)
    keepalives = [e for e in events if e.type == "keepalive"]
    assert keepalives and all(e.stamp is None for e in keepalives)
    assert events[-1].status == "complete"


@BOTH_STORES
async def test_abort_ends_the_job_as_aborted_in_the_message(db_home: Path | str) -> None:
    async with (
        serve(db_home, jobs=scripted(tokens=50, token_delay=0.05)) as server,
        server.client("alice") as h,
    ):
        job_id = (await start(h))["job_id"]
        async with h.get(f"/v1/jobs/{job_id}/events") as resp:
            stream = events_of(resp)
            await anext(stream)
            delta = await anext(stream)  # some content was written
            async with h.post(f"/v1/jobs/{job_id}/abort") as aborted:
                assert aborted.status == 200
                assert await aborted.json() == {"job_id": job_id, "status": "aborted"}
            rest = [event async for event in stream]
        async with h.post(f"/v1/jobs/{job_id}/abort") as again:
            assert (await again.json())["status"] == "aborted"
        folded, _ = await records(h)
    assert delta.type == "delta"
    assert rest[-1].type == "status" and rest[-1].status == "aborted"
    message = {field: value for field, (value, _) in folded[MESSAGES, "m1"].items()}
    assert message["job_status"] == "aborted" and message["pending"] is False
    assert reply(50).startswith(message["content"]) and message["content"]


async def test_aborting_a_finished_job_keeps_its_status(tmp_path: Path) -> None:
    async with serve(tmp_path, jobs=scripted(tokens=3)) as server, server.client("alice") as http:
        job_id = (await start(http))["job_id"]
        await wait_status(http, job_id)
        async with http.post(f"/v1/jobs/{job_id}/abort") as resp:
            assert resp.status == 200
            assert (await resp.json())["status"] == "complete"


@BOTH_STORES
async def test_a_provider_failure_ends_the_job_in_error(db_home: Path | str) -> None:
    async with (
        serve(db_home, jobs=scripted(tokens=10, fail_after=3)) as server,
        server.client("alice") as http,
    ):
        job_id = (await start(http))["job_id"]
        final = await wait_status(http, job_id)
        folded, _ = await records(http)
    assert final["status"] == "error"
    assert final["error"] == "scripted failure after 3 tokens"
    assert final["content_delta"] == reply(10)[: len(reply(3))]
    message = {field: value for field, (value, _) in folded[MESSAGES, "m1"].items()}
    assert message["error"] == final["error"] and message["job_status"] == "error"


async def test_leaving_a_hybrid_stream_does_not_stop_the_job(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with serve(tmp_path, jobs=scripted(tokens=20, token_delay=0.01)) as server:
        async with server.client("alice") as first:
            body = {"thread_id": "t1", "message_id": "m1", "input": "hello there", "mode": "hybrid"}
            async with first.post("/v1/jobs", json=body) as resp:
                job_id = resp.headers[JOB_ID_HEADER]
                assert (await anext(events_of(resp))).type == "snapshot"
            # the response and its session are closed mid-stream
        async with server.client("alice") as second:
            final = await wait_status(second, job_id)
    assert (final["status"], final["content_delta"]) == ("complete", reply(20))
    # A reader leaving is ordinary, not an error.
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


async def test_job_writes_reach_live_sockets(tmp_path: Path) -> None:
    async with serve(tmp_path, jobs=scripted(tokens=4)) as server, server.client("alice") as http:
        ws = await http.ws_connect("/v1/live")
        assert (await ws.receive_json(timeout=10))["type"] == "hello"
        final = await wait_status(http, (await start(http))["job_id"])
        seen: dict[str, object] = {}
        while seen.get("job_status") != "complete":
            message = await ws.receive_json(timeout=10)
            seen.update({c["field"]: c["value"] for c in message["changes"]})
        await ws.close()
    assert seen["content"] == final["content_delta"] == reply(4)


async def test_a_message_whose_content_is_crdt_refuses_a_job(tmp_path: Path) -> None:
    writer = Writer("n1")
    async with serve(tmp_path) as server, server.client("alice") as http:
        crdt = writer.text("m1", "content", "draft", collection=MESSAGES)
        async with http.post("/v1/push", json={"mutations": [crdt]}) as resp:
            assert resp.status == 200
        _, before = await records(http)
        body = {"thread_id": "t1", "message_id": "m1", "input": "x", "mode": "background"}
        async with http.post("/v1/jobs", json=body) as resp:
            assert resp.status == 422
            assert (await resp.json())["error"]["code"] == "invalid_job_request"
        _, after = await records(http)
        assert (await start(http, "m2"))["status"] == "streaming"  # nothing is stuck
    assert after == before


async def test_aborting_a_hybrid_job_ends_its_stream_as_aborted(tmp_path: Path) -> None:
    options = {"jobs": scripted(tokens=50, token_delay=0.05)}
    async with serve(tmp_path, **options) as server, server.client("alice") as http:
        body = {"thread_id": "t1", "message_id": "m1", "input": "hello there", "mode": "hybrid"}
        async with http.post("/v1/jobs", json=body) as resp:
            job_id = resp.headers[JOB_ID_HEADER]
            stream = events_of(resp)
            await anext(stream)
            async with http.post(f"/v1/jobs/{job_id}/abort") as aborted:
                assert (await aborted.json())["status"] == "aborted"
            rest = await rest_of(stream)
        final = await poll(http, job_id)
    assert rest[-1].type == "status" and rest[-1].status == "aborted"
    assert final["status"] == "aborted"
    assert [e.type for e in rest if e.type == "status"] == ["status"]


async def test_a_server_without_the_jobs_feature_has_no_jobs_api(tmp_path: Path) -> None:
    """Jobs are a feature the app composes; without it the sync API is all there is."""
    async with (
        running_server(tmp_path / "s.db", jobs=None) as server,
        server.client("alice") as http,
    ):
        body = {"thread_id": "t1", "message_id": "m1", "input": "hi", "mode": "background"}
        async with http.post("/v1/jobs", json=body) as resp:
            assert (resp.status, (await resp.json())["error"]["code"]) == (404, "not_found")
        async with http.get("/v1/pull") as resp:
            assert resp.status == 200
