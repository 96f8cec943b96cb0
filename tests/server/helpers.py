"""Helpers for the server tests: a replica-like writer of mutations, and HTTP shortcuts."""

from __future__ import annotations

import base64
import json
from typing import Any

import aiohttp

from quietsync.conflicts import HLC, Clock, FieldRef, initial_text_update
from quietsync.protocol import DecodedPush, Kind, Mutation, decode_push

__all__ = ["Writer", "conflicts_of", "decoded", "pull_all", "push"]


class Writer:
    """Makes mutations the way a replica does: ids ``node:n``, stamps from its own `Clock`."""

    def __init__(self, node: str, *, wall: Any = None) -> None:
        self.node = node
        self.clock = Clock(node) if wall is None else Clock(node, wall=wall)
        self._n = 0

    def _id(self) -> str:
        self._n += 1
        return f"{self.node}:{self._n}"

    def lww(
        self,
        key: str,
        field: str,
        value: Any,
        *,
        collection: str = "notes",
        base: HLC | None = None,
        stamp: HLC | None = None,
    ) -> dict[str, Any]:
        return self._mutation("lww", collection, key, field, stamp, base, value=value)

    def crdt(
        self,
        key: str,
        field: str,
        update: bytes,
        *,
        collection: str = "notes",
        stamp: HLC | None = None,
    ) -> dict[str, Any]:
        return self._mutation("crdt", collection, key, field, stamp, None, update=update)

    def _mutation(
        self,
        kind: Kind,
        collection: str,
        key: str,
        field: str,
        stamp: HLC | None,
        base: HLC | None,
        **payload: Any,
    ) -> dict[str, Any]:
        return Mutation(
            self._id(), collection, key, field, kind, stamp or self.clock.now(), base, **payload
        ).to_json()

    def text(self, key: str, field: str, content: str, **kw: Any) -> dict[str, Any]:
        """A crdt mutation initialising a text field with `content`."""
        update = initial_text_update(FieldRef(kw.get("collection", "notes"), key, field), content)
        return self.crdt(key, field, update, **kw)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _in(space: str | None) -> dict[str, str]:
    """The query parameters naming `space` (none: the private space)."""
    return {} if space is None else {"space": space}


async def push(
    http: aiohttp.ClientSession, mutations: list[Any], space: str | None = None
) -> tuple[int, dict[str, Any]]:
    async with http.post("/v1/push", json={"mutations": mutations}, params=_in(space)) as resp:
        return resp.status, await resp.json()


async def pull_all(
    http: aiohttp.ClientSession, since: int = 0, space: str | None = None
) -> list[dict[str, Any]]:
    """Every change of `space` after `since`, following `has_more`."""
    changes: list[dict[str, Any]] = []
    while True:
        async with http.get("/v1/pull", params={"since": since, **_in(space)}) as resp:
            assert resp.status == 200, await resp.text()
            page = await resp.json()
        changes += page["changes"]
        since = page["cursor"]
        if not page["has_more"]:
            return changes


async def conflicts_of(
    http: aiohttp.ClientSession, space: str | None = None
) -> list[dict[str, Any]]:
    async with http.get("/v1/conflicts", params=_in(space)) as resp:
        assert resp.status == 200, await resp.text()
        return (await resp.json())["conflicts"]


def decoded(mutations: list[Any]) -> DecodedPush:
    """A push of these mutations (JSON-able objects), decoded as the server decodes a body."""
    return decode_push(json.dumps({"mutations": mutations}).encode())


async def new_space(http: aiohttp.ClientSession, name: str = "shared") -> str:
    """Create a shared space (the session's user is its admin); its id."""
    async with http.post("/v1/spaces", json={"name": name}) as resp:
        assert resp.status == 201, await resp.text()
        return str((await resp.json())["id"])


async def set_member(
    http: aiohttp.ClientSession, space: str, user: str, role: str
) -> tuple[int, dict[str, Any]]:
    async with http.put(f"/v1/spaces/{space}/members/{user}", json={"role": role}) as resp:
        return resp.status, await resp.json()
