"""`quietsync serve --workers N` as a real process tree on PostgreSQL: one port, every worker
serving, a graceful stop of all, a killed worker replaced, and SQLite refused.

Which worker accepts a connection is the kernel's choice. To show that a given worker
serves, the tests stop the others (SIGSTOP): a stopped process accepts nothing, so a new
connection to the port is taken by the one left running, and ``/v1/health`` names it
(worker ``i`` is node ``server-<i>``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest

from quietsync.cli import main
from tests.server.helpers import Writer, push
from tests.server.processes import STARTUP_TIMEOUT, ServeProcess, serve_process
from tests.server.test_cli import _serve_until_exit
from tests.server.test_live import hello, receive

TOKEN = "token-alice-0123456789"
HEADERS = {"Authorization": f"Bearer {TOKEN}"}
_STARTED = re.compile(r"worker (\d+) started \(pid (\d+)\)")


@contextlib.asynccontextmanager
async def workers(pg_url: str, tmp_path: Path, *args: str) -> AsyncIterator[ServeProcess]:
    tokens = tmp_path / "tokens.json"
    tokens.write_text(json.dumps({TOKEN: "alice"}))
    async with serve_process(pg_url, "--workers", "2", "--tokens", str(tokens), *args) as server:
        yield server


def pids(lines: list[str]) -> dict[int, int]:
    """Worker number -> pid of the last worker started under that number."""
    return {int(m[1]): int(m[2]) for line in lines if (m := _STARTED.search(line))}


async def next_line(server: ServeProcess, pattern: str) -> re.Match[str]:
    """Read the server's log until a line matches `pattern` (fails after the timeout)."""
    assert server.proc.stderr is not None

    async def read() -> re.Match[str]:
        while line := (await server.proc.stderr.readline()).decode():  # type: ignore[union-attr]
            server.log.append(line.rstrip())
            if match := re.search(pattern, line):
                return match
        raise AssertionError(f"no line matching {pattern!r}:\n" + "\n".join(server.log))

    return await asyncio.wait_for(read(), STARTUP_TIMEOUT)


@contextlib.contextmanager
def stopped(*pids: int) -> Iterator[None]:
    """These processes stopped (SIGSTOP) inside, continued after."""
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)


def fresh_connections(server: ServeProcess) -> aiohttp.ClientSession:
    """A client opening a new connection per request (so each is accepted anew)."""
    return aiohttp.ClientSession(
        base_url=server.url, headers=HEADERS, connector=aiohttp.TCPConnector(force_close=True)
    )


async def node(http: aiohttp.ClientSession) -> str:
    async with http.get("/v1/health") as resp:
        assert resp.status == 200
        return str((await resp.json())["node"])


