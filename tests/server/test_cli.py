"""`quietsync serve` as a real process: tokens, health, graceful shutdown."""

from __future__ import annotations

import json
import re
import signal
from pathlib import Path

import aiohttp
import attrs
import pytest

from quietsync.cli import main
from quietsync.server import JobsConfig, ServerConfig
from tests.server.helpers import Writer, pull_all, push
from tests.server.processes import serve_process


async def test_dev_mode_prints_a_token_that_works(tmp_path: Path) -> None:
    async with serve_process(tmp_path / "s.db", "--dev") as server:
        match = re.fullmatch(r"dev token \(user 'dev'\): (\S+)\n", server.stdout)
        assert match, server.stdout
        async with aiohttp.ClientSession(base_url=server.url) as http:
            async with http.get("/v1/health") as resp:
                assert (resp.status, await resp.json()) == (200, {"status": "ok", "node": "server"})
            async with http.get("/v1/pull") as resp:
                assert resp.status == 401
            headers = {"Authorization": f"Bearer {match[1]}"}
            async with http.get("/v1/pull", headers=headers) as resp:
                assert resp.status == 200


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
async def test_signals_shut_down_gracefully_and_keep_committed_changes(
    tmp_path: Path, sig: signal.Signals
) -> None:
    tokens = tmp_path / "tokens.json"
    tokens.write_text(json.dumps({"secret-1": "alice"}))
    db, headers = tmp_path / "s.db", {"Authorization": "Bearer secret-1"}
    w = Writer("n1")
    async with serve_process(db, "--tokens", str(tokens)) as server:
        async with aiohttp.ClientSession(base_url=server.url, headers=headers) as http:
            status, _ = await push(http, [w.lww("a", "f", 1)])
            assert status == 200
            ws = await http.ws_connect("/v1/live")
            assert (await ws.receive_json(timeout=10))["type"] == "hello"
            server.proc.send_signal(sig)
            msg = await ws.receive(timeout=10)
            assert (msg.type, msg.data) == (aiohttp.WSMsgType.CLOSE, 1001)
        assert await server.wait() == 0
        assert any("store closed" in line for line in server.log), server.log
    async with (
        serve_process(db, env={"QUIETSYNC_TOKENS": json.dumps({"secret-1": "alice"})}) as again,
        aiohttp.ClientSession(base_url=again.url, headers=headers) as http,
    ):
        assert [c["value"] for c in await pull_all(http)] == [1]


def test_serve_without_tokens_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("QUIETSYNC_TOKENS", raising=False)
    assert main(["serve", "--db", str(tmp_path / "s.db")]) == 2
    assert "no tokens: give --tokens FILE, set $QUIETSYNC_TOKENS, or use --dev" in (
        capsys.readouterr().err
    )
    assert not (tmp_path / "s.db").exists()


@pytest.mark.parametrize(
    ("content", "fragment"),
    [("not json", "cannot read tokens file"), ('{"t": 5}', "user ids must be strings"),
     ("{}", "non-empty JSON object")],
)  # fmt: skip
def test_a_bad_tokens_file_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, fragment: str
) -> None:
    tokens = tmp_path / "tokens.json"
    tokens.write_text(content)
    assert main(["serve", "--db", str(tmp_path / "s.db"), "--tokens", str(tokens)]) == 2
    assert fragment in capsys.readouterr().err


async def test_every_limit_is_an_option_and_the_access_log_logs(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens.json"
    tokens.write_text(json.dumps({"secret-1": "alice"}))
    w, headers = Writer("n1"), {"Authorization": "Bearer secret-1"}
    args = ("--tokens", str(tokens), "--max-batch", "2", "--job-max-per-user", "1", "--access-log")
    async with serve_process(tmp_path / "s.db", *args) as server:
        async with aiohttp.ClientSession(base_url=server.url, headers=headers) as http:
            status, body = await push(http, [w.lww(k, "f", 1) for k in ("a", "b", "c")])
            assert (status, body["error"]["code"]) == (413, "batch_too_large")
            assert "at most 2 allowed" in body["error"]["message"]
        server.proc.send_signal(signal.SIGTERM)
        assert await server.wait() == 0
    assert any('"POST /v1/push HTTP/1.1" 413' in line for line in server.log), server.log


def test_the_version_option(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert re.fullmatch(r"quietsync \d+\.\d+\.\d+\S*\n", capsys.readouterr().out)


def test_serve_help_lists_every_configurable_limit(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    text = capsys.readouterr().out
    for field in attrs.fields(ServerConfig) + attrs.fields(JobsConfig):
        if "help" in field.metadata:
            prefix = "job-" if field in attrs.fields(JobsConfig) else ""
            assert f"--{prefix}{field.name.replace('_', '-')}" in text
    for option in ("--max-batch", "--max-body-bytes", "--max-drift-ms", "--job-timeout"):
        assert option in text
