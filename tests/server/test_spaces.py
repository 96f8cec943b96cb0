"""Shared spaces over a real server: the API, sharing, roles, and conflicts between users."""

from __future__ import annotations

import re

import aiohttp
import pytest

from tests.server.helpers import Writer, conflicts_of, new_space, pull_all, push, set_member


@pytest.fixture(params=["sqlite", "postgres"])
def store_kind(request: pytest.FixtureRequest) -> str:
    """Every test here runs on both stores."""
    return str(request.param)


STRANGERS = ["s:" + "a" * 26, "u:alice", "not-a-space", "s:", "x" * 129]
"""Ids a request may name that are not a space of bob's: unknown, another user's private
space, malformed, too long. Each gets the same 404 as a real space he is not in."""


async def _spaces(http: aiohttp.ClientSession) -> list[dict[str, object]]:
    async with http.get("/v1/spaces") as resp:
        assert resp.status == 200
        return list((await resp.json())["spaces"])


async def test_a_user_starts_with_their_private_space_only(alice: aiohttp.ClientSession) -> None:
    assert await _spaces(alice) == [
        {"id": "u:alice", "name": "private", "role": "admin", "private": True}
    ]


async def test_a_created_space_has_its_creator_as_admin_and_is_listed_for_them_only(
    alice: aiohttp.ClientSession, bob: aiohttp.ClientSession
) -> None:
    async with alice.post("/v1/spaces", json={"name": "Trip ✈️ planning"}) as resp:
        assert resp.status == 201
        created = await resp.json()
    assert re.fullmatch(r"s:[a-z2-7]{26}", created["id"])
    assert created == {
        "id": created["id"],
        "name": "Trip ✈️ planning",
        "role": "admin",
        "private": False,
    }
    assert (await _spaces(alice))[1:] == [created]
    assert len(await _spaces(bob)) == 1
    async with alice.get(f"/v1/spaces/{created['id']}/members") as resp:
        assert await resp.json() == {"members": [{"user": "alice", "role": "admin"}]}


async def test_members_of_a_space_share_its_records_and_nothing_else(
    alice: aiohttp.ClientSession, bob: aiohttp.ClientSession, w1: Writer, w2: Writer
) -> None:
    space = await new_space(alice)
    assert (await set_member(alice, space, "bob", "write"))[0] == 200
    status, body = await push(bob, [w2.lww("t1", "title", "Bob's 🎉 thread")], space)
    assert (status, body["cursor"]) == (200, 1)
    await push(alice, [w1.lww("mine", "title", "private")])
    [shared] = await pull_all(alice, space=space)
    assert (shared["key"], shared["value"], shared["seq"]) == ("t1", "Bob's 🎉 thread", 1)
    assert [c["key"] for c in await pull_all(alice)] == ["mine"]  # seqs are per space
    assert await pull_all(bob) == []  # bob's private space holds nothing of it


async def test_a_reader_may_read_but_not_write_and_a_refused_push_changes_nothing(
    alice: aiohttp.ClientSession, bob: aiohttp.ClientSession, w1: Writer, w2: Writer
) -> None:
    space = await new_space(alice)
    await push(alice, [w1.lww("t1", "title", "v1")], space)
    await set_member(alice, space, "bob", "read")
    status, body = await push(bob, [w2.lww("t1", "title", "bob was here")], space)
    assert status == 403
    assert body["error"]["code"] == "forbidden" and "'write'" in body["error"]["message"]
    assert [c["value"] for c in await pull_all(bob, space=space)] == ["v1"]
    async with bob.get("/v1/pull", params={"space": space}) as resp:
        assert (await resp.json())["cursor"] == 1


@pytest.mark.parametrize("space", STRANGERS)
async def test_a_space_one_is_not_in_does_not_exist_for_them(
    alice: aiohttp.ClientSession, bob: aiohttp.ClientSession, w2: Writer, space: str
) -> None:
    real = await new_space(alice)
    expected = None
    for target in (real, space):
        answers = []
        for method, path, kw in [
            ("POST", "/v1/push", {"json": {"mutations": [w2.lww("k", "f", 1)]}}),
            ("GET", "/v1/pull", {}),
            ("GET", "/v1/conflicts", {}),
            ("GET", "/v1/live", {}),
        ]:
            async with bob.request(method, path, params={"space": target}, **kw) as resp:
                answers.append((resp.status, await resp.json()))
        async with bob.get(f"/v1/spaces/{target}/members") as resp:
            answers.append((resp.status, await resp.json()))
        if expected is None:
            expected = answers
        assert answers == expected  # a real space and a stranger answer alike
    assert {status for status, _ in expected} == {404}
    assert {body["error"]["code"] for _, body in expected} == {"space_not_found"}
    assert await pull_all(alice, space=real) == []


