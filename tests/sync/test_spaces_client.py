"""The sync client's spaces (rules 12-13 of `replica.sync_client`) against a scripted server.

`evil_server` here plays an honest server with spaces: a test decides which
spaces ``GET /v1/spaces`` lists, and which space's requests are refused
(``404 space_not_found``) or whose socket is closed with 4003. The same
behaviour against the real server is in ``test_spaces_e2e.py``.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from aiohttp import web

from quietsync.replica import (
    LiveMessage,
    ProtocolError,
    RefusedMutation,
    Replica,
    SpaceNotFoundError,
    SpaceRevokedError,
    SyncClient,
)
from quietsync.replica.http import decode_error
from quietsync.replica.transport import SpaceInfo, decode_live, decode_spaces
from quietsync.replica.transport_http import HttpTransport
from tests.sync.conftest import TOKEN, wait_status
from tests.sync.evil_server import (
    HISTORY,
    change,
    evil_server,
    honest_pull,
    honest_push,
    json_answer,
    quiet_live,
    since_of,
)

A, B = "s:aaaaaaaaaaaaaaaaaaaaaaaaaa", "s:bbbbbbbbbbbbbbbbbbbbbbbbbb"
PRIVATE = {"id": "u:alice", "name": "private", "role": "admin", "private": True}


def shared(space: str, role: str = "write") -> dict[str, Any]:
    return {"id": space, "name": f"späce {space[-1]} 😀", "role": role, "private": False}


NOT_FOUND = {"error": {"code": "space_not_found", "message": "no such space"}}


# -- decoding -----------------------------------------------------------------------


def test_the_spaces_answer_decodes() -> None:
    body = json.dumps({"spaces": [PRIVATE, shared(A, "read")]})
    assert decode_spaces(body) == [
        SpaceInfo("u:alice", "private", "admin", True),
        SpaceInfo(A, "späce a 😀", "read", False),
    ]


@pytest.mark.parametrize(
    "spaces",
    [
        [],  # no private space
        [shared(A), PRIVATE],  # private not first
        [PRIVATE, PRIVATE],  # two private spaces
        [PRIVATE, shared("u:bob")],  # a shared space with a private id
        [PRIVATE, shared(A), shared(A)],  # a repeat
        [PRIVATE, shared("s:a\x00b")],  # an id no space can have
        [PRIVATE, shared(A, "owner")],  # no such role
        [PRIVATE, {"id": A, "name": "x", "role": "read"}],  # no "private"
        [{**PRIVATE, "id": "alice"}],  # a private space without the prefix
    ],
)
def test_a_spaces_answer_off_the_protocol_is_a_protocol_error(spaces: list[Any]) -> None:
    with pytest.raises(ProtocolError):
        decode_spaces(json.dumps({"spaces": spaces}))


def test_the_live_notice_of_changed_memberships_decodes() -> None:
    assert decode_live('{"type": "spaces"}') == LiveMessage("spaces", 0)
    with pytest.raises(ProtocolError):
        decode_live('{"type": "space"}')


def test_space_not_found_is_its_own_error() -> None:
    error = decode_error(404, NOT_FOUND)
    assert isinstance(error, SpaceNotFoundError) and error.code == "space_not_found"
    assert type(decode_error(404, "404: Not Found")).__name__ == "RequestRefusedError"


# -- the transport --------------------------------------------------------------------


async def test_a_shared_space_is_a_query_parameter_and_the_private_space_none() -> None:
    async with evil_server() as server:
        transport = HttpTransport(server.url, token=TOKEN)
        try:
            for space in (None, A):
                await transport.pull(0, 10, space=space)
                await transport.conflicts(0, 10, space=space)
                await transport.push([], space=space)
                async with transport.live(0, space=space) as messages:
                    async for msg in messages:
                        assert msg.type == "hello"
                        break
        finally:
            await transport.close()
    spaces = [query.get("space") for _, query in server.queries]
    assert spaces == [None] * 4 + [A] * 4


async def close_4003(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    await ws.send_str(json.dumps({"type": "hello", "cursor": 0, "history": HISTORY}))
    await ws.close(code=4003, message=b"revoked")
    return ws


async def test_a_socket_closed_with_4003_is_space_revoked() -> None:
    async with evil_server(live=close_4003) as server:
        transport = HttpTransport(server.url, token=TOKEN)
        try:
            with pytest.raises(SpaceRevokedError, match="4003"):
                async with transport.live(0, space=A) as messages:
                    async for _ in messages:
                        pass
        finally:
            await transport.close()


# -- the client ---------------------------------------------------------------------------


class Script:
    """What the scripted server does: the spaces it lists, the spaces it refuses."""

    def __init__(self, *listed: str) -> None:
        self.listed = list(listed)
        self.refused: set[str] = set()
        self.failing: set[str] = set()  # pushes answer 500: writes stay pending
        self.revoke_live: set[str] = set()

    def refusal(self, request: web.Request) -> web.Response | None:
        space = request.query.get("space")
        if space in self.refused:
            return json_answer(NOT_FOUND, 404)
        return None

    async def spaces(self, request: web.Request) -> web.Response:
        return json_answer({"spaces": [PRIVATE, *(shared(s) for s in self.listed)]})

    async def pull(self, request: web.Request) -> web.StreamResponse:
        if (refused := self.refusal(request)) is not None:
            return refused
        if request.query.get("space") == A and since_of(request) == 0:
            body = {"changes": [change(1)], "cursor": 1, "has_more": False, "history": HISTORY}
            return json_answer(body)
        return await honest_pull(request)

    async def push(self, request: web.Request) -> web.StreamResponse:
        if (refused := self.refusal(request)) is not None:
            return refused
        if request.query.get("space") in self.failing:
            return web.Response(status=500, text="test: down")
        return await honest_push(request)

    async def live(self, request: web.Request) -> web.StreamResponse:
        if request.query.get("space") in self.revoke_live:
            return await close_4003(request)
        return await quiet_live(request)

    def server(self) -> Any:
        return evil_server(pull=self.pull, push=self.push, live=self.live, spaces=self.spaces)


def set_aside(replica: Replica, space: str) -> list[tuple[str, str, Any, str]]:
    return [
        (r.mutation.collection, r.mutation.key, r.mutation.value, r.reason)
        for r in replica.refused()
        if r.space == space
    ]


async def test_every_space_is_synced_each_from_its_own_cursor(replica: Replica) -> None:
    script = Script(A, B)
    async with script.server() as server:
        client = SyncClient(replica, server.url, token=TOKEN)
        try:
            await client.sync_once()
        finally:
            await client.stop()
    assert client.status.spaces == {None, A, B}
    assert replica.space(A).get("notes", "evil") == {"title": "value 1 ✓"}
    assert replica.get("notes", "evil") is replica.space(B).get("notes", "evil") is None
    pulls = {q.get("space") for path, q in server.queries if path == "/v1/pull"}
    assert pulls == {None, A, B}


async def test_an_old_server_without_spaces_is_synced_as_before(replica: Replica) -> None:
    async with evil_server() as server:
        client = SyncClient(replica, server.url, token=TOKEN)
        replica.put("notes", "n", {"v": 1})
        try:
            await client.sync_once()
        finally:
            await client.stop()
    assert client.status.error is None and client.status.spaces == {None}
    assert replica.pending_count() == 0
    assert all("space" not in q for _, q in server.queries)


async def test_a_space_answered_404_is_purged_and_its_writes_set_aside(replica: Replica) -> None:
    script = Script(A)
    heard: list[RefusedMutation] = []
    async with script.server() as server:
        client = SyncClient(replica, server.url, token=TOKEN, on_refused=heard.extend)
        try:
            await client.sync_once()
            replica.space(A).put("notes", "mine", {"v": "pas encore ✓"})
            replica.put("notes", "mine", {"v": "private"})
            script.refused.add(A)
            await client.sync_once()
        finally:
            await client.stop()
    assert set_aside(replica, A) == [("notes", "mine", "pas encore ✓", "space_revoked")]
    assert [(r.space, r.reason) for r in heard] == [(A, "space_revoked")]
    assert replica.space(A).keys("notes") == []
    assert replica.get("notes", "mine") == {"v": "private"} and replica.pending_count() == 0
    assert client.status.spaces == {None} and client.status.error is None


async def test_a_space_gone_from_the_list_is_purged_with_its_unsynced_writes(
    replica: Replica,
) -> None:
    script = Script(A, B)
    async with script.server() as server:
        client = SyncClient(replica, server.url, token=TOKEN)
        try:
            await client.sync_once()
            script.failing.add(A)
            replica.space(A).text_insert("notes", "t", "body", 0, "e\u0301 𝄞")
            with pytest.raises(Exception, match="500"):
                await client.sync_once()
            assert replica.pending_count() == 1
            script.listed.remove(A)
            await client.sync_once()
        finally:
            await client.stop()
    assert set_aside(replica, A) == [("notes", "t", None, "space_revoked")]
    assert replica.space(A).get("notes", "evil") is None
    assert client.status.spaces == {None, B} and replica.pending_count() == 0


async def test_a_socket_revoked_live_purges_the_space(replica: Replica) -> None:
    script = Script(A)
    script.revoke_live.add(A)
    pulled = asyncio.Event()
    replica.space(A).subscribe("notes", lambda _: pulled.set())
    async with script.server() as server:
        client = SyncClient(replica, server.url, token=TOKEN, spaces=[A])
        async with client:
            await asyncio.wait_for(pulled.wait(), 10)  # the space was synced, then revoked
            await wait_status(client, lambda status: A not in status.spaces)
    assert replica.space(A).keys("notes") == []
    assert client.status.spaces == frozenset()


async def test_drop_space_stops_syncing_and_purges(replica: Replica) -> None:
    script = Script(A, B)
    async with script.server() as server:
        client = SyncClient(replica, server.url, token=TOKEN)
        try:
            await client.sync_once()
            replica.space(A).put("notes", "late", {"v": 2})
            await client.drop_space(A)
            await client.sync_once()  # still listed, but dropped: not synced again
            await client.add_space(B)
        finally:
            await client.stop()
    assert set_aside(replica, A) == [("notes", "late", 2, "space_dropped")]
    assert replica.space(A).keys("notes") == []
    assert client.status.spaces == {None, B}
