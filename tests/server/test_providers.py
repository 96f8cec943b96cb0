"""Job providers: the scripted one, and the OpenAI-compatible one against a real local stream."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from quietsync.server.jobs.providers import (
    OpenAIProvider,
    ProviderError,
    ScriptedProvider,
    provider_from_env,
    scripted_reply,
)


async def collect(stream: AsyncIterator[str]) -> list[str]:
    return [token async for token in stream]


async def test_scripted_provider_is_deterministic() -> None:
    provider = ScriptedProvider(tokens=10, token_delay=0)
    first = await collect(provider.stream("hello there"))
    assert first == await collect(provider.stream("hello there"))
    assert first == scripted_reply("hello there", 10)
    assert len(first) == 10
    assert "".join(first).startswith("You said: hello there")


async def test_scripted_provider_fails_where_told() -> None:
    provider = ScriptedProvider(tokens=10, token_delay=0, fail_after=3)
    received: list[str] = []
    with pytest.raises(ProviderError, match="after 3 tokens"):
        async for token in provider.stream("x"):
            received.append(token)
    assert received == scripted_reply("x", 10)[:3]


def sse_app(
    events: list[str], *, status: int = 200, seen: list[dict] | None = None
) -> web.Application:
    """An OpenAI-compatible chat-completions endpoint streaming `events` as SSE lines."""

    async def completions(request: web.Request) -> web.StreamResponse:
        if seen is not None:
            seen.append(
                {"body": await request.json(), "auth": request.headers.get("Authorization")}
            )
        if status != 200:
            return web.json_response({"error": {"message": "nope"}}, status=status)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for event in events:
            await response.write(f"{event}\n\n".encode())
        return response

    app = web.Application()
    app.router.add_post("/v1/chat/completions", completions)
    return app


def chunk(text: str) -> str:
    return "data: " + json.dumps({"choices": [{"delta": {"content": text}}]})


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[web.Application], object]]:
    servers: list[TestServer] = []

    async def start(app: web.Application) -> str:
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        servers.append(server)
        return str(server.make_url("/v1"))

    yield start
    for server in servers:
        await server.close()


async def test_openai_provider_streams_tokens_from_a_real_sse_stream(serve) -> None:  # type: ignore[no-untyped-def]
    seen: list[dict] = []
    events = [
        ": keepalive comment",
        chunk("Hel"),
        chunk("lo"),
        'data: {"choices":[{"delta":{}}]}',
        chunk(" world"),
        "data: [DONE]",
    ]
    base_url = await serve(sse_app(events, seen=seen))
    provider = OpenAIProvider(base_url=base_url, model="tiny", api_key="sk-test")
    assert await collect(provider.stream("hi")) == ["Hel", "lo", " world"]
    assert seen[0]["body"]["stream"] is True
    assert seen[0]["body"]["model"] == "tiny"
    assert seen[0]["body"]["messages"] == [{"role": "user", "content": "hi"}]
    assert seen[0]["auth"] == "Bearer sk-test"


@pytest.mark.parametrize(
    ("events", "status", "message"),
    [
        ([chunk("a")], 200, "closed the stream before"),
        (["data: {not json"], 200, "malformed event"),
        ([], 429, "answered 429"),
    ],
)
async def test_openai_provider_errors_are_clear(serve, events, status, message) -> None:  # type: ignore[no-untyped-def]
    base_url = await serve(sse_app(events, status=status))
    with pytest.raises(ProviderError, match=message):
        await collect(OpenAIProvider(base_url=base_url, model="m").stream("hi"))


async def test_openai_provider_unreachable_is_a_provider_error(unused_tcp_port: int) -> None:
    provider = OpenAIProvider(base_url=f"http://127.0.0.1:{unused_tcp_port}/v1", model="m")
    with pytest.raises(ProviderError, match="unreachable"):
        await collect(provider.stream("hi"))


def test_provider_from_env() -> None:
    assert isinstance(provider_from_env({}), ScriptedProvider)
    assert provider_from_env({"QUIETSYNC_TOKEN_DELAY": "0.5"}) == ScriptedProvider(token_delay=0.5)
    openai = provider_from_env(
        {
            "QUIETSYNC_PROVIDER": "openai",
            "OPENAI_BASE_URL": "http://127.0.0.1:1/v1",
            "QUIETSYNC_OPENAI_MODEL": "m",
            "OPENAI_API_KEY": "k",
        }
    )
    assert openai == OpenAIProvider(base_url="http://127.0.0.1:1/v1", model="m", api_key="k")
    with pytest.raises(ProviderError, match="needs OPENAI_BASE_URL"):
        provider_from_env({"QUIETSYNC_PROVIDER": "openai"})
    with pytest.raises(ProviderError, match="unknown provider 'llama'"):
        provider_from_env({"QUIETSYNC_PROVIDER": "llama"})