async def test_only_an_admin_changes_members_and_a_space_keeps_an_admin(
    alice: aiohttp.ClientSession, bob: aiohttp.ClientSession
) -> None:
    space = await new_space(alice)
    await set_member(alice, space, "bob", "write")
    status, body = await set_member(bob, space, "carol", "read")
    assert (status, body["error"]["code"]) == (403, "forbidden")
    status, body = await set_member(alice, space, "alice", "write")
    assert (status, body["error"]["code"]) == (409, "last_admin")
    async with alice.delete(f"/v1/spaces/{space}/members/alice") as resp:
        assert (resp.status, (await resp.json())["error"]["code"]) == (409, "last_admin")
    assert (await set_member(alice, space, "bob", "admin"))[0] == 200
    async with alice.delete(f"/v1/spaces/{space}/members/alice") as resp:
        assert resp.status == 204  # bob is admin now: alice may leave
    async with alice.get("/v1/pull", params={"space": space}) as resp:
        assert resp.status == 404
    async with bob.get(f"/v1/spaces/{space}/members") as resp:
        assert await resp.json() == {"members": [{"user": "bob", "role": "admin"}]}


async def test_any_member_may_leave_and_removing_a_stranger_is_harmless(
    alice: aiohttp.ClientSession, bob: aiohttp.ClientSession
) -> None:
    space = await new_space(alice)
    await set_member(alice, space, "bob", "read")
    async with bob.delete(f"/v1/spaces/{space}/members/bob") as resp:
        assert resp.status == 204
    assert len(await _spaces(bob)) == 1
    async with alice.delete(f"/v1/spaces/{space}/members/nobody") as resp:
        assert resp.status == 204


async def test_a_private_space_has_one_member_always(alice: aiohttp.ClientSession) -> None:
    status, body = await set_member(alice, "u:alice", "bob", "read")
    assert (status, body["error"]["code"]) == (403, "private_space")
    async with alice.delete("/v1/spaces/u:alice/members/alice") as resp:
        assert (resp.status, (await resp.json())["error"]["code"]) == (403, "private_space")
    async with alice.get("/v1/spaces/u:alice/members") as resp:
        assert await resp.json() == {"members": [{"user": "alice", "role": "admin"}]}


@pytest.mark.parametrize(
    "body",
    [b"", b"{", b"[]", b'{"name": ""}', b'{"name": 7}', b'{"name": "x", "extra": 1}'],
)
async def test_a_bad_new_space_is_a_400_and_creates_nothing(
    alice: aiohttp.ClientSession, body: bytes
) -> None:
    async with alice.post("/v1/spaces", data=body) as resp:
        assert resp.status == 400
        assert (await resp.json())["error"]["code"] in {"bad_request", "malformed_json"}
    assert len(await _spaces(alice)) == 1


@pytest.mark.parametrize(
    "body", [b'{"role": "owner"}', b"{}", b"null", b'{"role": "read", "x": 0}']
)
async def test_a_bad_role_change_is_a_400_and_changes_nothing(
    alice: aiohttp.ClientSession, body: bytes
) -> None:
    space = await new_space(alice)
    async with alice.put(f"/v1/spaces/{space}/members/bob", data=body) as resp:
        assert resp.status == 400
    async with alice.get(f"/v1/spaces/{space}/members") as resp:
        assert len((await resp.json())["members"]) == 1


@pytest.mark.parametrize("quietsync_server_options", [{"max_spaces_per_user": 2}])
async def test_one_user_cannot_grow_anothers_spaces_without_bound(
    alice: aiohttp.ClientSession, bob: aiohttp.ClientSession
) -> None:
    spaces = [await new_space(alice) for _ in range(2)]
    async with alice.post("/v1/spaces", json={"name": "third"}) as resp:
        assert (resp.status, (await resp.json())["error"]["code"]) == (429, "too_many_spaces")
    theirs = [await new_space(bob) for _ in range(2)]
    assert (await set_member(bob, theirs[0], "alice", "read"))[0] == 429
    assert len(await _spaces(alice)) == 1 + len(spaces)


async def test_concurrent_writes_of_two_users_are_one_conflict_naming_both(
    alice: aiohttp.ClientSession, bob: aiohttp.ClientSession, w1: Writer, w2: Writer
) -> None:
    space = await new_space(alice)
    await set_member(alice, space, "bob", "write")
    await push(alice, [w1.lww("t", "title", "Crème brûlée")], space)
    await push(bob, [w2.lww("t", "title", "Tiramisù")], space)  # did not see alice's
    await push(bob, [w2.lww("t", "done", True)], space)
    _, same = await push(alice, [w1.lww("t", "done", True)], space)
    assert (same["conflicts"], same["suppressed"]) == ([], 1)  # the same content: suppressed
    [conflict] = await conflicts_of(alice, space)
    assert await conflicts_of(bob, space) == [conflict]  # one report, for every member
    assert {conflict["winner"]["user"], conflict["loser"]["user"]} == {"alice", "bob"}
    assert {conflict["winner"]["value"], conflict["loser"]["value"]} == {"Crème brûlée", "Tiramisù"}
