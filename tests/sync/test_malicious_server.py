"""The sync client against a broken or malicious server (`tests/sync/evil_server.py`).

Whatever the server answers, the replica keeps what it held (records and
outbox), every failure lands in `SyncClient.status` as a typed
`QuietsyncError`, the background loop keeps going with a growing backoff (the
server counts the requests: a bounded number per delay asked for, never a
busy loop), and `stop()` returns cleanly.
"""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

import attrs
import pytest
from aiohttp import web

from quietsync.protocol import NOTIFICATIONS
from quietsync.replica import (
    HttpTransport,
    Notifications,
    ProtocolError,
    Replica,
    StreamTracker,
    SyncClient,
    SyncError,
    TransportError,
)
from quietsync.replica.replica import sync_port
from tests.sync.conftest import TOKEN, WAIT, RecordingBackoff, wait_status
from tests.sync.evil_server import (
    HISTORY,
    STOPPING,
    Handler,
    change,
    crdt_change,
    evil_server,
    honest_pull,
    json_answer,
    since_of,
)

MINE = {"title": "kept ✓ café e\u0301 🎉 𝄞"}
"""What the replica held before the server misbehaved (accents, combining mark, astral)."""
REQUESTS_PER_ATTEMPT = 4
"""At most: a push, two pull pages, a live socket; then the client must ask for a delay."""


def page(changes: list[dict[str, Any]], cursor: int, has_more: bool = False, **extra: Any):
    return json_answer(
        {"changes": changes, "cursor": cursor, "has_more": has_more, "history": HISTORY} | extra
    )


async def pull_not_json(request: web.Request) -> web.Response:
    return web.Response(text="<html>502 Bad Gateway ☹</html>", content_type="text/html")


async def pull_wrong_types(request: web.Request) -> web.Response:
    return json_answer({"changes": "many", "cursor": "soon", "has_more": "yes"})


async def pull_stuck_cursor(request: web.Request) -> web.Response:
    since = since_of(request)
    return page([change(since + 1)], since, has_more=True)


async def pull_backwards_cursor(request: web.Request) -> web.Response:
    if since_of(request) == 0:
        return page([change(5)], 5, has_more=True)
    return page([change(2)], 2, has_more=True)


async def pull_empty_pages_forever(request: web.Request) -> web.Response:
    return page([], since_of(request) + 1, has_more=True)


async def pull_other_history(request: web.Request) -> web.Response:
    if "history" not in request.query:
        return page([change(1)], 1, has_more=True)
    return page([change(2)], 2, history="another-history")


async def pull_huge_page(request: web.Request) -> web.Response:
    return page([change(1, value="🎉" * 100_000)], 1)


async def pull_deeply_nested(request: web.Request) -> web.Response:
    nested = json.dumps(change(1, value="deep")).replace('"deep"', "[" * 5000 + "]" * 5000)
    return web.Response(
        text=f'{{"changes": [{nested}], "cursor": 1, "has_more": false}}',
        content_type="application/json",
    )


async def pull_lone_surrogates(request: web.Request) -> web.Response:
    changes = [change(1, key="bad\ud800key"), change(2, collection="bad\udfff")]
    return page(changes, 2)


async def never_answers(request: web.Request) -> web.Response:
    await request.app[STOPPING].wait()
    return json_answer({})


async def push_not_json(request: web.Request) -> web.Response:
    return web.Response(text="\x00\xff garbage")


async def push_other_users_outcomes(request: web.Request) -> web.Response:
    results = [{"id": "someone-else:1", "outcome": "applied"}]
    return json_answer({"results": results, "conflicts": [], "suppressed": 0, "cursor": 9})


async def push_refuses_strangers(request: web.Request) -> web.Response:
    refused = [{"index": 0, "id": "someone-else:1", "code": "clock_drift", "reason": "?"}]
    error = {"code": "mutations_refused", "message": "no"}
    return json_answer({"error": error, "refused": refused}, status=422)


