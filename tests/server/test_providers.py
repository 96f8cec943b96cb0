"""Job providers: the scripted one, and the OpenAI-compatible one against a real local stream."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from quietsync.server.jobs.providers import (
    Chat,
    ChatMessage,
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
    first = await collect(provider.stream(Chat("hello there")))
    assert first == await collect(provider.stream(Chat("hello there")))
    assert first == scripted_reply("hello there", 10)
    assert len(first) == 10
    assert "".join(first).startswith("You said: hello there")


async def test_scripted_provider_fails_where_told() -> None:
    provider = ScriptedProvider(tokens=10, token_delay=0, fail_after=3)
    received: list[str] = []
    with pytest.raises(ProviderError, match="after 3 tokens"):
        async for token in provider.stream(Chat("x")):
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
        assert await collect(provider.stream(Chat("hi"))) == ["Hel", "lo", " world"]
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
            await collect(OpenAIProvider(base_url=fake.url, model="m").stream(Chat("hi")))


async def test_openai_provider_unreachable_is_a_provider_error(held_port: int) -> None:
    provider = OpenAIProvider(base_url=f"http://127.0.0.1:{held_port}/v1", model="m")
    with pytest.raises(ProviderError, match="unreachable"):
        await collect(provider.stream(Chat("hi")))


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


async def test_a_slow_stream_is_not_cut_while_chunks_keep_coming() -> None:
    """The timeout is between chunks, not for the whole reply: each chunk comes well
    within it, the whole takes longer than it."""
    pieces = ["Ré", "pon", "se ", "👋🏽", " e\u0301", " 𝔘"]
    gates = {i: asyncio.Event() for i in range(1, len(pieces))}
    async with fake_provider([*map(chunk, pieces), "data: [DONE]"], gates=gates) as fake:
        provider = OpenAIProvider(base_url=fake.url, model="m", idle_timeout=1.0)
        received: list[str] = []
        async for token in provider.stream(Chat("hi")):
            received.append(token)
            await asyncio.sleep(0.25)  # a slow reader: 6 x 0.25 s > 1 s in all
            if len(received) in gates:
                gates[len(received)].set()
    assert received == pieces


async def test_a_silent_provider_fails_the_stream_after_its_idle_timeout() -> None:
    gate = asyncio.Event()  # never set: the endpoint goes silent after one chunk
    async with fake_provider([chunk("Hé"), chunk("never")], gates={1: gate}) as fake:
        provider = OpenAIProvider(base_url=fake.url, model="m", idle_timeout=0.3)
        received: list[str] = []
        with pytest.raises(ProviderError, match=r"sent nothing for 0\.3 s"):
            async for token in provider.stream(Chat("hi")):
                received.append(token)
    assert received == ["Hé"]


async def test_the_system_prompt_and_the_history_go_before_the_input() -> None:
    history = (ChatMessage("user", "Bonjour 👋🏽"), ChatMessage("assistant", "Salut e\u0301 𝔘"))
    async with fake_provider(["data: [DONE]"]) as fake:
        provider = OpenAIProvider(base_url=fake.url, model="m", system_prompt="Sois bref ✂️")
        assert await collect(provider.stream(Chat("Et après ?", history))) == []
    assert fake.seen[0]["body"]["messages"] == [
        {"role": "system", "content": "Sois bref ✂️"},
        {"role": "user", "content": "Bonjour 👋🏽"},
        {"role": "assistant", "content": "Salut e\u0301 𝔘"},
        {"role": "user", "content": "Et après ?"},
    ]


def test_the_openai_provider_reads_its_prompt_and_idle_timeout_from_the_environment() -> None:
    env = {
        "QUIETSYNC_PROVIDER": "openai",
        "OPENAI_BASE_URL": "http://127.0.0.1:1/v1",
        "QUIETSYNC_OPENAI_MODEL": "m",
        "QUIETSYNC_SYSTEM_PROMPT": "Réponds en français 🇫🇷",
        "QUIETSYNC_PROVIDER_IDLE_TIMEOUT": "12.5",
    }
    provider = provider_from_env(env)
    assert isinstance(provider, OpenAIProvider)
    assert (provider.system_prompt, provider.idle_timeout) == ("Réponds en français 🇫🇷", 12.5)
    for bad in ("soon", "0", "-1"):
        with pytest.raises(ProviderError, match=r"idle timeout|IDLE_TIMEOUT"):
            provider_from_env({**env, "QUIETSYNC_PROVIDER_IDLE_TIMEOUT": bad})