async def gone(pid: int) -> None:
    """Wait until process `pid` (not necessarily our child) has exited."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    exited = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_reader(fd, exited.set)
    try:
        await asyncio.wait_for(exited.wait(), STARTUP_TIMEOUT)
    finally:
        loop.remove_reader(fd)
        os.close(fd)


async def test_two_workers_serve_one_port_and_live_changes_cross_them(
    pg_url: str, tmp_path: Path
) -> None:
    """Each worker answers on the port when the other is stopped; a socket accepted by
    worker 1 receives a push accepted by worker 2."""
    async with workers(pg_url, tmp_path) as server, fresh_connections(server) as http:
        one, two = pids(server.log)[1], pids(server.log)[2]
        for number in (1, 2):  # each worker opened its store, and its log says which it is
            assert any(f"app[worker {number}]: store open" in line for line in server.log)
        with stopped(two):
            assert await node(http) == "server-1"
            ws = await http.ws_connect("/v1/live")  # accepted by worker 1
            assert hello(await receive(ws)) == 0
        with stopped(one):
            assert await node(http) == "server-2"
            status, body = await push(http, [Writer("n1").lww("k", "f", 1)])  # by worker 2
            assert status == 200 and body["cursor"] == 1
        message = await receive(ws)
        assert message["type"] == "changes" and [c["value"] for c in message["changes"]] == [1]
        await ws.close()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
async def test_a_stop_signal_stops_every_worker_gracefully(
    pg_url: str, tmp_path: Path, sig: signal.Signals
) -> None:
    async with workers(pg_url, tmp_path) as server, fresh_connections(server) as http:
        ws = await http.ws_connect("/v1/live")
        hello(await receive(ws))
        server.proc.send_signal(sig)
        closed = await ws.receive(timeout=STARTUP_TIMEOUT)
        assert (closed.type, closed.data) == (aiohttp.WSMsgType.CLOSE, 1001)
        assert await server.wait() == 0
    for number, pid in pids(server.log).items():
        assert f"worker {number} (pid {pid}) stopped (exit code 0)" in "\n".join(server.log)
        with contextlib.suppress(ProcessLookupError):  # reaped by the parent before it exited
            os.kill(pid, 0)
            raise AssertionError(f"worker {number} (pid {pid}) outlived the parent")


async def test_a_killed_worker_is_replaced_and_serves(pg_url: str, tmp_path: Path) -> None:
    async with workers(pg_url, tmp_path) as server, fresh_connections(server) as http:
        old, two = pids(server.log)[1], pids(server.log)[2]
        os.kill(old, signal.SIGKILL)
        await next_line(server, rf"worker 1 \(pid {old}\) exited \(killed by SIGKILL\)")
        new = int((await next_line(server, r"worker 1 serving \(pid (\d+)\)"))[1])
        assert new != old
        with stopped(two):
            assert await node(http) == "server-1"
            status, _ = await push(http, [Writer("n1").lww("k", "f", 1)])
            assert status == 200


async def test_workers_stop_when_the_parent_is_killed(pg_url: str, tmp_path: Path) -> None:
    """A worker whose parent died (SIGKILL: nobody relays a signal) stops by itself."""
    async with workers(pg_url, tmp_path) as server:
        server.proc.kill()
        assert await server.proc.wait() == -signal.SIGKILL
        await asyncio.gather(*(gone(pid) for pid in pids(server.log).values()))


async def test_dev_prints_one_token_that_every_worker_takes(pg_url: str, tmp_path: Path) -> None:
    async with serve_process(pg_url, "--workers", "2", "--dev") as server:
        token = re.fullmatch(r"dev token \(user 'dev'\): (\S+)\n", server.stdout)
        assert token, server.stdout
        headers = {"Authorization": f"Bearer {token[1]}"}
        workers_ = pids(server.log)
        async with aiohttp.ClientSession(
            base_url=server.url, headers=headers, connector=aiohttp.TCPConnector(force_close=True)
        ) as http:
            for number in workers_:
                with stopped(*(pid for n, pid in workers_.items() if n != number)):
                    async with http.get("/v1/pull") as resp:
                        assert resp.status == 200
        server.proc.send_signal(signal.SIGTERM)
        assert await server.wait() == 0
        assert server.proc.stdout is not None
        assert await server.proc.stdout.read() == b""  # printed once, by the parent


async def test_a_worker_that_cannot_open_the_database_stops_the_start(pg_url: str) -> None:
    missing = pg_url.rsplit("/", 1)[0] + "/qs_no_such_database"
    tokens = json.dumps({TOKEN: "a"})
    code, lines = await _serve_until_exit(missing, "--workers", "2", tokens=tokens)
    assert code == 2, lines
    assert any("quietsync serve: " in line and "qs_no_such_database" in line for line in lines)
    failed = re.compile(r"worker \d \(pid \d+\) failed to start \(exit code 2\)")
    assert any(failed.search(line) for line in lines), lines


def test_workers_on_sqlite_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "s.db"
    assert main(["serve", "--db", str(db), "--workers", "2", "--dev"]) == 2
    out, err = capsys.readouterr()
    assert "--workers needs a postgresql:// database" in err
    assert "dev token" not in out  # refused before anything else
    assert not db.exists()
