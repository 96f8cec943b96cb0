"""Where job output comes from: one `Provider` interface, two implementations.

* `ScriptedProvider` (the default): a deterministic reply derived from the
  input, streamed token by token with a configurable delay and an optional
  injected failure. The demo and the tests run on it, offline.
* `OpenAIProvider`: any OpenAI-compatible ``/chat/completions`` endpoint,
  streamed (server-sent events), configured from the environment. It sends
  an optional system prompt, the thread's history and the input, and gives
  up when the endpoint stays silent for `OpenAIProvider.idle_timeout`
  seconds (a long reply that keeps streaming is never cut: the job's own
  `JobsConfig.timeout` bounds the whole).

A provider gets a `Chat` (the input, and the thread's earlier messages as the
runner read them, bounded: `quietsync.server.jobs.history`) and only produces
tokens; the job runner owns persistence, stamps, limits and cancellation
(cancelling the iterating task stops a provider).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
from collections.abc import AsyncIterator, Mapping
from typing import Any, Literal, Protocol

import aiohttp
import attrs

from quietsync.conflicts import QuietsyncError

__all__ = [
    "Chat",
    "ChatMessage",
    "OpenAIProvider",
    "Provider",
    "ProviderError",
    "ScriptedProvider",
    "provider_from_env",
    "scripted_reply",
]


class ProviderError(QuietsyncError):
    """The provider could not produce (the rest of) a reply; the job ends in error."""


@attrs.frozen
class ChatMessage:
    """One earlier message of the thread, as a chat model takes it."""

    role: Literal["user", "assistant"]
    content: str


@attrs.frozen
class Chat:
    """What a job asks its provider: the `input`, after the thread's `history`."""

    input: str
    history: tuple[ChatMessage, ...] = ()


class Provider(Protocol):
    """Streams the reply to `chat` as text tokens."""

    def stream(self, chat: Chat) -> AsyncIterator[str]: ...


_SCRIPT = (
    "quietsync keeps a local replica of every thread so that a reply streamed by "
    "the server survives a closed view a switched thread and a restarted process"
)
_WORDS = re.findall(r"\S+", _SCRIPT)


def scripted_reply(prompt: str, tokens: int) -> list[str]:
    """The scripted provider's reply to `prompt`: `tokens` tokens, the same every time."""
    echo = re.findall(r"\S+", prompt)[:8] or ["(empty)"]
    words = ["You", "said:", *echo, "—", *(_WORDS[i % len(_WORDS)] for i in range(tokens))]
    words = words[:tokens]
    return [word if i == 0 else " " + word for i, word in enumerate(words)]


@attrs.frozen
class ScriptedProvider:
    """A deterministic provider for demos and tests.

    `token_delay` seconds pass before each token (so a test can switch threads
    mid-stream); with `fail_after` set, the stream raises `ProviderError` after
    that many tokens.
    """

    tokens: int = attrs.field(default=40, metadata={"help": "scripted reply length in tokens"})
    token_delay: float = attrs.field(
        default=0.02, metadata={"help": "seconds before each scripted token"}
    )
    fail_after: int | None = attrs.field(
        default=None, metadata={"help": "scripted failure after this many tokens"}
    )

    async def stream(self, chat: Chat) -> AsyncIterator[str]:
        for i, token in enumerate(scripted_reply(chat.input, self.tokens)):
            if self.fail_after is not None and i >= self.fail_after:
                raise ProviderError(f"scripted failure after {self.fail_after} tokens")
            if self.token_delay:
                await asyncio.sleep(self.token_delay)
            yield token