def live_sending(*messages: str) -> Handler:
    """A socket that says hello, sends `messages`, then closes."""

    async def live(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        hello = {"type": "hello", "cursor": since_of(request), "history": HISTORY}
        for text in (json.dumps(hello), *messages):
            await ws.send_str(text)
        await ws.close()
        return ws

    return live


@attrs.frozen
class Scenario:
    name: str
    error: type[SyncError] | None
    """The typed error the status must show (None: the server did nothing wrong)."""
    pull: Handler = honest_pull
    push: Handler | None = None
    live: Handler | None = None

    @property
    def breaks_push(self) -> bool:
        return self.push is not None


LIVE_CHANGES_BEHIND = json.dumps(
    {"type": "changes", "after": 0, "changes": [change(3)], "cursor": 1}
)
LIVE_AFTER_PAST_CURSOR = json.dumps(
    {"type": "changes", "after": 7, "changes": [change(3)], "cursor": 3}
)

SCENARIOS = [
    Scenario("pull: not JSON", ProtocolError, pull=pull_not_json),
    Scenario("pull: wrong types", ProtocolError, pull=pull_wrong_types),
    Scenario("pull: has_more with a stuck cursor", ProtocolError, pull=pull_stuck_cursor),
    Scenario("pull: cursor goes backwards", ProtocolError, pull=pull_backwards_cursor),
    Scenario("pull: empty pages forever", ProtocolError, pull=pull_empty_pages_forever),
    Scenario("pull: a cursor from another history", ProtocolError, pull=pull_other_history),
    Scenario("pull: a huge page", ProtocolError, pull=pull_huge_page),
    Scenario("pull: 5,000 levels deep", ProtocolError, pull=pull_deeply_nested),
    Scenario("pull: lone surrogates", ProtocolError, pull=pull_lone_surrogates),
    Scenario("pull: never answers", TransportError, pull=never_answers),
    Scenario("push: not JSON", ProtocolError, push=push_not_json),
    Scenario("push: another user's outcomes", ProtocolError, push=push_other_users_outcomes),
    Scenario("push: refuses what was not sent", ProtocolError, push=push_refuses_strangers),
    Scenario("push: never answers", TransportError, push=never_answers),
    Scenario("live: garbage", ProtocolError, live=live_sending("{{{ not json 💥")),
    Scenario("live: wrong types", ProtocolError, live=live_sending('{"type": "changes"}')),
    Scenario(
        "live: cursor behind its changes", ProtocolError, live=live_sending(LIVE_CHANGES_BEHIND)
    ),
    Scenario("live: after past cursor", ProtocolError, live=live_sending(LIVE_AFTER_PAST_CURSOR)),
    Scenario(
        "live: told to pull, every time", None, live=live_sending('{"type": "pull", "cursor": 0}')
    ),
]


def transport(url: str) -> HttpTransport:
    return HttpTransport(url, token=TOKEN, timeout=0.5, max_answer_bytes=64 * 1024)


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
async def test_a_malicious_server_cannot_break_the_replica_or_spin_the_loop(
    scenario: Scenario, tmp_path: Path
):
    handlers = {k: v for k, v in (("push", scenario.push), ("live", scenario.live)) if v}
    with Replica.open(tmp_path / "a.db", node_id="a") as replica:
        replica.put("notes", "mine", MINE)
        async with evil_server(pull=scenario.pull, **handlers) as server:
            backoff = RecordingBackoff(enough=4)
            client = SyncClient(replica, transport=transport(server.url), backoff=backoff)
            await client.start()
            await asyncio.wait_for(backoff.reached.wait(), WAIT)
            await client.stop()  # returns cleanly: nothing the server did re-raises here
            status = client.status
        # the conflict log is read once after each pull: count it with its pull
        conflict_reads = server.requests.get("/v1/conflicts", 0)
        assert conflict_reads <= server.requests.get("/v1/pull", 0)
        assert server.total - conflict_reads <= REQUESTS_PER_ATTEMPT * len(backoff.delays)
        assert backoff.failures >= backoff.enough  # the delay grew: no success reset it
        if scenario.error is None:
            assert status.error is None and status.last_error is None
        else:
            assert isinstance(status.error, scenario.error), status
            assert status.last_error == str(status.error) and not status.online
        assert replica.get("notes", "mine") == MINE
        assert replica.refused() == []
        assert replica.pending_count() == (1 if scenario.breaks_push else 0)


async def pull_unstorable_changes(request: web.Request) -> web.Response:
    if since_of(request) > 0:
        return page([], since_of(request))
    changes = [
        crdt_change(1, "AAAA", key="text"),  # base64, but not a Yjs update
        crdt_change(2, "AQ==", key="text", field="other"),
        change(3, key="good", value="still here 🎉"),
    ]
    return page(changes, 3)


async def test_changes_that_cannot_be_applied_are_skipped_counted_and_sync_goes_on(
    tmp_path: Path,
):
    with Replica.open(tmp_path / "a.db", node_id="a") as replica:
        async with evil_server(pull=pull_unstorable_changes) as server:
            client = SyncClient(replica, transport=transport(server.url))
            summary = await asyncio.wait_for(client.sync_once(), WAIT)
            status = client.status
            await client.stop()
        assert summary.pulled == 3
        assert status.skipped_changes == 2 and status.error is None and status.online
        assert replica.get("notes", "good") == {"title": "still here 🎉"}
        assert replica.get("notes", "text") is None
        assert sync_port(replica).cursor == 3  # gone past them: the next pull starts after


async def test_a_pulled_change_of_the_other_kind_is_skipped_not_a_wedge(tmp_path: Path):
    async def pull_lww_over_crdt(request: web.Request) -> web.Response:
        if since_of(request) > 0:
            return page([], since_of(request))
        return page([change(1, key="doc", field="body"), change(2, key="other")], 2)

    with Replica.open(tmp_path / "a.db", node_id="a") as replica:
        replica.text_insert("notes", "doc", "body", 0, "crdt text ✍️")
        async with evil_server(pull=pull_lww_over_crdt) as server:
            client = SyncClient(replica, transport=transport(server.url))
            await asyncio.wait_for(client.sync_once(), WAIT)
            await asyncio.wait_for(client.sync_once(), WAIT)  # and it does not come back
            status = client.status
            await client.stop()
        assert status.skipped_changes == 1 and status.online and status.error is None
        assert replica.get("notes", "doc") == {"body": "crdt text ✍️"}
        assert replica.get("notes", "other") == {"title": "value 2 ✓"}


async def push_always_too_large(request: web.Request) -> web.Response:
    error = {"code": "body_too_large", "message": "the body is over 1 MiB"}
    return json_answer({"error": error}, status=413)


async def test_a_server_refusing_every_push_gets_one_notification_not_a_storm(tmp_path: Path):
    with Replica.open(tmp_path / "a.db", node_id="a") as replica:
        notes = Notifications(replica)
        for n in range(3):
            replica.put("notes", f"n{n}", {"title": f"note {n} 📝"})
        async with evil_server(push=push_always_too_large) as server:
            client = SyncClient(
                replica, transport=transport(server.url), on_refused=notes.write_refused
            )
            await client.start()
            await wait_status(client, lambda s: s.online and s.pending == 0)
            await client.stop()
        assert [n["title"] for n in notes.list()] == ["Write refused"]
        refused = {(r.mutation.collection, r.mutation.key) for r in replica.refused()}
        assert refused == {  # the three writes, and the notification (not one about it)
            *(("notes", f"n{n}") for n in range(3)),
            (NOTIFICATIONS, "sync.refused:body_too_large"),
        }
        assert "body_too_large" in notes.list()[0]["body"]


async def test_notifications_about_refusals_are_one_per_cause_until_read(tmp_path: Path):
    with Replica.open(tmp_path / "a.db", node_id="a") as replica:
        notes = Notifications(replica)
        async with evil_server(push=push_always_too_large) as server:
            client = SyncClient(
                replica, transport=transport(server.url), on_refused=notes.write_refused
            )
            replica.put("notes", "n1", {"title": "first"})
            await asyncio.wait_for(client.sync_once(), WAIT)
            [first] = notes.list()
            replica.put("notes", "n2", {"title": "second"})
            await asyncio.wait_for(client.sync_once(), WAIT)
            assert [n["id"] for n in notes.list()] == [first["id"]]  # not again while unread
            notes.mark_read(first["id"])
            replica.put("notes", "n3", {"title": "third"})
            await asyncio.wait_for(client.sync_once(), WAIT)
            await client.stop()
        [again] = notes.list(unread_only=True)
        assert again["id"] == first["id"] and again["read_at"] is None
        assert replica.get(NOTIFICATIONS, first["id"]) is not None


def answers_500(enough: int) -> tuple[Handler, asyncio.Event]:
    """A handler that answers 500 to everything, and an event set after `enough` requests."""
    reached, seen = asyncio.Event(), [0]

    async def handler(request: web.Request) -> web.Response:
        seen[0] += 1
        if seen[0] >= enough:
            reached.set()
        error = {"code": "store_error", "message": "the database failed"}
        return json_answer({"error": error}, status=500)

    return handler, reached


def replica_log(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name.startswith("quietsync.replica")]


async def test_a_server_failing_every_retry_is_logged_once_per_cause_not_per_retry(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.DEBUG, "quietsync")
    retries = 30
    failing, _ = answers_500(retries)
    with Replica.open(tmp_path / "a.db", node_id="a") as replica:
        replica.put("notes", "mine", MINE)
        async with evil_server(pull=failing, push=failing) as server:
            backoff = RecordingBackoff(enough=retries)
            client = SyncClient(replica, transport=transport(server.url), backoff=backoff)
            await client.start()
            await asyncio.wait_for(backoff.reached.wait(), WAIT)
            await client.stop()
    assert isinstance(client.status.error, TransportError)
    assert "answered 500" in (client.status.last_error or "")
    first, repeats = replica_log(caplog)  # one line, then (on stop) how often it repeated
    assert "sync: TransportError:" in first.getMessage() and "answered 500" in first.getMessage()
    assert repeats.getMessage().startswith(
        f"sync: TransportError: repeated {len(backoff.delays) - 1} times"
    )
    assert all(r.exc_info is None for r in caplog.records)


async def test_a_job_stream_failing_every_retry_is_logged_once_per_cause_not_per_retry(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.DEBUG, "quietsync")
    failing, reached = answers_500(40)  # 20 retries: a socket and a poll each
    with Replica.open(tmp_path / "a.db", node_id="a") as replica:
        async with evil_server(jobs=failing) as server:
            tracker = StreamTracker(replica, server.url, token=TOKEN, retry_delays=[0.001])
            try:
                tracker.track("j1", "t1", "m1")
                await asyncio.wait_for(reached.wait(), WAIT)
                assert tracker.status("j1") == "streaming"  # still followed, not given up
            finally:
                await tracker.close()
    lines = [r.getMessage() for r in replica_log(caplog)]
    assert len(lines) == 4, lines  # a line per cause (stream, poll), then their repeats
    assert "job j1: TransportError:" in lines[0] and "polling, then retrying" in lines[0]
    assert "poll failed too: TransportError:" in lines[1]
    assert sorted(line.split(": repeated")[0] for line in lines[2:]) == [
        "job poll: TransportError",
        "job stream: TransportError",
    ]
    assert all(r.exc_info is None for r in caplog.records)
