"""Push and pull over a real server: round trip, paging, idempotency, merge outcomes."""

from __future__ import annotations

import aiohttp
import pytest

from quietsync.conflicts import CrdtText, Resolvers, wall_clock_ms
from quietsync.protocol import DELETED_FIELD, Change, Mutation
from quietsync.server.keys import CORE_KEY
from quietsync.testing import RunningServer
from tests.server.helpers import Writer, conflicts_of, pull_all, push


@pytest.fixture(params=["sqlite", "postgres"])
def store_kind(request: pytest.FixtureRequest) -> str:
    """Every test here runs on both stores."""
    return str(request.param)


async def test_health_needs_no_token(server: RunningServer) -> None:
    async with aiohttp.ClientSession(base_url=server.url) as http, http.get("/v1/health") as resp:
        assert resp.status == 200
        assert await resp.json() == {"status": "ok", "node": "server"}


async def test_push_then_pull_round_trip(alice: aiohttp.ClientSession, w1: Writer) -> None:
    batch = [w1.lww("a", "title", "hello"), w1.lww("a", "n", {"x": [1, 2]}), w1.lww("b", "t", None)]
    status, body = await push(alice, batch)
    assert status == 200
    history = body.pop("history")
    assert isinstance(history, str) and len(history) == 32
    assert body == {
        "results": [{"id": m["id"], "outcome": "applied"} for m in batch],
        "conflicts": [],
        "suppressed": 0,
        "cursor": 3,
    }
    async with alice.get("/v1/pull") as resp:
        assert (await resp.json())["history"] == history  # one history id, on every answer
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
        body = await resp.json()
    assert (body["changes"], body["cursor"], body["has_more"]) == ([], 5, False)


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
    assert conflict["loser"] == {
        "value": "from n1",
        "stamp": older["stamp"],
        "node": "n1",
        "user": "alice",
    }
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


async def test_a_crdt_update_that_adds_nothing_is_a_duplicate(
    alice: aiohttp.ClientSession, w1: Writer
) -> None:
    init = w1.text("a", "body", "hello")
    await push(alice, [init])
    _, body = await push(alice, [{**init, "id": "n1:99"}])  # the same update under a new id
    assert body["results"] == [{"id": "n1:99", "outcome": "duplicate"}]
    assert len(await pull_all(alice)) == 1


async def test_an_edit_that_changes_nothing_still_raises_the_stamp(
    alice: aiohttp.ClientSession, w1: Writer, w2: Writer
) -> None:
    """Two replicas delete the same characters: the later delete adds nothing
    to the text, but both replicas keep its stamp, so the server must too."""
    init = w1.text("a", "body", "hello")
    await push(alice, [init])
    doc1, doc2 = (CrdtText(Mutation.from_json(init).update) for _ in range(2))
    first, second = w1.crdt("a", "body", doc1.delete(0, 1)), w2.crdt("a", "body", doc2.delete(0, 1))
    assert second["stamp"] > first["stamp"]
    _, body = await push(alice, [first, second])
    assert [r["outcome"] for r in body["results"]] == ["applied", "applied"]
    [text] = [Change.from_json(c) for c in await pull_all(alice)]
    assert (CrdtText(text.update).text, str(text.stamp)) == ("ello", second["stamp"])


async def test_two_different_updates_with_one_stamp_are_both_kept(
    alice: aiohttp.ClientSession, w1: Writer, w2: Writer
) -> None:
    """Never deduplicated by stamp: the second update carries text the first did not."""
    init = w1.text("a", "body", "hello")
    doc = CrdtText(Mutation.from_json(init).update)
    first = w2.crdt("a", "body", doc.insert(5, " big"))
    second = {**w2.crdt("a", "body", doc.insert(9, " world")), "stamp": first["stamp"]}
    await push(alice, [init, first])
    _, again = await push(alice, [second])
    assert again["results"] == [{"id": second["id"], "outcome": "applied"}]
    [text] = [Change.from_json(c) for c in await pull_all(alice)]
    assert CrdtText(text.update).text == "hello big world"


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


async def test_an_overwritten_value_is_not_pulled_again(
    alice: aiohttp.ClientSession, w1: Writer
) -> None:
    """State, not history: a field written three times is one change, its latest."""
    for value in ("one", "two", "three"):
        await push(alice, [w1.lww("a", "title", value)])
    await push(alice, [w1.lww("b", "title", "other")])
    changes = await pull_all(alice)
    assert [(c["seq"], c["key"], c["value"]) for c in changes] == [
        (3, "a", "three"),
        (4, "b", "other"),
    ]
    async with alice.get("/v1/pull", params={"since": 3}) as resp:
        assert [c["value"] for c in (await resp.json())["changes"]] == ["other"]


