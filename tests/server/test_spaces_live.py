"""Live sockets and membership: a removed member's socket closes at once; news of spaces."""

from __future__ import annotations

import asyncio
import json
import time

import aiohttp

from quietsync.protocol import REVOKED_CLOSE_CODE
from tests.server.helpers import Writer, new_space, push, set_member


async def _next(ws: aiohttp.ClientWebSocketResponse) -> dict[str, object]:
    msg = await asyncio.wait_for(ws.receive(), timeout=5)
    assert msg.type == aiohttp.WSMsgType.TEXT, msg
    return dict(json.loads(msg.data))


async def test_a_removed_members_socket_closes_within_a_second_and_gets_nothing_more(
    alice: aiohttp.ClientSession, bob: aiohttp.ClientSession, w1: Writer
) -> None:
    space = await new_space(alice)
    await set_member(alice, space, "bob", "read")
    async with bob.ws_connect("/v1/live", params={"space": space, "since": 0}) as ws:
        assert (await _next(ws))["type"] == "hello"
        await push(alice, [w1.lww("t", "title", "before")], space)
        change = await _next(ws)
        assert [c["value"] for c in change["changes"]] == ["before"]  # type: ignore[union-attr]
        started = time.monotonic()
        async with alice.delete(f"/v1/spaces/{space}/members/bob") as resp:
            assert resp.status == 204
        await push(alice, [w1.lww("t", "title", "after the removal")], space)
        msg = await asyncio.wait_for(ws.receive(), timeout=5)
        assert (msg.type, msg.data) == (aiohttp.WSMsgType.CLOSE, REVOKED_CLOSE_CODE)
        assert time.monotonic() - started < 1.0
    async with bob.get("/v1/live", params={"space": space}) as resp:
        assert resp.status == 404


async def test_a_members_private_socket_hears_that_their_spaces_changed(
    alice: aiohttp.ClientSession, bob: aiohttp.ClientSession
) -> None:
    async with alice.ws_connect("/v1/live") as mine:
        assert (await _next(mine))["type"] == "hello"
        space = await new_space(alice)
        assert await _next(mine) == {"type": "spaces"}  # the creator's other devices
    async with bob.ws_connect("/v1/live") as ws:
        assert (await _next(ws))["type"] == "hello"
        await set_member(alice, space, "bob", "write")
        assert await _next(ws) == {"type": "spaces"}
        await set_member(alice, space, "bob", "read")
        assert await _next(ws) == {"type": "spaces"}
        async with alice.delete(f"/v1/spaces/{space}/members/bob") as resp:
            assert resp.status == 204
        assert await _next(ws) == {"type": "spaces"}
        assert ws.close_code is None  # the private socket stays open


async def test_a_demoted_member_keeps_reading_live(
    alice: aiohttp.ClientSession, bob: aiohttp.ClientSession, w1: Writer
) -> None:
    space = await new_space(alice)
    await set_member(alice, space, "bob", "admin")
    async with bob.ws_connect("/v1/live", params={"space": space}) as ws:
        assert (await _next(ws))["type"] == "hello"
        await set_member(alice, space, "bob", "read")
        await push(alice, [w1.lww("t", "title", "still yours to read")], space)
        change = await _next(ws)
        assert [c["value"] for c in change["changes"]] == ["still yours to read"]  # type: ignore[union-attr]
