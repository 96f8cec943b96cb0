"""Two tokens, two users: neither can see nor change the other's space."""

from __future__ import annotations

import aiohttp

from tests.server.helpers import Writer, conflicts_of, pull_all, push


async def test_users_have_separate_logs_cursors_and_conflicts(
    alice: aiohttp.ClientSession, bob: aiohttp.ClientSession, w1: Writer, w2: Writer
) -> None:
    await push(alice, [w1.lww("a", "title", "alice 1")])
    _, body = await push(alice, [w2.lww("a", "title", "alice 2")])  # a conflict, in alice's space
    assert len(body["conflicts"]) == 1

    assert await pull_all(bob) == []
    assert await conflicts_of(bob) == []
    async with bob.get("/v1/pull", params={"since": 0}) as resp:
        assert (await resp.json())["cursor"] == 0


async def test_same_record_and_mutation_ids_do_not_collide_across_users(
    alice: aiohttp.ClientSession, bob: aiohttp.ClientSession, w1: Writer
) -> None:
    m = w1.lww("a", "title", "alice's")
    await push(alice, [m])
    # bob pushes the very same mutation id and field: it is new in HIS space
    bobs = {**m, "value": "bob's"}
    status, body = await push(bob, [bobs])
    assert (status, body["results"], body["cursor"]) == (
        200,
        [{"id": m["id"], "outcome": "applied"}],
        1,
    )
    assert body["conflicts"] == []
    assert [c["value"] for c in await pull_all(alice)] == ["alice's"]
    assert [c["value"] for c in await pull_all(bob)] == ["bob's"]


async def test_kinds_are_per_user(
    alice: aiohttp.ClientSession, bob: aiohttp.ClientSession, w1: Writer
) -> None:
    await push(alice, [w1.text("a", "body", "hello")])
    status, _ = await push(bob, [w1.lww("a", "body", "plain")])
    assert status == 200


async def test_bob_cannot_push_into_alices_space(
    alice: aiohttp.ClientSession, bob: aiohttp.ClientSession, w1: Writer
) -> None:
    await push(alice, [w1.lww("a", "title", "alice")])
    status, _ = await push(bob, [w1.lww("a", "title", "bob overwrites?")])
    assert status == 200
    assert [c["value"] for c in await pull_all(alice)] == ["alice"]
    assert await conflicts_of(alice) == []
