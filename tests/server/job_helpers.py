"""Helpers for the jobs tests: start jobs, read event streams, read records from /v1/pull."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from quietsync.protocol import JobEvent
from quietsync.server.jobs import JobsConfig, ScriptedProvider, scripted_reply
from quietsync.testing import RunningServer, running_server

__all__ = [
    "BOTH_STORES",
    "USERS",
    "WAIT",
    "Records",
    "events_of",
    "poll",
    "read_events",
    "records",
    "reply",
    "rest_of",
    "scripted",
    "serve",
    "start",
    "wait_status",
    "wait_unwatched",
]

WAIT = 10.0
USERS = {"alice": "token-a", "bob": "token-b"}
BOTH_STORES = pytest.mark.parametrize("store_kind", ["sqlite", "postgres"])
"""Runs a test on SQLite and on PostgreSQL: its servers start in ``db_home`` (the
``server`` fixture follows it too), which follows ``store_kind``."""


def scripted(
    tokens: int = 40, token_delay: float = 0.0, fail_after: int | None = None, **fields: Any
) -> JobsConfig:
    """Jobs streaming from the scripted provider (no token delay unless asked); `fields` of
    `JobsConfig` beside it."""
    return JobsConfig(provider=ScriptedProvider(tokens, token_delay, fail_after), **fields)


@asynccontextmanager
async def serve(home: Path | str, **options: Any) -> AsyncIterator[RunningServer]:
    """A server with these `running_server` overrides, on a file in the directory `home`
    or on the PostgreSQL database whose URL `home` is (the ``db_home`` fixture).

    Jobs default to `scripted()`: 40 tokens, no token delay.
    """
    options.setdefault("jobs", scripted())
    db = home / "server.db" if isinstance(home, Path) else home
    async with running_server(db, users=USERS, **options) as server:
        yield server


def reply(tokens: int, text: str = "hello there") -> str:
    """The scripted provider's whole reply."""
    return "".join(scripted_reply(text, tokens))


async def start(
    http: aiohttp.ClientSession,
    message_id: str = "m1",
    *,
    thread_id: str = "t1",
    text: str = "hello there",
    mode: str = "background",
    space: str | None = None,
) -> dict[str, Any]:
    """Start a background job (in `space`; the private space if None); its 202 body."""
    body = {"thread_id": thread_id, "message_id": message_id, "input": text, "mode": mode}
    params = {} if space is None else {"space": space}
    async with http.post("/v1/jobs", json=body, params=params) as resp:
        assert resp.status == 202, await resp.text()
        return await resp.json()


async def events_of(resp: aiohttp.ClientResponse) -> AsyncIterator[JobEvent]:
    """The job events of an event-stream response, decoded and validated."""
    async for raw in resp.content:
        line = raw.decode().strip()
        if line.startswith("data: "):
            yield JobEvent.from_json(json.loads(line[len("data: ") :]))
        else:
            assert line == "", line


async def read_events(resp: aiohttp.ClientResponse) -> list[JobEvent]:
    """Every event of a stream, up to the server ending it."""
    return await rest_of(events_of(resp))


async def rest_of(stream: AsyncIterator[JobEvent]) -> list[JobEvent]:
    """The remaining events of a stream already being read, up to the server ending it."""
    async with asyncio.timeout(WAIT):
        return [event async for event in stream]


async def poll(http: aiohttp.ClientSession, job_id: str, offset: int = 0) -> dict[str, Any]:
    async with http.get(f"/v1/jobs/{job_id}", params={"offset": str(offset)}) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()


async def wait_status(http: aiohttp.ClientSession, job_id: str) -> dict[str, Any]:
    """Poll until the job is no longer streaming (reads the events stream to its end)."""
    async with http.get(f"/v1/jobs/{job_id}/events") as resp:
        await read_events(resp)
    return await poll(http, job_id)


async def wait_unwatched(http: aiohttp.ClientSession, job_id: str) -> dict[str, Any]:
    """Poll (which does not watch the job) until it is no longer streaming; the answer."""
    async with asyncio.timeout(WAIT):
        while True:
            answer = await poll(http, job_id)
            if answer["status"] != "streaming":
                return answer
            await asyncio.sleep(0.01)


Records = dict[tuple[str, str], dict[str, tuple[Any, str]]]
"""(collection, key) -> field -> (value, stamp), as the change log says."""


async def records(http: aiohttp.ClientSession) -> tuple[Records, list[dict[str, Any]]]:
    """Every record of the user, folded from /v1/pull, and the raw changes."""
    async with http.get("/v1/pull", params={"since": "0", "limit": "5000"}) as resp:
        assert resp.status == 200
        body = await resp.json()
    assert not body["has_more"]
    folded: Records = {}
    for change in body["changes"]:
        fields = folded.setdefault((change["collection"], change["key"]), {})
        fields[change["field"]] = (change.get("value"), change["stamp"])
    return folded, body["changes"]
