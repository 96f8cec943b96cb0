"""A job asks its OpenAI-compatible provider with the thread's history (bounded) and the
system prompt, and the server logs a provider's failures one line per cause.

The provider is a real aiohttp server on loopback speaking the streaming
chat-completions format (`tests.server.fake_openai`); the history is read from
records pushed through the real sync API.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from quietsync.protocol import DELETED_FIELD, MESSAGES
from quietsync.server.jobs import JobsConfig, OpenAIProvider
from tests.server.fake_openai import chunk, fake_provider
from tests.server.helpers import Writer
from tests.server.job_helpers import BOTH_STORES, serve, start, wait_unwatched
from tests.server.processes import serve_process

THREAD = "t-é👋🏽"
SYSTEM = "Sois bref ✂️ e\u0301"
DONE = [chunk("D'accord 𝔘"), "data: [DONE]"]


def thread_records() -> list[dict[str, Any]]:
    """A thread as replicas write it: messages with role, content, created_at."""
    phone = Writer("phone")

    def message(key: str, created_at: int, role: str, content: str | None, thread: str = THREAD):
        fields = {"thread_id": thread, "role": role, "created_at": created_at}
        if content is not None:
            fields["content"] = content
        return [phone.lww(key, f, v, collection=MESSAGES) for f, v in fields.items()]

    return [
        *message("m1", 1, "user", "Bonjour 👋🏽"),
        *message("m2", 2, "assistant", "Salut e\u0301 !"),
        *message("m3", 3, "user", "effacé"),
        phone.lww("m3", DELETED_FIELD, True, collection=MESSAGES),
        *message("other", 4, "user", "another thread", thread="t-2"),
        *message("m4", 5, "user", "Et après ? 🤔"),  # the input, synced before the job
        *message("reply", 6, "assistant", None),  # the job's own message
        *message("later", 7, "user", "written after the job's message"),
    ]


async def asked(home: Path | str, **jobs: Any) -> list[dict[str, Any]]:
    """The messages one job sent the provider, for the thread above and `jobs` settings."""
    async with fake_provider(DONE) as fake:
        provider = OpenAIProvider(base_url=fake.url, model="m", system_prompt=SYSTEM)
        async with (
            serve(home, jobs=JobsConfig(provider=provider, **jobs)) as server,
            server.client("alice") as http,
        ):
            async with http.post("/v1/push", json={"mutations": thread_records()}) as resp:
                assert resp.status == 200, await resp.text()
            job = await start(http, "reply", thread_id=THREAD, text="Et après ? 🤔")
            final = await wait_unwatched(http, job["job_id"])
        assert (final["status"], final["content_delta"]) == ("complete", "D'accord 𝔘")
    return fake.seen[0]["body"]["messages"]


@BOTH_STORES
async def test_a_job_sends_the_system_prompt_the_threads_history_and_the_input(
    db_home: Path | str,
) -> None:
    assert await asked(db_home) == [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": "Bonjour 👋🏽"},
        {"role": "assistant", "content": "Salut e\u0301 !"},
        {"role": "user", "content": "Et après ? 🤔"},
    ]


@pytest.mark.parametrize(
    "limits",
    [{"history_messages": 1}, {"history_chars": len("Et après ? 🤔" + "Salut e\u0301 !")}],
)
async def test_the_history_is_bounded_most_recent_first(
    tmp_path: Path, limits: dict[str, int]
) -> None:
    assert await asked(tmp_path, **limits) == [
        {"role": "system", "content": SYSTEM},
        {"role": "assistant", "content": "Salut e\u0301 !"},
        {"role": "user", "content": "Et après ? 🤔"},
    ]


async def test_provider_failures_are_logged_one_line_per_cause(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "quietsync.server.jobs.runner")
    async with fake_provider([], status=429) as fake:
        provider = OpenAIProvider(base_url=fake.url, model="m")
        async with (
            serve(tmp_path, jobs=JobsConfig(provider=provider)) as server,
            server.client("alice") as http,
        ):
            for message in ("m1", "m2", "m3"):
                job_id = (await start(http, message))["job_id"]
                answer = await wait_unwatched(http, job_id)
                assert answer["status"] == "error" and "answered 429" in answer["error"]
    lines = [r for r in caplog.records if r.name == "quietsync.server.jobs.runner"]
    assert len(lines) == 2, [r.getMessage() for r in lines]
    assert "provider answered 429" in lines[0].getMessage()
    assert re.search(r"repeated 2 times in the last \d+ s$", lines[1].getMessage())  # at exit
    assert all(r.exc_info is None for r in lines)


async def test_serve_takes_the_system_prompt_and_the_idle_timeout(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens.json"
    tokens.write_text(json.dumps({"secret-token-alice-1": "alice"}))
    async with fake_provider(DONE) as fake:
        env = {"OPENAI_BASE_URL": fake.url, "QUIETSYNC_OPENAI_MODEL": "m"}
        args = ("--tokens", str(tokens), "--provider", "openai", "--system-prompt", SYSTEM)
        args += ("--provider-idle-timeout", "30")
        async with serve_process(tmp_path / "s.db", *args, env=env) as server:
            headers = {"Authorization": "Bearer secret-token-alice-1"}
            async with aiohttp.ClientSession(base_url=server.url, headers=headers) as http:
                final = await wait_unwatched(http, (await start(http, text="Ça va ?"))["job_id"])
    assert final["content_delta"] == "D'accord 𝔘"
    assert fake.seen[0]["body"]["messages"] == [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": "Ça va ?"},
    ]
