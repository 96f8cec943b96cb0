"""The fault harness's moving parts: a killable server process, a faulty transport, an admin.

`ServerProcess` runs ``quietsync serve`` so it can be SIGKILLed mid-request
and started again on the same database and port. `FaultyTransport` is a
client's `HttpTransport` that can be offline and can lose a push's answer
after the server applied it. `SpaceAdmin` creates the run's shared space and
changes its members through the server's API, as an app's admin would.

None of them decides anything about a run; `benchmarks.harness` draws the
faults and `benchmarks.harness_check` judges the outcome.
"""

from __future__ import annotations

import asyncio
import json
import random
import signal
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from pathlib import Path

from benchmarks._loopback import PortHold
from quietsync.protocol import Mutation, private_space
from quietsync.replica import HttpTransport, LiveMessage, PullPage, PushAnswer
from quietsync.replica.errors import TransportError
from quietsync.replica.http import HttpClient
from quietsync.replica.transport import ConflictPage, SpaceInfo

__all__ = ["AckKey", "FaultyTransport", "ServerProcess", "SpaceAdmin"]

ROOT = Path(__file__).resolve().parents[1]

AckKey = tuple[str, str, str]
"""(user, space id, mutation id) of a push answer that reached the client."""


class ServerProcess:
    """``quietsync serve`` in a subprocess that can be SIGKILLed and started again.

    Its port is held from creation to `stop` (see `PortHold`), so every restart gets it
    back even while other processes start servers of their own.
    """

    def __init__(self, db: Path | str, tokens: Path) -> None:
        self._port = PortHold()
        self.db, self._tokens, self.port = db, tokens, self._port.port
        self._proc: asyncio.subprocess.Process | None = None
        self._drain: asyncio.Task[None] | None = None
        self.log: list[str] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "quietsync", "serve", "--db", str(self.db),
            "--port", str(self.port), "--tokens", str(self._tokens),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE, cwd=ROOT,
        )  # fmt: skip
        assert self._proc.stderr is not None
        while line := (await asyncio.wait_for(self._proc.stderr.readline(), 30)).decode():
            self.log.append(line.rstrip())
            if "Running on" in line:
                self._drain = asyncio.create_task(self._drain_log(self._proc.stderr))
                return
        raise RuntimeError("quietsync serve exited before listening:\n" + "\n".join(self.log))

    async def _drain_log(self, stream: asyncio.StreamReader) -> None:
        while line := await stream.readline():
            self.log.append(line.decode().rstrip())

    async def kill(self) -> None:
        """SIGKILL: no graceful shutdown, whatever was in flight is cut."""
        if self._proc is not None and self._proc.returncode is None:
            self._proc.send_signal(signal.SIGKILL)
            await self._proc.wait()
        if self._drain is not None:
            await self._drain
        self._proc = self._drain = None

    async def stop(self) -> None:
        """Kill the server (if it runs) and release its port: it will not start again."""
        await self.kill()
        self._port.close()


class FaultyTransport:
    """An `HttpTransport` for `user` that can be offline and can lose push answers (seeded).

    Records every mutation id whose acknowledgement reached the client, with
    the step `now()` it arrived at (a later restore may legitimately forget
    it, see `benchmarks.harness_check`). `on_lost` hears of each lost answer.
    """

    def __init__(
        self,
        url: str,
        *,
        user: str,
        token: str,
        rng: random.Random,
        p_lose: float,
        now: Callable[[], int],
        on_lost: Callable[[], object],
    ) -> None:
        self._inner = HttpTransport(url, token=token, timeout=10.0)
        self._user, self._rng, self.p_lose = user, rng, p_lose
        self._now, self._on_lost = now, on_lost
        self.online = True
        self.acknowledged: dict[AckKey, int] = {}

    def _check_online(self) -> None:
        if not self.online:
            raise TransportError("harness: replica is offline")

    async def push(self, mutations: Sequence[Mutation], space: str | None = None) -> PushAnswer:
        self._check_online()
        answer = await self._inner.push(mutations, space)
        if self._rng.random() < self.p_lose:
            self._on_lost()
            raise TransportError("harness: push answer lost after the server applied it")
        named = space or private_space(self._user)
        step = self._now()
        self.acknowledged.update({(self._user, named, mid): step for mid in answer.outcomes})
        return answer

    async def pull(
        self, since: int, limit: int, history: str | None = None, space: str | None = None
    ) -> PullPage:
        self._check_online()
        return await self._inner.pull(since, limit, history, space)

    def live(
        self, since: int, history: str | None = None, space: str | None = None
    ) -> AbstractAsyncContextManager[AsyncIterator[LiveMessage]]:
        self._check_online()
        return self._inner.live(since, history, space)

    async def conflicts(self, since: int, limit: int, space: str | None = None) -> ConflictPage:
        self._check_online()
        return await self._inner.conflicts(since, limit, space)

    async def spaces(self) -> list[SpaceInfo]:
        self._check_online()
        return await self._inner.spaces()

    async def close(self) -> None:
        await self._inner.close()


class SpaceAdmin:
    """A space admin's calls to the server (``docs/protocol.md``, "Spaces").

    One short-lived connection per call: the server may have been SIGKILLed
    and restarted since the last one, and a kept-alive socket would be dead.
    """

    def __init__(self, url: str, token: str) -> None:
        self._url, self._token = url, token

    async def _call(self, method: str, path: str, body: object = None) -> object:
        """Send one call; its JSON answer (None for an empty one, e.g. 204)."""
        http = HttpClient(self._url, token=self._token, timeout=10.0)
        try:
            data = await http.body(method, path, json=body)
        finally:
            await http.close()
        return json.loads(data) if data else None

    async def create(self, name: str) -> str:
        """A new shared space (its creator is its admin); its id."""
        answer = await self._call("POST", "/v1/spaces", {"name": name})
        assert isinstance(answer, dict)
        return str(answer["id"])

    async def set_role(self, space: str, user: str, role: str) -> None:
        await self._call("PUT", f"/v1/spaces/{space}/members/{user}", {"role": role})

    async def remove(self, space: str, user: str) -> None:
        await self._call("DELETE", f"/v1/spaces/{space}/members/{user}")