def _idle_timeout(_: object, __: attrs.Attribute[float], value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ProviderError(f"the provider's idle timeout must be seconds > 0, got {value!r}")


@attrs.frozen
class OpenAIProvider:
    """Streams from an OpenAI-compatible ``POST {base_url}/chat/completions``.

    `idle_timeout`: seconds the endpoint may stay silent (to connect, to
    answer, between two chunks) before the job ends in error.
    """

    base_url: str
    model: str
    api_key: str | None = None
    idle_timeout: float = attrs.field(default=60.0, validator=_idle_timeout)
    system_prompt: str | None = None

    def messages(self, chat: Chat) -> list[dict[str, Any]]:
        """The request's messages: the system prompt, the history, the input."""
        system = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
        history = [{"role": m.role, "content": m.content} for m in chat.history]
        return [*system, *history, {"role": "user", "content": chat.input}]

    async def stream(self, chat: Chat) -> AsyncIterator[str]:
        url = self.base_url.rstrip("/") + "/chat/completions"
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        body = {"model": self.model, "stream": True, "messages": self.messages(chat)}
        idle = self.idle_timeout
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=idle, sock_read=idle)
        try:
            async with (
                aiohttp.ClientSession(timeout=timeout) as session,
                session.post(url, json=body, headers=headers) as response,
            ):
                if response.status != 200:
                    detail = (await response.text())[:200]
                    raise ProviderError(f"provider answered {response.status}: {detail}")
                async for token in _sse_tokens(response.content):
                    yield token
        except aiohttp.ServerTimeoutError as exc:
            raise ProviderError(f"the provider sent nothing for {idle:g} s") from exc
        except aiohttp.ClientError as exc:
            raise ProviderError(f"provider unreachable at {url}: {exc}") from exc


async def _sse_tokens(lines: aiohttp.StreamReader) -> AsyncIterator[str]:
    """Tokens from a chat-completions event stream, until ``data: [DONE]``."""
    async for raw in lines:
        line = raw.decode("utf-8").strip()
        if not line.startswith("data:"):
            continue  # blank separators, comments and other SSE fields
        data = line[len("data:") :].strip()
        if data == "[DONE]":
            return
        try:
            choice = json.loads(data)["choices"][0]
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise ProviderError(f"provider sent a malformed event: {data[:120]!r}") from exc
        token = (choice.get("delta") or {}).get("content")
        if token:
            yield token
    raise ProviderError("provider closed the stream before [DONE]")


def provider_from_env(env: Mapping[str, str] = os.environ) -> Provider:
    """The provider named by ``QUIETSYNC_PROVIDER`` (``scripted``, the default, or ``openai``).

    ``openai`` reads ``OPENAI_BASE_URL``, ``OPENAI_API_KEY``, ``QUIETSYNC_OPENAI_MODEL``,
    and optionally ``QUIETSYNC_SYSTEM_PROMPT`` and ``QUIETSYNC_PROVIDER_IDLE_TIMEOUT``
    (seconds, default 60).
    """
    name = env.get("QUIETSYNC_PROVIDER", "scripted")
    if name == "scripted":
        return ScriptedProvider(token_delay=float(env.get("QUIETSYNC_TOKEN_DELAY", "0.02")))
    if name == "openai":
        base_url = env.get("OPENAI_BASE_URL")
        model = env.get("QUIETSYNC_OPENAI_MODEL")
        if not base_url or not model:
            raise ProviderError(
                "the openai provider needs OPENAI_BASE_URL and QUIETSYNC_OPENAI_MODEL"
            )
        idle = env.get("QUIETSYNC_PROVIDER_IDLE_TIMEOUT", "60")
        try:
            idle_timeout = float(idle)
        except ValueError:
            raise ProviderError(
                f"QUIETSYNC_PROVIDER_IDLE_TIMEOUT must be seconds, got {idle!r}"
            ) from None
        return OpenAIProvider(
            base_url=base_url,
            model=model,
            api_key=env.get("OPENAI_API_KEY"),
            idle_timeout=idle_timeout,
            system_prompt=env.get("QUIETSYNC_SYSTEM_PROMPT") or None,
        )
    raise ProviderError(f"unknown provider {name!r}: use 'scripted' or 'openai'")
