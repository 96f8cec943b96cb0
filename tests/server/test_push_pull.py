"""Push and pull over a real server: round trip, paging, idempotency, merge outcomes."""

from __future__ import annotations

import aiohttp
import pytest

from quietsync.conflicts import CrdtText, Resolvers
from quietsync.protocol import DELETED_FIELD, Change, Mutation
from quietsync.testing import RunningServer
from tests.server.helpers import Writer, conflicts_of, pull_all, push


async def test_health_needs_no_token(server: RunningServer) -> None:
    async with aiohttp.ClientSession(base_url=server.url) as http, http.get("/v1/health") as resp:
        assert resp.status == 200
        assert await resp.json() == {"status": "ok", "node": "server"}


async def test_push_then_pull_round_trip(alice: aiohttp.ClientSession, w1: Writer) -> None:
    batch = [w1.lww("a", "title", "hello"), w1.lww("a", "n", {"x": [1, 2]}), w1.lww("b", "t", None)]
    status, body = await push(alice, batch)
    assert status == 200
    assert body == {
        "results": [{"id": m["id"], "outcome": "applied"} for m in batch],
        "conflicts": [],
        "suppressed": 0,
        "cursor": 3,
    }
    changes = await pull_all(alice)
    assert [c["seq"] for c in changes] == [1, 2, 3]
    assert [{k: v for k, v in c.items() if k != "seq"} for c in changes] == batch


async def test_pull_pages_with_cursor_and_has_more(
    alice: aiohttp.ClientSession, w1: Writer
) -> None:
    await push(alice, [w1.lww(f"k{i}", "f", i) for i in range(5)])
    seen, since, pages = [], 0, []
    while True:
        async with alice.get("/v1/pull", params={"since": since, "limit": 2}) as resp:
            page = await resp.json()
        pages.append((len(page["changes"]), page["has_more"]))
        seen += [c["value"] for c in page["changes"]]
        since = page["cursor"]
        if not page["has_more"]:
            break
    assert pages == [(2, True), (2, True), (1, False)]
    assert seen == [0, 1, 2, 3, 4]
    async with alice.get("/v1/pull", params={"since": since}) as resp:
        assert await resp.json() == {"changes": [], "cursor": 5, "has_more": False}


@pytest.mark.parametrize("quietsync_server_options", [{"pull_limit_max": 3}])
async def test_pull_limit_is_clamped_to_the_maximum(
    alice: aiohttp.ClientSession, w1: Writer
) -> None:
    await push(alice, [w1.lww(f"k{i}", "f", i) for i in range(5)])
    async with alice.get("/v1/pull", params={"limit": 1000}) as resp:
        page = await resp.json()
    assert (len(page["changes"]), page["cursor"], page["has_more"]) == (3, 3, True)


async def test_same_batch_twice_is_applied_once(alice: aiohttp.ClientSession, w1: Writer) -> None:
    batch = [w1.lww("a", "title", "one"), w1.lww("a", "body", "two")]
    first = await push(alice, batch)
    again = await push(alice, batch)
    assert again == first  # the recorded outcomes, the same cursor
    assert len(await pull_all(alice)) == 2


async def test_repeated_id_within_a_batch_is_answered_with_the_first_outcome(
    alice: aiohttp.ClientSession, w1: Writer
) -> None:
    m = w1.lww("a", "title", "one")
    _, body = await push(alice, [m, m])
    assert body["results"] == [{"id": m["id"], "outcome": "applied"}] * 2
    assert len(await pull_all(alice)) == 1


async def test_concurrent_different_writes_report_one_conflict(
    alice: aiohttp.ClientSession, w1: Writer, w2: Writer
) -> None:
    older = w1.lww("a", "title", "from n1")
    newer = w2.lww("a", "title", "from n2")
    await push(alice, [older])
    _, body = await push(alice, [newer])
    assert body["results"] == [{"id": newer["id"], "outcome": "applied"}]
    [conflict] = body["conflicts"]
    assert conflict["winner"]["value"] == "from n2"
    assert conflict["loser"] == {"value": "from n1", "stamp": older["stamp"], "node": "n1"}
    assert conflict["detected_by"] == "server"
    assert await conflicts_of(alice) == [conflict]


async def test_concurrent_identical_writes_are_suppressed_not_reported(
    alice: aiohttp.ClientSession, w1: Writer, w2: Writer
) -> None:
    await push(alice, [w1.lww("a", "doc", {"x": 1, "y": 2})])
    _, body = await push(alice, [w2.lww("a", "doc", {"y": 2, "x": 1})])
    assert (body["suppressed"], body["conflicts"]) == (1, [])
    assert await conflicts_of(alice) == []


