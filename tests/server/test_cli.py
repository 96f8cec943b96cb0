"""`quietsync serve` as a real process: tokens, health, graceful shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import attrs
import pytest

from quietsync.cli import main
from quietsync.server import JobsConfig, ServerConfig
from tests.server.helpers import Writer, pull_all, push
from tests.server.processes import ROOT, STARTUP_TIMEOUT, serve_process

TOKEN = "secret-1-ab7Fq2xZ"
"""Long enough for the minimum length of a token the command reads (16 characters)."""


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
    tokens.write_text(json.dumps({TOKEN: "alice"}))
    db, headers = tmp_path / "s.db", {"Authorization": f"Bearer {TOKEN}"}
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
        serve_process(db, env={"QUIETSYNC_TOKENS": json.dumps({TOKEN: "alice"})}) as again,
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


async def _serve_until_exit(
    db: Path | str, *args: str, tokens: str
) -> tuple[int | None, list[str]]:
    """Run ``quietsync serve`` that should exit at once: its code and stderr lines."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "quietsync", "serve", "--db", str(db), "--port", "0", *args,
        stderr=asyncio.subprocess.PIPE, env={**os.environ, "QUIETSYNC_TOKENS": tokens}, cwd=ROOT,
    )  # fmt: skip
    try:
        _, err = await asyncio.wait_for(proc.communicate(), STARTUP_TIMEOUT)
    except TimeoutError:
        proc.kill()
        _, err = await proc.communicate()
        return None, err.decode().splitlines()  # it served: None, not an exit code
    return proc.returncode, err.decode().splitlines()


def _one_clean_line(code: int | None, lines: list[str], fragment: str) -> None:
    assert code == 2, lines
    assert not any("Traceback" in line for line in lines), lines
    assert lines[-1].startswith("quietsync serve: ") and fragment in lines[-1], lines


@pytest.mark.parametrize(
    ("tokens", "fragment"),
    [({"short": "alice"}, "at least 16 characters"), ({"\ud800" * 16: "alice"}, "UTF-8")],
)
async def test_weak_tokens_are_refused_at_start(
    tmp_path: Path, tokens: dict[str, str], fragment: str
) -> None:
    code, lines = await _serve_until_exit(tmp_path / "s.db", tokens=json.dumps(tokens))
    _one_clean_line(code, lines, fragment)
    assert not (tmp_path / "s.db").exists()


async def test_a_tokens_file_others_can_read_is_served_with_one_warning(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens.json"
    tokens.write_text(json.dumps({TOKEN: "alice"}))
    tokens.chmod(0o666)
    async with serve_process(tmp_path / "s.db", "--tokens", str(tokens)) as server:
        server.proc.send_signal(signal.SIGTERM)
        assert await server.wait() == 0
    warnings = [line for line in server.log if "WARNING" in line]
    assert len(warnings) == 1, server.log
    assert "has mode 666: group or others may read it; chmod 600 it" in warnings[0]


@contextlib.contextmanager
def _read_only(path: Path) -> Iterator[None]:
    """Make `path` unwritable, even for root (immutable), and writable again after."""
    if os.geteuid() != 0:
        path.chmod(0o444)
        yield
        path.chmod(0o644)
        return
    if subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode != 0:
        pytest.skip("running as root and chattr +i is not available here")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True)


@pytest.mark.parametrize("existing", [True, False])
async def test_a_read_only_database_is_a_clean_one_line_error(
    tmp_path: Path, existing: bool
) -> None:
    db = tmp_path / "s.db"
    if existing:  # a database the server made and closed
        async with serve_process(db, env={"QUIETSYNC_TOKENS": json.dumps({TOKEN: "a"})}) as first:
            first.proc.send_signal(signal.SIGTERM)
            assert await first.wait() == 0
    else:
        db.touch()
    with _read_only(db):
        code, lines = await _serve_until_exit(db, tokens=json.dumps({TOKEN: "alice"}))
    _one_clean_line(code, lines, "readonly database")


async def test_every_limit_is_an_option_and_the_access_log_logs(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens.json"
    tokens.write_text(json.dumps({TOKEN: "alice"}))
    w, headers = Writer("n1"), {"Authorization": f"Bearer {TOKEN}"}
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
