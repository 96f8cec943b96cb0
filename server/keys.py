"""Typed keys for what the app and each request carry (aiohttp `AppKey` / `RequestKey`).

In a module of their own so that `quietsync.server.app`, `.auth`, `.views`,
`.live` and the features share them without importing each other. A feature
keeps its own keys in its own package (the jobs feature's `JOBS_KEY`).
"""

from __future__ import annotations

from aiohttp import web

from quietsync.server.config import ServerConfig
from quietsync.server.core import ServerCore
from quietsync.server.live import ChangeReader, LiveHub
from quietsync.server.spaces.service import SpaceService
from quietsync.server.sync import SyncService

__all__ = [
    "CHANGE_READER_KEY",
    "CONFIG_KEY",
    "CORE_KEY",
    "HUB_KEY",
    "SPACES_KEY",
    "SYNC_KEY",
    "USER_KEY",
]

CONFIG_KEY = web.AppKey("config", ServerConfig)
CORE_KEY = web.AppKey("core", ServerCore)
"""The open store, clock and store thread (set once the store is open, see `server.app`)."""
SYNC_KEY = web.AppKey("sync", SyncService)
HUB_KEY = web.AppKey("live_hub", LiveHub)
CHANGE_READER_KEY = web.AppKey("change_reader", ChangeReader)
"""Where live sockets read pages of changes, when not on the store thread (PostgreSQL)."""
SPACES_KEY = web.AppKey("spaces", SpaceService)
USER_KEY = web.RequestKey("user", str)
"""The user id the request's bearer token belongs to (set by `server.auth`)."""