@pytest.mark.parametrize("quietsync_server_options", [{"suppress_identical": False}])
async def test_with_suppression_off_identical_writes_are_reported(
    alice: aiohttp.ClientSession, w1: Writer, w2: Writer
) -> None:
    # Only benchmarks turn suppression off, to show the noise it removes.
    await push(alice, [w1.lww("a", "doc", {"x": 1})])
    _, body = await push(alice, [w2.lww("a", "doc", {"x": 1.0})])
    assert body["suppressed"] == 0
    [conflict] = body["conflicts"]
    assert conflict["winner"]["value"] == conflict["loser"]["value"] == {"x": 1}
    assert len(await conflicts_of(alice)) == 1


async def test_a_write_that_loses_is_dropped_and_not_logged(
    alice: aiohttp.ClientSession, w1: Writer, w2: Writer
) -> None:
    stale = w1.lww("a", "title", "stale")
    fresh = w2.lww("a", "title", "fresh", base=None)
    await push(alice, [fresh])
    _, body = await push(alice, [stale])
    assert body["results"] == [{"id": stale["id"], "outcome": "dropped"}]
    assert body["cursor"] == 1
    assert [c["value"] for c in await pull_all(alice)] == ["fresh"]


async def test_a_write_that_saw_the_current_value_is_no_conflict(
    alice: aiohttp.ClientSession, w1: Writer, w2: Writer
) -> None:
    first = w1.lww("a", "title", "v1")
    await push(alice, [first])
    w2.clock.observe(w1.clock.last)
    _, body = await push(alice, [w2.lww("a", "title", "v2", base=w1.clock.last)])
    assert (body["results"][0]["outcome"], body["conflicts"]) == ("applied", [])


@pytest.mark.parametrize("quietsync_server_options", [{"resolvers": Resolvers()}])
async def test_a_resolver_logs_the_resolved_value_with_its_derived_stamp(
    server: RunningServer, alice: aiohttp.ClientSession, w1: Writer, w2: Writer
) -> None:
    server.config.resolvers.register("notes", "tags", lambda a, b: sorted(set(a) | set(b)))
    await push(alice, [w1.lww("a", "tags", ["x"])])
    newer = w2.lww("a", "tags", ["y"])
    _, body = await push(alice, [newer])
    assert body["results"] == [{"id": newer["id"], "outcome": "resolved"}]
    last = (await pull_all(alice))[-1]
    assert last["value"] == ["x", "y"]
    assert last["stamp"].startswith(newer["stamp"] + "*")
    assert body["conflicts"][0]["winner"]["value"] == ["x", "y"]


async def test_crdt_writes_merge_and_replay_to_the_same_text(
    alice: aiohttp.ClientSession, w1: Writer, w2: Writer
) -> None:
    init = w1.text("a", "body", "hello")
    doc = CrdtText(Mutation.from_json(init).update)
    edit = w2.crdt("a", "body", doc.insert(5, " world"))
    _, body = await push(alice, [init, edit])
    assert [r["outcome"] for r in body["results"]] == ["applied", "applied"]
    replay = CrdtText()
    for change in await pull_all(alice):
        replay.apply(Change.from_json(change).update or b"")
    assert replay.text == "hello world"


async def test_crdt_write_with_the_fields_current_stamp_is_a_duplicate(
    alice: aiohttp.ClientSession, w1: Writer
) -> None:
    init = w1.text("a", "body", "hello")
    await push(alice, [init])
    _, body = await push(alice, [{**init, "id": "n1:99"}])
    assert body["results"] == [{"id": "n1:99", "outcome": "duplicate"}]
    assert len(await pull_all(alice)) == 1


async def test_tombstone_is_an_lww_field(alice: aiohttp.ClientSession, w1: Writer) -> None:
    _, body = await push(alice, [w1.lww("a", "title", "x"), w1.lww("a", DELETED_FIELD, True)])
    assert [r["outcome"] for r in body["results"]] == ["applied", "applied"]
    assert (await pull_all(alice))[-1]["value"] is True


@pytest.mark.parametrize("quietsync_server_options", [{"resolvers": Resolvers()}])
async def test_a_failing_resolver_is_a_json_500_and_changes_nothing(
    server: RunningServer, alice: aiohttp.ClientSession, w1: Writer, w2: Writer
) -> None:
    server.config.resolvers.register("notes", "n", lambda a, b: a + b)
    await push(alice, [w1.lww("a", "n", 1)])
    status, body = await push(alice, [w2.lww("k", "other", "x"), w2.lww("a", "n", "text")])
    assert status == 500
    assert body == {"error": {"code": "internal_error", "message": "internal server error"}}
    assert [c["value"] for c in await pull_all(alice)] == [1]
