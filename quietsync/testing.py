"""A real sync server for test suites: `running_server` and `RunningServer`.

    async with running_server() as server:             # alice / token-a
        async with server.client("alice") as http:     # aiohttp session, token set
            await http.post("/v1/push", json={"mutations": [...]})

The server listens on a free port of 127.0.0.1 and stores into a real SQLite
file (a temporary directory unless `db_path` is given). It is the same app
`quietsync serve` runs; only the port and the file are chosen for you. The
pytest fixtures wrapping it are in `quietsync.pytest_plugin`.

Part of the wiring layer (it may know both sides), though it needs only the server.
"""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from types import MappingProxyType
from typing import Any

import aiohttp
import attrs
from aiohttp import web

from quietsync.server import JobsConfig, ServerConfig, create_app, jobs_feature

__all__ = ["DEFAULT_JOBS", "DEFAULT_USERS", "RunningServer", "running_server"]

DEFAULT_USERS: Mapping[str, str] = MappingProxyType({"alice": "token-a"})
"""user id -> bearer token."""
DEFAULT_JOBS = JobsConfig()
"""The jobs feature's defaults: the scripted provider, 40 tokens, 20 ms apart."""


@attrs.frozen
class RunningServer:
    """A started server: where it listens, how it is configured, who may use it."""

    url: str
    config: ServerConfig
    users: Mapping[str, str]
    app: web.Application
    """The running aiohttp application (its typed keys are in `quietsync.server.keys`)."""

    def token(self, user: str) -> str:
        """The bearer token of `user` (`KeyError` if the server has no such user)."""
        return self.users[user]

    def headers(self, user: str) -> dict[str, str]:
        """The ``Authorization`` header of `user`."""
        return {"Authorization": f"Bearer {self.token(user)}"}

    def client(self, user: str) -> aiohttp.ClientSession:
        """An aiohttp session for `user`: relative URLs, bearer token set. Close it (async with)."""
        return aiohttp.ClientSession(base_url=self.url, headers=self.headers(user))


@asynccontextmanager
async def running_server(
    db_path: Path | str | None = None,
    *,
    users: Mapping[str, str] = DEFAULT_USERS,
    jobs: JobsConfig | None = DEFAULT_JOBS,
    port: int = 0,
    **overrides: Any,
) -> AsyncIterator[RunningServer]:
    """Start a real server on a loopback port (a free one unless `port` is given); stop
    it (gracefully) on exit. Started again with the same `port`, it is the same URL
    (a restart, or a restore, under running clients).

    `users` maps user ids to tokens; `overrides` are `ServerConfig` fields
    (``max_batch=10``, ``max_drift_ms=...``, ``resolvers=...``). `jobs`
    configures the jobs feature (None: a server without it), for example
    ``jobs=JobsConfig(provider=ScriptedProvider(token_delay=0.2))`` slows the
    scripted reply down enough to switch threads mid-stream.
    """
    with tempfile.TemporaryDirectory(prefix="quietsync-") as tmp:
        config = ServerConfig(
            db_path=Path(tmp) / "server.db" if db_path is None else db_path,
            tokens={token: user for user, token in users.items()},
            **overrides,
        )
        app = create_app(config, [] if jobs is None else [jobs_feature(jobs)])
        runner = web.AppRunner(app)
        await runner.setup()
        try:
            site = web.TCPSite(runner, "127.0.0.1", port)
            await site.start()
            host, port = runner.addresses[0][:2]
            url = f"http://{host}:{port}"
            yield RunningServer(url=url, config=config, users=dict(users), app=app)
        finally:
            await runner.cleanup()
