"""Job providers: the scripted one, and the OpenAI-compatible one against a real local stream."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from quietsync.server.jobs.providers import (
    OpenAIProvider,
    ProviderError,
    ScriptedProvider,
    provider_from_env,
    scripted_reply,
)
from tests.server.fake_openai import chunk, fake_provider


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


async def test_openai_provider_streams_tokens_from_a_real_sse_stream() -> None:
    events = [
        ": keepalive comment",
        chunk("Hel"),
        chunk("lo"),
        'data: {"choices":[{"delta":{}}]}',
        chunk(" world"),
        "data: [DONE]",
    ]
    async with fake_provider(events) as fake:
        provider = OpenAIProvider(base_url=fake.url, model="tiny", api_key="sk-test")
        assert await collect(provider.stream("hi")) == ["Hel", "lo", " world"]
    seen = fake.seen
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
async def test_openai_provider_errors_are_clear(
    events: list[str], status: int, message: str
) -> None:
    async with fake_provider(events, status=status) as fake:
        with pytest.raises(ProviderError, match=message):
            await collect(OpenAIProvider(base_url=fake.url, model="m").stream("hi"))


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
