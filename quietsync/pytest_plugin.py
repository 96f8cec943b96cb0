"""pytest fixtures that give a test a real quietsync server.

Installing quietsync registers this plugin with pytest (a ``pytest11`` entry
point): an app's suite just asks for ``quietsync_server`` (a
`quietsync.testing.RunningServer`: ``.url``, ``.token(user)``, ``.client(user)``,
``.config``)::

    async def test_sync(quietsync_server):
        async with quietsync_server.client("alice") as http:
            resp = await http.get("/v1/pull")
            assert (await resp.json())["changes"] == []

Each test gets its own server and its own SQLite file under ``tmp_path``.
Override ``quietsync_users`` (user id -> token) or ``quietsync_server_options``
(`running_server` keywords such as ``max_batch``) in a conftest or a test module
to change them.

The fixture is async, so the app's tests run under pytest-asyncio (installed by
``quietsync[test]``): either ``asyncio_mode = "auto"`` in the app's pytest
configuration, or ``@pytest.mark.asyncio`` on each test (strict mode, the
default). Nothing else is needed: no ``pytest_plugins`` line.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from quietsync.testing import DEFAULT_USERS, RunningServer, running_server

__all__ = ["quietsync_server", "quietsync_server_options", "quietsync_users"]


@pytest.fixture
def quietsync_users() -> Mapping[str, str]:
    """user id -> bearer token of the users the server knows."""
    return DEFAULT_USERS


@pytest.fixture
def quietsync_server_options() -> dict[str, Any]:
    """`running_server` keywords for the server: `ServerConfig` fields, ``jobs=``."""
    return {}


@pytest_asyncio.fixture
async def quietsync_server(
    tmp_path: Path,
    quietsync_users: Mapping[str, str],
    quietsync_server_options: dict[str, Any],
) -> AsyncIterator[RunningServer]:
    """A real server on 127.0.0.1 with its database in ``tmp_path``."""
    async with running_server(
        tmp_path / "quietsync-server.db", users=quietsync_users, **quietsync_server_options
    ) as server:
        yield server
