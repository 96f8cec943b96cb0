"""Fixtures of the server tests: the plugin's `quietsync_server` (an entry point), two users."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping

import aiohttp
import pytest

from quietsync.testing import RunningServer
from tests.server.helpers import Writer

USERS = {"alice": "token-a", "bob": "token-b"}


@pytest.fixture
def quietsync_users() -> Mapping[str, str]:
    """Overrides the plugin's default (alice only): isolation tests need two users."""
    return USERS


@pytest.fixture
def server(quietsync_server: RunningServer) -> RunningServer:
    return quietsync_server


@pytest.fixture
async def alice(server: RunningServer) -> AsyncIterator[aiohttp.ClientSession]:
    async with server.client("alice") as http:
        yield http


@pytest.fixture
async def bob(server: RunningServer) -> AsyncIterator[aiohttp.ClientSession]:
    async with server.client("bob") as http:
        yield http


@pytest.fixture
def w1() -> Writer:
    return Writer("n1")


@pytest.fixture
def w2() -> Writer:
    return Writer("n2")
