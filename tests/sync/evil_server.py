"""A small, deliberately broken sync server for the client's hardening tests.

It is NOT the quietsync server: a bare aiohttp app on 127.0.0.1 whose
``/v1/push``, ``/v1/pull`` and ``/v1/live`` handlers a test replaces one by
one. The defaults answer like an honest, empty server (every push applied,
nothing to pull, a hello on the socket and then silence), so a test breaks
exactly the one thing it is about. Every request is counted, so a test can
tell a client that backs off from one in a busy loop.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import attrs
from aiohttp import web

__all__ = [
    "STOPPING",
    "EvilServer",
    "Handler",
    "change",
    "evil_server",
    "honest_pull",
    "json_answer",
]

HISTORY = "h1"
STAMP = "001700000000000-00000000-evil"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
STOPPING = web.AppKey("stopping", asyncio.Event)
"""Set when the server shuts down: a handler that never answers waits on it."""


def json_answer(body: Any, status: int = 200) -> web.Response:
    """`body` as JSON text (``ensure_ascii`` keeps a lone surrogate as its escape)."""
    return web.Response(text=json.dumps(body), status=status, content_type="application/json")


def change(seq: int, **fields: Any) -> dict[str, Any]:
    """One wire change of ``notes/evil.title``, with `fields` replacing any of its parts."""
    base = {
        "id": f"evil:{seq}",
        "collection": "notes",
        "key": "evil",
        "field": "title",
        "kind": "lww",
        "value": f"value {seq} ✓",
        "stamp": STAMP,
        "base": None,
        "seq": seq,
    }
    return base | fields


def crdt_change(seq: int, update: str, **fields: Any) -> dict[str, Any]:
    """One wire crdt change (`update`: base64 Yjs bytes) of ``notes/evil.body``."""
    wire = change(seq, **({"field": "body", "kind": "crdt", "update": update} | fields))
    del wire["value"]
    return wire


def since_of(request: web.Request) -> int:
    return int(request.query.get("since", "0"))


async def honest_pull(request: web.Request) -> web.Response:
    """Nothing new: the cursor stays where the client is."""
    return json_answer(
        {"changes": [], "cursor": since_of(request), "has_more": False, "history": HISTORY}
    )


async def honest_push(request: web.Request) -> web.Response:
    body = await request.json()
    results = [{"id": m["id"], "outcome": "applied"} for m in body["mutations"]]
    return json_answer({"results": results, "conflicts": [], "suppressed": 0, "cursor": 0})


async def no_conflicts(request: web.Request) -> web.Response:
    """An empty conflict log: every replica follows it after its pulls."""
    return json_answer({"conflicts": [], "cursor": since_of(request), "has_more": False})


async def quiet_live(request: web.Request) -> web.WebSocketResponse:
    """A hello, then nothing until the client goes away."""
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    await ws.send_str(
        json.dumps({"type": "hello", "cursor": since_of(request), "history": HISTORY})
    )
    async for _ in ws:
        pass
    return ws


@attrs.define
class EvilServer:
    """Where the server listens, and what it was asked (request counts by path)."""

    url: str
    requests: dict[str, int]
    queries: list[tuple[str, dict[str, str]]] = attrs.Factory(list)
    """Every request's path and query parameters, in order."""

    @property
    def total(self) -> int:
        return sum(self.requests.values())


@asynccontextmanager
async def evil_server(
    *,
    pull: Handler = honest_pull,
    push: Handler = honest_push,
    live: Handler = quiet_live,
    spaces: Handler | None = None,
    jobs: Handler | None = None,
) -> AsyncIterator[EvilServer]:
    """Serve the sync endpoints with the given handlers on a free loopback port
    (``GET /v1/spaces`` only if `spaces` is given: by default, a server from before spaces;
    a job's poll and ``/events`` only if `jobs` is: it answers both)."""
    requests: dict[str, int] = {}
    queries: list[tuple[str, dict[str, str]]] = []
    stopping = asyncio.Event()

    def counted(handler: Handler) -> Handler:
        async def handle(request: web.Request) -> web.StreamResponse:
            requests[request.path] = requests.get(request.path, 0) + 1
            queries.append((request.path, dict(request.query)))
            return await handler(request)

        return handle

    app = web.Application()
    app.router.add_post("/v1/push", counted(push))
    app.router.add_get("/v1/pull", counted(pull))
    app.router.add_get("/v1/live", counted(live))
    app.router.add_get("/v1/conflicts", counted(no_conflicts))
    if spaces is not None:
        app.router.add_get("/v1/spaces", counted(spaces))
    if jobs is not None:
        app.router.add_get("/v1/jobs/{job_id}", counted(jobs))
        app.router.add_get("/v1/jobs/{job_id}/events", counted(jobs))
    app[STOPPING] = stopping
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield EvilServer(f"http://{host}:{port}", requests, queries)
    finally:
        stopping.set()
        await runner.cleanup()
