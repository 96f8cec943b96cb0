"""`SpacesClient` against a real server: sharing a space from the app, typed refusals."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from quietsync.replica import RequestRefusedError, SpaceMember, SpaceNotFoundError, SpacesClient
from quietsync.testing import RunningServer, running_server

USERS = {"alice": "token-alice-0001", "bob": "token-bob-00002"}


@pytest.fixture
async def server() -> AsyncIterator[RunningServer]:
    async with running_server(users=USERS) as srv:
        yield srv


@pytest.fixture
async def alice(server: RunningServer) -> AsyncIterator[SpacesClient]:
    async with SpacesClient(server.url, token=USERS["alice"]) as client:
        yield client


@pytest.fixture
async def bob(server: RunningServer) -> AsyncIterator[SpacesClient]:
    async with SpacesClient(server.url, token=USERS["bob"]) as client:
        yield client


async def test_an_app_creates_a_space_and_shares_it(alice: SpacesClient, bob: SpacesClient) -> None:
    space = await alice.create("Voyage à Kyōto 🗾")
    assert (space.name, space.role, space.private) == ("Voyage à Kyōto 🗾", "admin", False)
    assert await alice.set_role(space.id, "bob", "write") == SpaceMember("bob", "write")
    assert [s.id for s in await bob.list()] == ["u:bob", space.id]
    assert await bob.members(space.id) == [
        SpaceMember("alice", "admin"),
        SpaceMember("bob", "write"),
    ]
    await bob.remove(space.id, "bob")  # leaving
    assert [s.id for s in await bob.list()] == ["u:bob"]


async def test_refusals_are_typed_and_name_their_code(
    alice: SpacesClient, bob: SpacesClient
) -> None:
    space = await alice.create("team")
    with pytest.raises(SpaceNotFoundError):
        await bob.members(space.id)
    await alice.set_role(space.id, "bob", "read")
    with pytest.raises(RequestRefusedError) as refused:
        await bob.set_role(space.id, "bob", "admin")
    assert (refused.value.status, refused.value.code) == (403, "forbidden")
    with pytest.raises(RequestRefusedError) as last:
        await alice.remove(space.id, "alice")
    assert (last.value.status, last.value.code) == (409, "last_admin")
    with pytest.raises(RequestRefusedError) as private:
        await alice.set_role("u:alice", "bob", "read")
    assert private.value.code == "private_space"


async def test_ids_with_path_characters_stay_one_path_segment(alice: SpacesClient) -> None:
    space = await alice.create("odd ids")
    assert await alice.set_role(space.id, "a/b?c#d é", "read") == SpaceMember("a/b?c#d é", "read")
    assert SpaceMember("a/b?c#d é", "read") in await alice.members(space.id)
    with pytest.raises(SpaceNotFoundError):
        await alice.members("../spaces")
