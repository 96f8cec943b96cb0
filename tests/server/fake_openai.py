"""A fake OpenAI-compatible provider: a real aiohttp app on loopback streaming SSE chunks.

`sse_app(events)` answers ``POST /v1/chat/completions`` with `events` (each
sent as one SSE line and a blank line). A `FakeProvider` records each request
(`seen`), can pause before an event (`gates`: event index -> asyncio.Event the
test sets) and can hold the stream open after the last event (`hold`).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import attrs
from aiohttp import web
from aiohttp.test_utils import TestServer

__all__ = ["FakeProvider", "chunk", "fake_provider", "sse_app"]


def chunk(text: str) -> str:
    """One chat-completions stream event carrying `text`."""
    return "data: " + json.dumps({"choices": [{"delta": {"content": text}}]})


@attrs.define
class FakeProvider:
    events: list[str]
    status: int = 200
    seen: list[dict[str, Any]] = attrs.Factory(list)
    gates: dict[int, asyncio.Event] = attrs.Factory(dict)
    sent: asyncio.Event = attrs.Factory(asyncio.Event)
    """Set once every event of a request was sent."""
    hold: asyncio.Event | None = None
    """If set: the stream stays open after the last event until this is set."""
    url: str = ""


def sse_app(provider: FakeProvider) -> web.Application:
    """The chat-completions endpoint of `provider`."""

    async def completions(request: web.Request) -> web.StreamResponse:
        provider.seen.append(
            {"body": await request.json(), "auth": request.headers.get("Authorization")}
        )
        if provider.status != 200:
            return web.json_response({"error": {"message": "nope"}}, status=provider.status)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for index, event in enumerate(provider.events):
            if index in provider.gates:
                await provider.gates[index].wait()
            await response.write(f"{event}\n\n".encode())
        provider.sent.set()
        if provider.hold is not None:
            await provider.hold.wait()
        return response

    app = web.Application()
    app.router.add_post("/v1/chat/completions", completions)
    return app


@asynccontextmanager
async def fake_provider(events: list[str], **options: Any) -> AsyncIterator[FakeProvider]:
    """A `FakeProvider` serving on a free loopback port; its `url` is the API base URL."""
    provider = FakeProvider(events, **options)
    server = TestServer(sse_app(provider), host="127.0.0.1")
    await server.start_server()
    provider.url = str(server.make_url("/v1"))
    try:
        yield provider
    finally:
        if provider.hold is not None:
            provider.hold.set()
        for gate in provider.gates.values():
            gate.set()
        await server.close()
