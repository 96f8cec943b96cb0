"""Where job output comes from: one `Provider` interface, two implementations.

* `ScriptedProvider` (the default): a deterministic reply derived from the
  input, streamed token by token with a configurable delay and an optional
  injected failure. The demo and the tests run on it, offline.
* `OpenAIProvider`: any OpenAI-compatible ``/chat/completions`` endpoint,
  streamed (server-sent events), configured from the environment.

A provider only produces tokens; the job runner owns persistence, stamps,
limits and cancellation (cancelling the iterating task stops a provider).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
from collections.abc import AsyncIterator, Mapping
from typing import Protocol

import aiohttp
import attrs

from quietsync.conflicts import QuietsyncError

__all__ = [
    "OpenAIProvider",
    "Provider",
    "ProviderError",
    "ScriptedProvider",
    "provider_from_env",
    "scripted_reply",
]


class ProviderError(QuietsyncError):
    """The provider could not produce (the rest of) a reply; the job ends in error."""


class Provider(Protocol):
    """Streams the reply to `prompt` as text tokens."""

    def stream(self, prompt: str) -> AsyncIterator[str]: ...


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

    async def stream(self, prompt: str) -> AsyncIterator[str]:
        for i, token in enumerate(scripted_reply(prompt, self.tokens)):
            if self.fail_after is not None and i >= self.fail_after:
                raise ProviderError(f"scripted failure after {self.fail_after} tokens")
            if self.token_delay:
                await asyncio.sleep(self.token_delay)
            yield token


@attrs.frozen
class OpenAIProvider:
    """Streams from an OpenAI-compatible ``POST {base_url}/chat/completions``."""

    base_url: str
    model: str
    api_key: str | None = None
    timeout: float = 120.0

    async def stream(self, prompt: str) -> AsyncIterator[str]:
        url = self.base_url.rstrip("/") + "/chat/completions"
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        body = {
            "model": self.model,
            "stream": True,
            "messages": [{"role": "user", "content": prompt}],
        }
        timeout = aiohttp.ClientTimeout(total=self.timeout)
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

    ``openai`` reads ``OPENAI_BASE_URL``, ``OPENAI_API_KEY`` and ``QUIETSYNC_OPENAI_MODEL``.
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
        return OpenAIProvider(base_url=base_url, model=model, api_key=env.get("OPENAI_API_KEY"))
    raise ProviderError(f"unknown provider {name!r}: use 'scripted' or 'openai'")