@pytest.mark.parametrize("mid", ["n1", "n1:", "n1:0", "n1:-3", "n1:x", ":4", "n1:01"])
async def test_a_mutation_id_must_be_client_and_number(
    alice: aiohttp.ClientSession, w1: Writer, mid: str
) -> None:
    status, body = await push(alice, [{**w1.lww("a", "title", "x"), "id": mid}])
    assert (status, body["refused"][0]["code"]) == (422, "invalid_mutation")
    assert "'<client>:<n>'" in body["refused"][0]["reason"]
    assert await pull_all(alice) == []


async def test_an_id_older_than_the_clients_last_push_is_a_duplicate_and_not_merged(
    alice: aiohttp.ClientSession, w1: Writer
) -> None:
    first = [w1.lww("a", "title", "one"), w1.lww("a", "body", "two")]
    await push(alice, first)
    await push(alice, [w1.lww("b", "title", "three")])
    late = {**first[0], "value": "changed"}  # an old id carrying another value: never merged
    _, body = await push(alice, [late])
    assert body["results"] == [{"id": late["id"], "outcome": "duplicate"}]
    assert [c["value"] for c in await pull_all(alice)] == ["one", "two", "three"]


@pytest.mark.parametrize("quietsync_server_options", [{"page_max_bytes": 2500}])
async def test_pull_pages_are_bounded_in_bytes(alice: aiohttp.ClientSession, w1: Writer) -> None:
    await push(
        alice, [w1.lww(f"k{i}", "f", "x" * n) for i, n in enumerate((1000, 1000, 1000, 9000))]
    )
    sizes, since = [], 0
    while True:
        async with alice.get("/v1/pull", params={"since": since, "limit": 5000}) as resp:
            page = await resp.json()
        sizes.append([len(c["value"]) for c in page["changes"]])
        since = page["cursor"]
        if not page["has_more"]:
            break
    assert sizes == [[1000, 1000], [1000], [9000]]  # a value larger than a page goes alone


async def test_a_cursor_that_cannot_go_on_gets_the_resync_answer(
    server: RunningServer, alice: aiohttp.ClientSession, w1: Writer
) -> None:
    _, body = await push(alice, [w1.lww("a", "title", "x"), w1.lww("b", "title", "y")])
    history = body["history"]

    async def pull(**params: object) -> tuple[int, dict]:
        async with alice.get("/v1/pull", params={k: str(v) for k, v in params.items()}) as resp:
            return resp.status, await resp.json()

    assert (await pull(since=1, history=history))[0] == 200
    for params, reason in [
        ({"since": 1, "history": "0" * 32}, "history_changed"),
        ({"since": 9, "history": history}, "cursor_ahead"),
        ({"since": 9}, "cursor_ahead"),
    ]:
        status, body = await pull(**params)
        assert status == 409, params
        assert body["error"]["code"] == "resync"
        assert body["resync"] == {"reason": reason, "history": history}
    async with alice.get("/v1/conflicts") as resp:
        assert resp.status == 200  # conflicts have their own positions: no resync there


async def test_a_cursor_below_the_tombstone_horizon_must_resync(
    server: RunningServer, alice: aiohttp.ClientSession, w1: Writer
) -> None:
    await push(alice, [w1.lww("a", "title", "x"), w1.lww("b", "title", "y")])
    await push(alice, [w1.lww("a", DELETED_FIELD, True)])
    core = server.app[CORE_KEY]
    assert await core.run(lambda: core.store.collect_tombstones(wall_clock_ms() + 1000)) == 1
    async with alice.get("/v1/pull", params={"since": 1}) as resp:
        assert (resp.status, (await resp.json())["resync"]["reason"]) == (409, "cursor_too_old")
    async with alice.get("/v1/pull", params={"since": 3}) as resp:  # it had seen the delete
        assert resp.status == 200
    assert [c["key"] for c in await pull_all(alice)] == ["b"]  # a fresh replica: no resync
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:  # refused before the upgrade
        await alice.ws_connect("/v1/live", params={"since": "1"})
    assert refused.value.status == 409
