"""Run `quietsync serve` as a real subprocess (for the CLI and SIGKILL tests)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path

import attrs

from benchmarks._loopback import PortHold

__all__ = ["ServeProcess", "serve_process", "serve_processes"]

STARTUP_TIMEOUT = 20.0
ROOT = Path(__file__).resolve().parents[2]
_RUNNING = re.compile(r"Running on (http://\S+)")


@attrs.define
class ServeProcess:
    proc: asyncio.subprocess.Process
    url: str
    stdout: str
    log: list[str]

    async def wait(self) -> int:
        """Wait for exit; collect the rest of the log."""
        assert self.proc.stderr is not None
        rest = await asyncio.wait_for(self.proc.stderr.read(), STARTUP_TIMEOUT)
        self.log += rest.decode().splitlines()
        return await asyncio.wait_for(self.proc.wait(), STARTUP_TIMEOUT)


async def _read_until_running(proc: asyncio.subprocess.Process, log: list[str]) -> str:
    assert proc.stderr is not None
    while line := (await proc.stderr.readline()).decode():
        log.append(line.rstrip())
        if match := _RUNNING.search(line):
            return match[1]
    raise AssertionError("quietsync serve exited before listening:\n" + "\n".join(log))


@contextlib.asynccontextmanager
async def serve_process(
    db: Path | str, *args: str, env: dict[str, str] | None = None
) -> AsyncIterator[ServeProcess]:
    """Start ``python -m quietsync serve --db DB --port <free> ARGS`` and wait until it listens.

    The process is killed on exit if the test has not stopped it. Its port is held
    (`PortHold`) until then, so no parallel test's server can take it first.
    """
    with PortHold() as port:
        async with _serve_process(db, port.port, args, env) as served:
            yield served


@contextlib.asynccontextmanager
async def serve_processes(db: str, count: int, *args: str) -> AsyncIterator[list[ServeProcess]]:
    """`count` processes serving one (PostgreSQL) database, each on its own port."""
    async with AsyncExitStack() as stack:
        yield [await stack.enter_async_context(serve_process(db, *args)) for _ in range(count)]


@contextlib.asynccontextmanager
async def _serve_process(
    db: Path | str, port: int, args: tuple[str, ...], env: dict[str, str] | None
) -> AsyncIterator[ServeProcess]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "quietsync", "serve", "--db", str(db),
        "--port", str(port), *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **(env or {})},
        cwd=ROOT,
    )  # fmt: skip
    log: list[str] = []
    try:
        url = await asyncio.wait_for(_read_until_running(proc, log), STARTUP_TIMEOUT)
        stdout = ""
        if "--dev" in args:
            assert proc.stdout is not None
            stdout = (await asyncio.wait_for(proc.stdout.readline(), STARTUP_TIMEOUT)).decode()
        yield ServeProcess(proc, url, stdout, log)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
