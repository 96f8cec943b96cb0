"""`ServerCore`: what the sync core lends the features it hosts.

A feature (the jobs API today) writes records through the same store, clock
and worker thread as pushes, and publishes what it commits to the same live
hub, so its writes are ordinary changes: numbered, pulled and streamed like
any other. The core builds one `ServerCore` when the store opens
(`quietsync.server.app`) and keeps it under `quietsync.server.keys.CORE_KEY`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import attrs

from quietsync.conflicts import Clock
from quietsync.server.config import ServerConfig
from quietsync.server.live import LiveHub
from quietsync.server.spaces import SpaceService
from quietsync.server.store import Store

__all__ = ["ServerCore"]

T = TypeVar("T")


@attrs.frozen
class ServerCore:
    """The open store, the server clock, the live hub, the one thread store calls run on,
    and the spaces' access rules.

    `store` and `clock` may only be touched on that thread (`run`).
    """

    config: ServerConfig
    store: Store
    clock: Clock
    hub: LiveHub
    executor: ThreadPoolExecutor
    spaces: SpaceService
    """Who may do what in which space (store thread only, like the store)."""

    async def run(self, fn: Callable[[], T]) -> T:
        """``fn()`` on the store thread (sqlite3 blocks; the event loop must not)."""
        return await self.run_on(self.executor, fn)

    @staticmethod
    async def run_on(executor: ThreadPoolExecutor, fn: Callable[[], T]) -> T:
        """``fn()`` on `executor`'s thread (the store opens there, before a core exists)."""
        return await asyncio.get_running_loop().run_in_executor(executor, fn)
