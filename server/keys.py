"""Typed keys for what the app and each request carry (aiohttp `AppKey` / `RequestKey`).

In a module of their own so that `server.app`, `server.auth`, `server.views`
and `server.live` can share them without importing each other.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from aiohttp import web

from quietsync.server.config import ServerConfig
from quietsync.server.jobs import JobRunner
from quietsync.server.live import LiveHub
from quietsync.server.sync import SyncService

__all__ = ["CONFIG_KEY", "EXECUTOR_KEY", "HUB_KEY", "JOBS_KEY", "SYNC_KEY", "USER_KEY"]

CONFIG_KEY = web.AppKey("config", ServerConfig)
SYNC_KEY = web.AppKey("sync", SyncService)
EXECUTOR_KEY = web.AppKey("store_executor", ThreadPoolExecutor)
"""The one worker thread every store call runs on (see `server.app`)."""
HUB_KEY = web.AppKey("live_hub", LiveHub)
JOBS_KEY = web.AppKey("jobs", JobRunner)
USER_KEY = web.RequestKey("user", str)
"""The user id the request's bearer token belongs to (set by `server.auth`)."""
