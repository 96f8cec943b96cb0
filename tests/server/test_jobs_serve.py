"""`quietsync serve` runs jobs: provider settings on the command line, shutdown mid-stream."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import aiohttp
import pytest

from quietsync.cli import main
from tests.server.job_helpers import events_of, reply, rest_of, start, wait_unwatched
from tests.server.processes import serve_process


async def test_serve_takes_the_scripted_providers_settings(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens.json"
    tokens.write_text(json.dumps({"secret-1-ab7Fq2xZ": "alice"}))
    args = ("--tokens", str(tokens), "--job-tokens", "3", "--job-token-delay", "0")
    async with (
        serve_process(tmp_path / "s.db", *args) as server,
        aiohttp.ClientSession(
            base_url=server.url, headers={"Authorization": "Bearer secret-1-ab7Fq2xZ"}
        ) as http,
    ):
        final = await wait_unwatched(http, (await start(http))["job_id"])
    assert (final["status"], final["content_delta"]) == ("complete", reply(3))


async def test_stopping_the_server_ends_open_event_streams(tmp_path: Path) -> None:
    """A streaming job must not hold shutdown up: its readers' streams end, the job waits."""
    tokens = tmp_path / "tokens.json"
    tokens.write_text(json.dumps({"secret-1-ab7Fq2xZ": "alice"}))
    args = ("--tokens", str(tokens), "--job-tokens", "200", "--job-token-delay", "0.05")
    headers = {"Authorization": "Bearer secret-1-ab7Fq2xZ"}
    async with serve_process(tmp_path / "s.db", *args) as server:
        async with aiohttp.ClientSession(base_url=server.url, headers=headers) as http:
            job_id = (await start(http))["job_id"]
            async with http.get(f"/v1/jobs/{job_id}/events") as resp:
                stream = events_of(resp)
                assert (await anext(stream)).type == "snapshot"
                server.proc.send_signal(signal.SIGTERM)
                rest = await rest_of(stream)
        assert await server.wait() == 0
    assert all(event.status == "streaming" for event in rest)


def test_an_openai_provider_without_its_settings_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    argv = ["serve", "--db", str(tmp_path / "s.db"), "--dev", "--provider", "openai"]
    assert main(argv) == 2
    assert "needs OPENAI_BASE_URL" in capsys.readouterr().err


def test_an_unknown_provider_in_the_environment_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("QUIETSYNC_PROVIDER", "llama")
    assert main(["serve", "--db", str(tmp_path / "s.db"), "--dev"]) == 2
    assert "unknown provider 'llama'" in capsys.readouterr().err
    assert not (tmp_path / "s.db").exists()
