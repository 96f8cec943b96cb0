"""One job never hurts another: bad input is refused, a job whose output cannot be
stored fails alone, a failing store gives up after a few tries, shutdown stays clean.

The poisoned output is what a real provider can send: a chat-completions chunk
whose content is a JSON escape of a lone surrogate (``"\\ud800"``), which no
UTF-8 store or client can take.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from quietsync.protocol import MESSAGES
from quietsync.server.jobs import Chat, JobsConfig, scripted_reply
from quietsync.server.jobs.runner import FLUSH_ATTEMPTS, OUTPUT_NOT_STORED
from tests.server.fake_openai import chunk, fake_provider
from tests.server.job_helpers import WAIT, poll, records, reply, scripted, serve, start
from tests.server.job_helpers import wait_unwatched as wait_ended
from tests.server.processes import serve_process

LONE_SURROGATE_CHUNK = 'data: {"choices": [{"delta": {"content": "ok \\ud800"}}]}'
RUNNER_LOG = "quietsync.server.jobs.runner"


class PoisonProvider:
    """Replies to an input starting with "poison" with one token: the input, some full
    Unicode and a lone surrogate after it (then `hang`s if asked); to anything else with
    the scripted reply."""

    def __init__(self, *, hang: bool = False) -> None:
        self.hang = hang

    async def stream(self, chat: Chat) -> AsyncIterator[str]:
        if not chat.input.startswith("poison"):
            for token in scripted_reply(chat.input, 6):
                yield token
            return
        yield f"{chat.input} 👋🏽 e\u0301 \ud800"
        if self.hang:
            await asyncio.Event().wait()


def unicode_jobs(**fields: object) -> JobsConfig:
    return JobsConfig(provider=PoisonProvider(**fields))  # type: ignore[arg-type]


@pytest.mark.parametrize("member", ["input", "thread_id", "message_id"])
async def test_a_lone_surrogate_in_a_start_is_refused_and_writes_nothing(
    tmp_path: Path, member: str
) -> None:
    body = {
        "thread_id": "t-é",
        "message_id": "m-👋🏽",
        "input": "héllo 𝔘 e\u0301",
        "mode": "background",
    }
    raw = json.dumps({**body, member: "x\ud800"}).encode()  # a \ud800 escape
    assert b"\\ud800" in raw
    async with serve(tmp_path) as server, server.client("alice") as http:
        async with http.post(
            "/v1/jobs", data=raw, headers={"Content-Type": "application/json"}
        ) as resp:
            assert resp.status == 422
            error = (await resp.json())["error"]
        assert error["code"] == "invalid_job_request"
        assert member in error["message"] and "surrogate" in error["message"]
        assert (await records(http))[1] == []
        ok = await start(http, "m-👋🏽", thread_id="t-é", text=body["input"])
        assert (await wait_ended(http, ok["job_id"]))["status"] == "complete"


async def test_a_job_whose_output_cannot_be_stored_fails_alone(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, RUNNER_LOG)
    async with (
        serve(tmp_path, jobs=unicode_jobs()) as server,
        server.client("alice") as alice,
        server.client("bob") as bob,
    ):
        poisoned = await start(alice, "m1", text="poison")
        also = await start(bob, "m-p", text="poison, at another position")
        fine = await start(bob, "m-é", text="hello there")
        bobs = await wait_ended(bob, fine["job_id"])
        alices = await wait_ended(alice, poisoned["job_id"])
        other = await wait_ended(bob, also["job_id"])
        stored, _ = await records(alice)
    assert (bobs["status"], bobs["content_delta"]) == ("complete", reply(6))
    for answer in (alices, other):
        assert (answer["status"], answer["error"]) == ("error", OUTPUT_NOT_STORED)
        assert answer["content_delta"] == ""
    message = {field: value for field, (value, _) in stored[MESSAGES, "m1"].items()}
    assert (message["job_status"], message["error"], message["pending"]) == (
        "error",
        OUTPUT_NOT_STORED,
        False,
    )
    lines = [r for r in caplog.records if r.name == RUNNER_LOG and "failed" in r.getMessage()]
    assert len(lines) == 1, [r.getMessage() for r in lines]  # one line per cause, two jobs
    assert "UnicodeEncodeError" in lines[0].getMessage()
    assert all(r.exc_info is None for r in caplog.records)


async def test_an_abort_answers_while_the_output_cannot_be_stored(tmp_path: Path) -> None:
    async with (
        serve(tmp_path, jobs=unicode_jobs(hang=True)) as server,
        server.client("alice") as http,
    ):
        job_id = (await start(http, "m1", text="poison"))["job_id"]
        async with asyncio.timeout(WAIT), http.post(f"/v1/jobs/{job_id}/abort") as resp:
            assert resp.status == 200
            assert (await resp.json())["status"] == "aborted"
        answer = await poll(http, job_id)
        stored, _ = await records(http)
    assert (answer["status"], answer["content_delta"]) == ("aborted", "")
    assert stored[MESSAGES, "m1"]["job_status"][0] == "aborted"


async def test_a_failing_store_gives_a_job_up_after_a_few_tries_with_one_log_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Every write of the job store fails (as on a full disk): the job ends in error
    after `FLUSH_ATTEMPTS` tries instead of retrying every tick, logged once per cause."""
    caplog.set_level(logging.INFO, RUNNER_LOG)
    async with (
        serve(tmp_path, jobs=scripted(tokens=2000, token_delay=0.005)) as server,
        server.client("alice") as http,
    ):
        job_id = (await start(http, "m1", text="ünïcödé 𝔘"))["job_id"]
        with sqlite3.connect(tmp_path / "server.db") as db:  # a second, real connection
            db.execute(
                "CREATE TRIGGER full BEFORE INSERT ON jobs "
                "BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END"
            )
        answer = await wait_ended(http, job_id)
    assert (answer["status"], answer["error"]) == ("error", OUTPUT_NOT_STORED)
    messages = [r.getMessage() for r in caplog.records if r.name == RUNNER_LOG]
    tries = [m for m in messages if m.startswith("writing job")]
    assert len(tries) == 1 and "database or disk is full" in tries[0]
    assert any(f"repeated {FLUSH_ATTEMPTS - 1} times" in m for m in messages)  # on close
    assert any(m.startswith(f"ending job {job_id} failed") for m in messages)
    assert all(r.exc_info is None for r in caplog.records)


async def test_sigterm_exits_cleanly_while_a_job_cannot_be_stored(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens.json"
    tokens.write_text(json.dumps({"secret-token-alice-1": "alice"}))
    events = [chunk("Hé 👋🏽 "), LONE_SURROGATE_CHUNK]
    async with fake_provider(events, hold=asyncio.Event()) as fake:
        env = {"OPENAI_BASE_URL": fake.url, "QUIETSYNC_OPENAI_MODEL": "tiny"}
        args = ("--tokens", str(tokens), "--provider", "openai")
        async with serve_process(tmp_path / "s.db", *args, env=env) as server:
            headers = {"Authorization": "Bearer secret-token-alice-1"}
            async with aiohttp.ClientSession(base_url=server.url, headers=headers) as http:
                await start(http, "m1", text="hi")
                async with asyncio.timeout(WAIT):
                    await fake.sent.wait()
                server.proc.send_signal(signal.SIGTERM)
            assert await server.wait() == 0, "\n".join(server.log)
    assert not [line for line in server.log if "Traceback" in line], "\n".join(server.log)
